"""The proxy's life on the host, end to end: a host that runs a hub the way workhub did before the
proxy (its container publishing the host port, its data in an anonymous volume) moves over without
losing data, and after the Docker engine restarts (what a reboot does to containers) the proxy and
the hub come back and serve from where they were."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.e2e_fixtures import (deploy_home, deploy_under_probe, docker, engine_to_itself, forget_local_images,
                                mark_version, new_local_stack, running_image, serving_container)
from workhub import engine as eng
from workhub.engine import print_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HUB = {"name": "wbsaleshub", "context": "WBSalesHub", "port": 4091, "healthPath": "/health",
       "volumes": {"data": "/app/data"}}
VOLUME = "workhub-e2e-wbsaleshub-data"
# What workhub wrote for a hub before it ran a proxy: one Compose service publishing the host port.
LEGACY_COMPOSE = """services:
  {name}:
    image: "node:24-bookworm-slim"
    container_name: "{name}"
    restart: unless-stopped
    profiles: ["e2e"]
    environment:
      PORT: "4091"
    command: ["node", "-e", "require('http').createServer((q, s) => s.end('legacy')).listen(4091)"]
    volumes: ["/app/data"]
    ports: ["127.0.0.1:{port}:4091"]
    labels:
      workhub.hub: "wbsaleshub"
      workhub.stack: "e2e"
"""


def answers(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as response:
            return response.status
    except (urllib.error.URLError, OSError):
        return 0


def files_on_volume(url: str) -> dict:
    with urllib.request.urlopen(url + "/debug/data", timeout=10) as response:
        return json.loads(response.read())["files"]


def compose(*args: str) -> None:
    subprocess.run(["/usr/bin/docker", "compose", *args], cwd=deploy_home() / ".workhub" / "compose", check=True,
                   capture_output=True)


def digest(content: bytes) -> dict:
    return {"bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}


def legacy_exec(command: str, stdin: bytes = b"") -> None:
    subprocess.run(["/usr/bin/docker", "exec", "-i", "wbsaleshub-e2e", "sh", "-c", command], input=stdin, check=True)


def kept_containers() -> list[str]:
    return docker("ps", "--all", "--format", "{{.Names}}", "--filter", "name=^wbsaleshub-e2e.pre-proxy-").split()


def test_a_host_from_before_the_proxy_moves_over_with_its_data(tmp_path, toolchain, test_host, npm_registry,
                                                              sources):
    """The first move meets data that cannot be copied (a device node, which the hub's uid cannot
    make): it fails saying so last, the old container serves again with its data, and no half-filled
    volume stays to pass for a copy. Once that is fixed, the next `up` copies again, data written in
    between included, byte for byte, and keeps the old container, stopped, under a new name."""
    engine, stack = new_local_stack(tmp_path, test_host, npm_registry, hubs=[HUB], source_root=sources)
    port = int(stack.get_config("workhub:hostPorts.wbsaleshub", path=True).value)
    url = f"http://127.0.0.1:{port}"
    forget_local_images()
    docker("volume", "rm", VOLUME, check=False)
    folder = deploy_home() / ".workhub" / "compose"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wbsaleshub-e2e.yml").write_text(LEGACY_COMPOSE.format(name="wbsaleshub-e2e", port=port))
    subprocess.run(["chown", "-R", "deploy:deploy", str(deploy_home() / ".workhub")], check=True)
    old, deep, later = b"kept from before the proxy\n", bytes(range(256)) * 64, b"written after the failed move\n"
    try:
        compose("-p", "workhub", "-f", "wbsaleshub-e2e.yml", "--profile", "e2e", "up", "--detach")
        legacy_exec("cat > /app/data/old.txt", old)
        legacy_exec("mkdir -p /app/data/notes && cat > /app/data/notes/deep.bin && chmod 600 /app/data/notes/deep.bin",
                     deep)
        legacy_exec("mknod /app/data/console c 1 3")
        anonymous = docker("inspect", "--format", "{{range .Mounts}}{{.Name}}{{end}}", "wbsaleshub-e2e")
        assert answers(url) == 200

        failed = deploy_under_probe(stack, url, fails=True)
        # What the deploy script said, in order: the failure last, saying what, where and why.
        said = [line.split("wbsaleshub-run: ", 1)[1] for line in failed.error.splitlines()
                if "wbsaleshub-run: run: " in line]
        why = (f"the data of wbsaleshub-e2e:/app/data could not be moved into {VOLUME}: the copy differs from its "
               "source (1 line(s) of their sha256 listings, first: < c console); nothing was switched; fix that in "
               "wbsaleshub-e2e and run up again")
        assert said[-1] == f"run: FAILED: {why}", failed.error[-3000:]
        assert f"reason: {why}" in failed.error
        assert said[-2] == "run: restarted wbsaleshub-e2e: it serves as before the move, with its data"
        assert docker("volume", "ls", "--quiet", "--filter", f"name=^{VOLUME}$") == "", "no half-filled volume stays"
        assert not (deploy_home() / ".workhub" / "seeded" / VOLUME).exists()
        assert answers(url) == 200 and urllib.request.urlopen(url + "/", timeout=5).read() == b"legacy"
        assert kept_containers() == []

        # The operator removes what cannot be copied; the old container keeps serving and writing.
        legacy_exec("rm /app/data/console")
        legacy_exec("cat > /app/data/later.txt", later)
        deploy = deploy_under_probe(stack, url)
        # The one move to the proxy hands the host port over once: the old container stops for the
        # copy of its data, and the proxy takes the port after the new one is healthy.
        print(f"moving to the proxy: {deploy.report.failed} of {deploy.report.total} requests failed")
        assert '"hub":"wbsaleshub"' in list(deploy.report.bodies)[-1], deploy.report.summary()
        files = files_on_volume(url)
        assert {name: files[name] for name in ("old.txt", "later.txt")} == {"old.txt": digest(old),
                                                                           "later.txt": digest(later)}, files
        copied = subprocess.run(["/usr/bin/docker", "exec", serving_container("wbsaleshub", "e2e"), "cat",
                                 "/app/data/notes/deep.bin"], capture_output=True, check=True).stdout
        assert copied == deep, "the hub reads its nested file, byte for byte"
        # Kept, stopped, renamed, with its data; its Compose file is gone; its anonymous volume stays.
        (kept,) = kept_containers()
        assert docker("inspect", "--format", "{{.State.Status}} {{.HostConfig.RestartPolicy.Name}}", kept) == "exited no"
        assert subprocess.run(["/usr/bin/docker", "cp", f"{kept}:/app/data/old.txt", "-"], capture_output=True,
                              check=True).stdout.startswith(b"old.txt")
        assert docker("ps", "--all", "--quiet", "--filter", "name=^wbsaleshub-e2e$") == ""
        assert not (folder / "wbsaleshub-e2e.yml").exists()
        assert docker("volume", "inspect", "--format", "{{.Name}}", anonymous) == anonymous, "its volume is kept"

        # From then on a deploy drops nothing, and copies nothing again.
        mark_version(sources, "WBSalesHub", "after-the-move")
        deploy = deploy_under_probe(stack, url)
        assert deploy.report.failed == 0, deploy.report.summary()
        assert files_on_volume(url) == files
    finally:
        stack.destroy(on_output=print_line, color="never")
        docker("rm", "-f", "--volumes", "wbsaleshub-e2e", *kept_containers(), check=False)
        docker("volume", "rm", VOLUME, check=False)
        (folder / "wbsaleshub-e2e.yml").unlink(missing_ok=True)


def test_the_proxy_and_the_hub_come_back_after_the_docker_engine_restarts(tmp_path, toolchain, test_host, host_state,
                                                                         npm_registry, sources):
    engine, stack = new_local_stack(tmp_path, test_host, npm_registry, hubs=[HUB], source_root=sources)
    forget_local_images()
    try:
        url = stack.up(on_output=print_line, color="never").outputs["hubs"].value["wbsaleshub"]["url"]
        serving, image = serving_container("wbsaleshub", "e2e"), running_image("wbsaleshub", "e2e")
        # A reboot, as far as containers go: the engine stops and starts again; nobody runs `up`.
        with engine_to_itself():
            pid = int(Path("/run/workhub-testhost/dockerd.pid").read_text())
            subprocess.run(["kill", str(pid)], check=True)
            for _ in range(120):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.5)
            eng.testhost_up(state_dir=host_state)
        deadline = time.monotonic() + 60
        while answers(url) != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert answers(url) == 200, "the hub answers through its proxy again"
        assert serving_container("wbsaleshub", "e2e") == serving and running_image("wbsaleshub", "e2e") == image
        assert stack.preview(color="never").change_summary.get("same"), "nothing to do for the next up"
    finally:
        stack.destroy(on_output=print_line, color="never")
        docker("volume", "rm", VOLUME, check=False)


def test_a_change_of_the_proxys_own_config_drops_no_request(tmp_path, toolchain, test_host, npm_registry, sources):
    """The hub's container port moves (its PORT, and the proxy's backend with it): the proxy takes its
    new config in a graceful reload at the switch, and clients on kept-alive connections and on
    fresh ones see no failure."""
    engine, stack = new_local_stack(tmp_path, test_host, npm_registry, hubs=[HUB], source_root=sources)
    forget_local_images()
    try:
        url = stack.up(on_output=print_line, color="never").outputs["hubs"].value["wbsaleshub"]["url"]
        project = yaml.safe_load((engine.work_dir / "Pulumi.yaml").read_text())
        # The port moves, then moves back: two reloads, one probed on kept-alive connections.
        for port, keep_alive in ((4093, True), (4091, False)):
            project["config"]["workhub:hubs"]["value"][0]["port"] = port
            (engine.work_dir / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
            deploy = deploy_under_probe(stack, url, keep_alive=keep_alive)
            assert deploy.report.failed == 0, deploy.report.summary()
            assert all(s.status == 200 for s in deploy.slow), deploy.report.summary()
            config = (deploy_home() / ".workhub" / "proxy" / "wbsaleshub-e2e" / "haproxy.cfg").read_text()
            assert f"{serving_container('wbsaleshub', 'e2e')}:{port} resolvers docker init-addr libc,none\n" in config
    finally:
        stack.destroy(on_output=print_line, color="never")
        docker("volume", "rm", VOLUME, check=False)
