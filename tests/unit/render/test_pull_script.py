"""The host's pull step in registry mode, run by bash against a stand-in `docker` command: it
retries a pull that fails from the network, stops at once when the image is missing or the login
is refused, refuses an image built for another platform, and takes the password only on stdin."""

import json
import subprocess
from pathlib import Path

import pytest

from components.config.models import BuildSettings, Hub
from components.ssh import RemoteCommandError, with_secrets
from components.render.host.build import pull_script

HUB = Hub(name="wbsaleshub", context="WBSalesHub", port=4091, buildMode="registry")
IMAGE = "wbsaleshub:staging-0123456789ab"
REMOTE = "127.0.0.1:5000/workhub/wbsaleshub:staging-0123456789ab"
PASSWORD = "it's a $(secret)"

# A stand-in for the Docker CLI: pulls fail with the words in $FAKE/pull-errors, one line per
# try, until they run out; every call's arguments go to $FAKE/calls.
FAKE_DOCKER = r"""#!/usr/bin/env bash
printf '%s\n' "$*" >>"$FAKE/calls"
case "$1 $2" in
  "version --format") echo linux/amd64 ;;
  "login --username")
    [ "$(cat)" = "$(cat "$FAKE/password")" ] || { echo "unauthorized: incorrect username or password" >&2; exit 1; } ;;
  "pull "*)
    error=$(sed -n 1p "$FAKE/pull-errors" 2>/dev/null)
    if [ -n "$error" ]; then sed -i 1d "$FAKE/pull-errors"; echo "$error" >&2; exit 1; fi
    touch "$FAKE/pulled"; echo "Status: Downloaded newer image for $2" ;;
  "image inspect")
    ref=${@: -1}
    if [ "$ref" = "$IMAGE" ] && [ ! -e "$FAKE/tagged" ]; then exit 1; fi
    [ -e "$FAKE/pulled" ] || [ -e "$FAKE/tagged" ] || exit 1
    case "$4" in
      *Architecture*) cat "$FAKE/platform" ;;
      *RepoDigests*) echo "${REMOTE%:*}@sha256:abc" ;;
    esac ;;
  "tag "*) touch "$FAKE/tagged" ;;
  "image rm") ;;
  *) echo "unexpected: docker $*" >&2; exit 2 ;;
esac
"""


@pytest.fixture
def host(tmp_path):
    fake = tmp_path / "fake"
    (fake / "bin").mkdir(parents=True)
    docker = fake / "bin" / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    (fake / "platform").write_text("linux/amd64\n")
    (fake / "password").write_text(PASSWORD)
    return fake


def pull(host: Path, *, username=None, password=None, errors=(), attempts=3) -> subprocess.CompletedProcess:
    (host / "pull-errors").write_text("".join(f"{line}\n" for line in errors))
    script = pull_script(HUB, "staging", IMAGE, "0123456789ab", REMOTE, "127.0.0.1:5000", username,
                         BuildSettings(attempts=attempts, retryBackoffSeconds=0))
    if password is not None:
        script = with_secrets(script, {"registry_password": password})
    env = {"PATH": f"{host / 'bin'}:/usr/bin:/bin", "HOME": str(host), "FAKE": str(host), "IMAGE": IMAGE,
           "REMOTE": REMOTE}
    return subprocess.run(["bash", "-s"], input=script, env=env, capture_output=True, text=True)


def records(host: Path) -> list[dict]:
    return [json.loads(line) for line in (host / ".workhub" / "builds.jsonl").read_text().splitlines()]


def test_a_pull_that_fails_from_the_network_is_tried_again_then_tagged_as_a_host_build(host):
    done = pull(host, errors=["error pulling: read tcp 127.0.0.1:5000: connection reset by peer"])
    assert done.returncode == 0, done.stderr
    assert "pull: attempt 1 of 3: pulling " + REMOTE in done.stderr
    assert "attempt 1 failed from the network (exit code 1); trying again in 0 s" in done.stderr
    assert json.loads(done.stdout) == {"image": IMAGE, "pulled_from": REMOTE, "attempts": 2,
                                       "digest": "127.0.0.1:5000/workhub/wbsaleshub@sha256:abc"}
    calls = (host / "calls").read_text()
    assert f"tag {REMOTE} {IMAGE}" in calls and f"image rm {REMOTE}" in calls
    (record,) = records(host)
    assert record["result"] == "succeeded" and record["attempts"] == 2 and record["pulled_from"] == REMOTE


def test_an_image_already_on_the_host_is_not_pulled(host):
    (host / "tagged").touch()
    done = pull(host)
    assert done.returncode == 0 and "nothing to pull" in done.stderr
    assert "pull " not in (host / "calls").read_text()


def test_a_missing_image_fails_at_once(host):
    done = pull(host, errors=["Error response from daemon: manifest unknown: manifest unknown"] * 3)
    assert done.returncode == 1
    assert "attempt 2" not in done.stderr and "not trying again" in done.stderr
    assert f"FAILED: could not pull {REMOTE} after 1 attempt(s); was it pushed?" in done.stderr
    assert records(host)[0]["result"] == "failed"


def test_a_pull_that_keeps_failing_stops_after_the_attempts(host):
    done = pull(host, errors=["net/http: TLS handshake timeout"] * 5, attempts=2)
    assert done.returncode == 1 and "after 2 attempt(s)" in done.stderr


def test_an_image_for_another_platform_is_refused_with_the_setting_that_fixes_it(host):
    (host / "platform").write_text("linux/arm64\n")
    done = pull(host)
    assert done.returncode == 1
    assert (f"FAILED: {REMOTE} is built for linux/arm64, but this host runs linux/amd64; "
            "set workhub:registry.platform to linux/amd64") in done.stderr
    assert f"tag {REMOTE}" not in (host / "calls").read_text()


def test_the_password_goes_to_docker_login_on_stdin_only(host):
    done = pull(host, username="ci", password=PASSWORD)
    assert done.returncode == 0, done.stderr
    calls = (host / "calls").read_text()
    assert "login --username ci --password-stdin 127.0.0.1:5000" in calls
    assert PASSWORD not in calls + done.stderr + done.stdout
    assert not (host / ".docker").exists(), "the login is not kept in the user's Docker config"


def test_a_refused_login_names_the_settings(host):
    done = pull(host, username="ci", password="wrong")
    assert done.returncode == 1
    assert ("refused the login of ci; check workhub:registry.username and workhub:registryPassword"
            in done.stderr)
    assert "pull " not in (host / "calls").read_text()


def test_secret_values_must_be_shell_names():
    assert with_secrets("echo\n", {"a_b": "x y"}) == "a_b='x y'\necho\n"
    with pytest.raises(RemoteCommandError):
        with_secrets("echo\n", {"A-B; rm": "x"})
