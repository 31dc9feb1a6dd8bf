"""End to end: the real Pulumi engine, over a real sshd, against a real Docker engine."""

import json
import os
import shutil
import socket
import stat
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
from pulumi import automation as auto

from tests.e2e_fixtures import deploy_home, new_local_stack
from workhub import engine as eng
from workhub.engine import print_line

pytestmark = pytest.mark.e2e


def test_local_stack_reports_host_facts_and_second_up_changes_nothing(local_stack, test_host, tmp_path):
    """`up` reads the host's facts over SSH; a second `up` and a preview change nothing. What it
    wrote is its user's alone: here the state directory, the passphrase, the state and the stack's
    file; on the host ~/.workhub (the setup makes it so)."""
    first = eng.run("up", local_stack)
    assert first.summary.result == "succeeded"
    assert first.summary.resource_changes == {"create": 6}
    assert first.outputs["host"].value == f"deploy@127.0.0.1:{test_host['port']}"

    facts = first.outputs["hostFacts"].value
    assert facts["buildkit"] is True, "a BuildKit build with a cache mount works on the test host"
    assert facts["builder"] in ("buildx", "docker-build")
    assert facts["docker_version"].split(".")[0].isdigit()
    assert facts["cpus"] >= 1 and facts["memory_mb"] > 0 and facts["disk_free_mb"] > 0

    ssh_config = (deploy_home() / ".ssh" / "config").read_text()
    assert ssh_config.count("# BEGIN workhub") == 1
    assert "Host *\n    ServerAliveInterval 60\n    ServerAliveCountMax 120\n" in ssh_config

    second = eng.run("up", local_stack)
    assert second.summary.resource_changes == {"same": 6}
    assert second.outputs["hostFacts"].value == facts
    preview = local_stack.preview(color="never")
    assert preview.change_summary == {"same": 6}

    (state_file,) = (tmp_path / "state").rglob("e2e.json")
    state = state_file.read_text()
    assert "PRIVATE KEY" not in state and "ciphertext" in state, "the SSH key is kept encrypted in the state"

    assert _mode(tmp_path) == 0o700 and _mode(tmp_path / "passphrase") == 0o600
    assert _loose(tmp_path / "state") == {} and _mode(tmp_path / "project" / "Pulumi.e2e.yaml") == 0o600
    home = deploy_home() / ".workhub"
    assert _mode(home) == 0o700
    assert {path: mode for path, mode in _loose(home).items()
            if path.split("/")[0] not in ("contexts", "proxy") and "context" not in path.split("/")} == {}, \
        "only the build contexts' and the proxies' files keep modes others could use, behind a 0700 ~/.workhub"

    local_stack.destroy(on_output=print_line, color="never")
    assert local_stack.outputs() == {}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _loose(root: Path) -> dict[str, int]:
    """What under `root` (not a link) group or others may use, with its mode."""
    return {str(path.relative_to(root)): _mode(path) for path in root.rglob("*")
            if not path.is_symlink() and _mode(path) & 0o077}


def test_up_fails_with_a_clear_message_when_sshd_is_down(tmp_path, toolchain):
    """With the host's sshd stopped, `up` fails naming the host and the attempts made."""
    state = tmp_path / "host"
    host = eng.testhost_up(state_dir=state)
    eng.testhost("down", state_dir=state)
    try:
        _, stack = new_local_stack(
            tmp_path, host, hubs=[],
            overrides={"workhub:host.dialErrorLimit": "2", "workhub:host.perDialTimeout": "2"},
        )
        with pytest.raises(auto.errors.CommandError) as caught:
            stack.up(color="never")
        assert f"cannot connect to deploy@127.0.0.1:{host['port']} after 2 attempt(s)" in str(caught.value)
    finally:
        eng.testhost("down", "--purge", state_dir=state)


def test_up_refuses_a_host_with_another_host_key(tmp_path, toolchain, test_host):
    """A host that offers a key other than the pinned one is refused before anything runs."""
    other_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK7Y7QnO0UtXI7QiKy25GxK5IOTxLaAH3p9wn+9iCJ2a"
    _, stack = new_local_stack(tmp_path, test_host, hubs=[], overrides={"workhub:host.hostKey": other_key})
    with pytest.raises(auto.errors.CommandError) as caught:
        stack.up(color="never")
    assert f"host key mismatch for deploy@127.0.0.1:{test_host['port']}" in str(caught.value)


@pytest.mark.parametrize("stack_name", ["staging", "production"])
def test_committed_stacks_stop_before_touching_anything_until_the_host_is_set(tmp_path, toolchain, stack_name):
    """The committed stack files hold no host: a preview stops, naming each key still to set."""
    work = tmp_path / "project"
    work.mkdir()
    for name in ("Pulumi.yaml", f"Pulumi.{stack_name}.yaml"):
        shutil.copy(eng.REPO / name, work / name)
    engine = eng.Engine(work_dir=work, backend_url=f"file://{tmp_path}", passphrase="test")
    stack = engine.stack(stack_name)
    with pytest.raises(auto.errors.CommandError) as caught:
        stack.preview(color="never")
    message = str(caught.value)
    for key in ("workhub:host.address", "workhub:host.hostKey", "workhub:sshPrivateKey"):
        assert f"{key}: is not set" in message
    assert f"scripts/workhub pulumi config set --stack {stack_name} --secret workhub:sshPrivateKey" in message
    assert "Traceback" not in message


def _services_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose test host, image registry and npm registry cache are this test's own:
    its state directory, and a cache directory whose verdaccio is the machine's install."""
    installed = Path(os.environ.get("WORKHUB_CACHE_DIR") or Path.home() / ".cache" / "workhub") / "verdaccio"
    cache = tmp_path / "cache" / "verdaccio"
    cache.mkdir(parents=True)
    shutil.copy(installed / "package.json", cache / "package.json")
    (cache / "node_modules").symlink_to(installed / "node_modules")
    env = {k: v for k, v in os.environ.items() if k not in ("WORKHUB_REGISTRY_PORT", "WORKHUB_TESTHOST_SSH_PORT")}
    return {**env, "WORKHUB_STATE_DIR": str(tmp_path / "state"), "WORKHUB_CACHE_DIR": str(tmp_path / "cache")}


def _script(name: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run([str(eng.REPO / "scripts" / name), *args], env=env, text=True, capture_output=True,
                          timeout=600)
    assert done.returncode == 0, f"{name} {' '.join(args)}:\n{done.stderr}"
    return done


def _listens(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_testhost_down_stops_everything_workhub_started_locally(tmp_path, test_host, npm_registry):
    """`scripts/testhost.sh down` stops the test host's sshd, its image registry and the npm
    registry cache its checkout started; it leaves a cache another checkout started, and the
    Docker engine it did not start."""
    env = _services_env(tmp_path)
    try:
        host = json.loads(_script("testhost.sh", "up", env=env).stdout)
        url = _script("registry.sh", "up", env=env).stdout.strip()
        images = json.loads(_script("image-registry.sh", "up", env=env).stdout)
        registry_port = int(urllib.parse.urlsplit(url).port)
        image_port = int(images["server"].rsplit(":", 1)[1])
        assert url != npm_registry and all(map(_listens, (host["port"], registry_port, image_port)))

        other = _script("testhost.sh", "down", env={**env, "WORKHUB_STATE_DIR": str(tmp_path / "other")})
        assert "another checkout started it" in other.stderr
        assert _listens(registry_port)

        down = _script("testhost.sh", "down", "--purge", env=env)
        ports = {"sshd": host["port"], "npm registry": registry_port, "image registry": image_port}
        deadline = time.monotonic() + 3
        while any(map(_listens, ports.values())) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert [name for name, port in ports.items() if _listens(port)] == [], down.stderr
        assert "stopping verdaccio" in down.stderr
        assert not (tmp_path / "state" / "testhost").exists() and not (tmp_path / "state" / "image-registry").exists()
        assert subprocess.run(["/usr/bin/docker", "info"], capture_output=True).returncode == 0
        assert _listens(int(urllib.parse.urlsplit(npm_registry).port)), "the session's shared cache still runs"
    finally:
        subprocess.run([str(eng.REPO / "scripts" / "testhost.sh"), "down", "--purge"], env=env, capture_output=True)
        subprocess.run([str(eng.REPO / "scripts" / "registry.sh"), "down"], env=env, capture_output=True)


def test_a_warm_test_host_and_registry_print_nothing_but_their_answer(test_host, host_state, npm_registry):
    """What they found ready goes to their logs; a warm `up` prints one line per step it ran: none."""
    env = {**os.environ, "WORKHUB_STATE_DIR": str(host_state)}
    host = _script("testhost.sh", "up", env=env)
    assert host.stderr == "" and json.loads(host.stdout)["port"] == test_host["port"]
    for args in (["up"], ["warm"]):
        done = _script("registry.sh", *args, env=env)
        assert done.stderr == "", done.stderr
    assert "present" in (host_state / "testhost" / "up.log").read_text()


def test_a_warm_test_host_up_checks_once_and_a_stopped_or_changed_sshd_takes_the_full_path(test_host, host_state):
    """A warm `up` starts nothing (one check, noted in its log); with its sshd stopped or its sshd
    config not what `up` writes, `up` takes the full path again and repairs it."""
    env = {**os.environ, "WORKHUB_STATE_DIR": str(host_state)}
    state = host_state / "testhost"
    done = _script("testhost.sh", "up", env=env)
    assert done.stderr == "" and json.loads(done.stdout)["port"] == test_host["port"]
    assert (state / "up.log").read_text().splitlines()[-1].endswith("images present")
    assert "already up" in (state / "up.log").read_text().splitlines()[-1]

    pid = int((state / "sshd.pid").read_text())
    os.kill(pid, 15)
    for _ in range(50):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    done = _script("testhost.sh", "up", env=env)
    assert f"starting sshd on 127.0.0.1:{test_host['port']}" in done.stderr, "sshd stopped: the full path"
    assert json.loads(done.stdout)["port"] == test_host["port"]

    (state / "sshd_config").write_text((state / "sshd_config").read_text().replace("MaxSessions 100", "MaxSessions 5"))
    done = _script("testhost.sh", "up", env=env)
    assert "starting sshd" in done.stderr, "a config other than `up` writes: rewritten, sshd restarted"
    assert "MaxSessions 100" in (state / "sshd_config").read_text()
    done = _script("testhost.sh", "up", env=env)
    assert done.stderr == "" and "already up" in (state / "up.log").read_text().splitlines()[-1]
