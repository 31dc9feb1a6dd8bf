"""The drift checks a refresh runs, by bash against a stand-in `docker` that answers from a table of
containers: a hub's run command's (components.render.host.deploy.check_script), for each way a host can differ
from what the last deploy left there, and nothing when it does not; and a build's (the image is
there). tests/e2e/test_e2e_drift.py runs the run's check against the real Docker engine."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from components.render.host.documents import LIVE_MARK, proxy_compose, slot_compose
from components.render.host.deploy import check_script
from components.render.host.build import image_check_script
from tests.unit.render.test_scripts import HUB, IMAGE, RUNTIME, SERVING

BASE = "wbsaleshub-staging"
LIVE = f"{BASE}-blue"
PROXY = f"{BASE}-proxy"

# Answers `docker container inspect [--format F] NAME` from $FAKE/<NAME>.json ({"status", "image",
# "hash"}), and `docker compose -f NAME.yml config --hash NAME` with the sha256 of ./NAME.yml (the check runs
# Compose in the compose directory), as Compose's fingerprint of the service.
FAKE_DOCKER = r"""#!/bin/bash
set -eu
if [ "$1" = compose ]; then
  [ "$2 $3 $4 $5" = "-f $6.yml config --hash" ] || exit 2
  printf '%s %s\n' "$6" "$(sha256sum "$6.yml" | cut -d' ' -f1)"
  exit 0
fi
[ "$1 $2" = "container inspect" ] || exit 2
shift 2
format=""
if [ "$1" = --format ]; then format=$2; shift 2; fi
file="$FAKE/$1.json"
[ -e "$file" ] || { echo "Error: No such container: $1" >&2; exit 1; }
field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' "$file" "$1"; }
case "$format" in
  "") echo '[{}]' ;;
  *State.Running*) if [ "$(field status)" = running ]; then echo true; else echo false; fi ;;
  *State.Status*) field status ;;
  *Config.Image*) field image ;;
  *config-hash*) field hash ;;
  *) exit 2 ;;
esac
"""


class Host:
    """A deploy user's home as the last deploy left it (live slot blue), with a stand-in docker."""

    def __init__(self, root: Path):
        self.home = root / "home"
        self.fake = root / "containers"
        self.bin = root / "bin"
        for path in (self.home / ".workhub" / "compose", self.home / ".workhub" / "proxy" / BASE, self.fake, self.bin):
            path.mkdir(parents=True)
        (self.bin / "docker").write_text(FAKE_DOCKER)
        (self.bin / "docker").chmod(0o755)
        (self.home / ".workhub" / "proxy" / BASE / "haproxy.cfg").write_text(f"{LIVE_MARK}blue\n# ...\n")
        self.deployed(LIVE, slot_compose(HUB, "staging", "blue", IMAGE, RUNTIME, SERVING.deploy), IMAGE)
        self.deployed(PROXY, proxy_compose(HUB, "staging", 14091, "127.0.0.1", "haproxy:2.6"), "haproxy:2.6")

    def compose_file(self, name: str) -> Path:
        return self.home / ".workhub" / "compose" / f"{name}.yml"

    def deployed(self, name: str, text: str, image: str) -> None:
        """What a deploy leaves: the Compose file, and its container made from it, running."""
        self.compose_file(name).write_text(text + "\n")
        self.container(name, image=image, hash=hashlib.sha256((text + "\n").encode()).hexdigest())

    def container(self, name: str, **fields: str) -> None:
        (self.fake / f"{name}.json").write_text(json.dumps({"status": "running", **fields}))

    def check(self) -> list[str]:
        """What the check prints, line by line."""
        text = check_script(HUB, "staging", IMAGE, 14091, RUNTIME, SERVING)
        env = {"HOME": str(self.home), "FAKE": str(self.fake), "PATH": f"{self.bin}:{os.environ['PATH']}"}
        done = subprocess.run(["bash", "-s"], input=text, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()


@pytest.fixture
def host(tmp_path) -> Host:
    return Host(tmp_path)


def test_a_host_as_the_last_deploy_left_it_has_no_drift(host):
    assert host.check() == []


def test_a_live_container_removed_by_hand_is_drift(host):
    (host.fake / f"{LIVE}.json").unlink()
    assert host.check() == [f"drift: the live container {LIVE} is gone"]


def test_a_stopped_live_container_is_drift(host):
    state = json.loads((host.fake / f"{LIVE}.json").read_text())
    host.container(LIVE, **{**state, "status": "exited"})
    assert host.check() == [f"drift: the live container {LIVE} is not running (it is exited)"]


def test_a_live_container_replaced_by_hand_with_another_image_is_drift(host):
    host.container(LIVE, image="busybox:latest")
    assert host.check() == [
        f"drift: the live container {LIVE} was not made from its Compose file (started or changed by hand?)",
        f"drift: the live container {LIVE} runs busybox:latest, not {IMAGE}",
    ]


def test_a_compose_file_edited_by_hand_is_drift(host):
    host.compose_file(LIVE).write_text(host.compose_file(LIVE).read_text().replace('"unless-stopped"', '"no"'))
    assert host.check() == [
        f"drift: the live container {LIVE}: its Compose file ~/.workhub/compose/{LIVE}.yml is not the one the last "
        "deploy wrote",
        f"drift: the live container {LIVE} was not made from its Compose file (started or changed by hand?)",
    ]


def test_a_proxy_removed_by_hand_is_drift(host):
    (host.fake / f"{PROXY}.json").unlink()
    assert host.check() == [f"drift: the proxy {PROXY} is gone"]


def test_a_proxy_config_with_no_live_slot_is_drift(host):
    (host.home / ".workhub" / "proxy" / BASE / "haproxy.cfg").unlink()
    assert host.check() == [f"drift: the proxy's config ~/.workhub/proxy/{BASE}/haproxy.cfg names no live slot"]


def test_the_check_only_looks(host):
    """Every docker command it runs is an inspect or Compose's fingerprint: nothing changes on the host."""
    log = host.bin / "calls"
    wrapper = host.bin / "docker"
    wrapper.write_text(FAKE_DOCKER.replace("set -eu\n", f'set -eu\nprintf "%s\\n" "$*" >>{log}\n', 1))
    (host.fake / f"{LIVE}.json").unlink()
    host.check()
    calls = log.read_text().splitlines()
    assert calls and all(call.startswith("container inspect ") or re.fullmatch(r"compose -f \S+\.yml config --hash \S+", call)
                         for call in calls), calls


@pytest.mark.parametrize("present, printed", [(True, []), (False, [f"drift: the image {IMAGE} is not on the host"])])
def test_the_build_check_says_when_its_image_is_gone(tmp_path, present, printed):
    docker = tmp_path / "docker"
    docker.write_text(f"#!/bin/sh\n[ \"$1 $2 $3\" = \"image inspect {IMAGE}\" ] && exit {0 if present else 1}\nexit 2\n")
    docker.chmod(0o755)
    done = subprocess.run(["bash", "-s"], input=image_check_script(IMAGE), capture_output=True, text=True, check=True,
                          env={"PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert done.stdout.splitlines() == printed


def test_the_refresh_ends_with_each_commands_drift_and_what_up_does():
    from workhub.engine import drift_summary

    assert drift_summary({}) == "the host is as the last update left it"
    assert drift_summary({"wbsaleshub-run": [f"the live container {LIVE} is gone", f"the proxy {PROXY} is gone"],
                          "wbfinhub-build": ["the image wbfinhub:staging-0123456789ab is not on the host"]}) == (
        "the host differs from what the last update left there:\n"
        "  wbfinhub-build: the image wbfinhub:staging-0123456789ab is not on the host\n"
        f"  wbsaleshub-run: the live container {LIVE} is gone\n"
        f"  wbsaleshub-run: the proxy {PROXY} is gone\n"
        "`scripts/workhub up` runs those commands again (a hub's deploy: beside what serves, health-gated)")
