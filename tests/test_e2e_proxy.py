"""The proxy's life on the host, end to end: a host that runs a hub the way workhub did before the
proxy (its container publishing the host port, its data in an anonymous volume) moves over without
losing data, and after the Docker engine restarts (what a reboot does to containers) the proxy and
the hub come back and serve from where they were."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.e2e_fixtures import (deploy_home, deploy_under_probe, docker, forget_local_images, mark_version,
                                new_local_stack,
                                running_image, serving_container)
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


def test_a_host_from_before_the_proxy_moves_over_with_its_data(tmp_path, toolchain, test_host, npm_registry,
                                                              sources):
    engine, stack = new_local_stack(tmp_path, test_host, npm_registry, hubs=[HUB], source_root=sources)
    port = int(stack.get_config("workhub:hostPorts.wbsaleshub", path=True).value)
    url = f"http://127.0.0.1:{port}"
    forget_local_images()
    docker("volume", "rm", VOLUME, check=False)
    folder = deploy_home() / ".workhub" / "compose"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wbsaleshub-e2e.yml").write_text(LEGACY_COMPOSE.format(name="wbsaleshub-e2e", port=port))
    subprocess.run(["chown", "-R", "deploy:deploy", str(deploy_home() / ".workhub")], check=True)
    try:
        compose("-p", "workhub", "-f", "wbsaleshub-e2e.yml", "--profile", "e2e", "up", "--detach")
        subprocess.run(["/usr/bin/docker", "exec", "-i", "wbsaleshub-e2e", "sh", "-c", "cat > /app/data/old.txt"],
                       input=b"kept from before the proxy\n", check=True)
        anonymous = docker("inspect", "--format", "{{range .Mounts}}{{.Name}}{{end}}", "wbsaleshub-e2e")
        assert answers(url) == 200

        deploy = deploy_under_probe(stack, url)
        # The one move to the proxy hands the host port over once: the old container stops for the
        # copy of its data, and the proxy takes the port after the new one is healthy.
        print(f"moving to the proxy: {deploy.report.failed} of {deploy.report.total} requests failed")
        assert '"hub":"wbsaleshub"' in list(deploy.report.bodies)[-1], deploy.report.summary()
        moved = files_on_volume(url)["old.txt"]
        assert moved["bytes"] == len(b"kept from before the proxy\n")
        assert docker("ps", "--all", "--quiet", "--filter", "name=^wbsaleshub-e2e$") == "", "the old container is gone"
        assert not (folder / "wbsaleshub-e2e.yml").exists()
        assert docker("volume", "inspect", "--format", "{{.Name}}", anonymous) == anonymous, "its volume is kept"

        # From then on a deploy drops nothing.
        mark_version(sources, "WBSalesHub", "after-the-move")
        deploy = deploy_under_probe(stack, url)
        assert deploy.report.failed == 0, deploy.report.summary()
        assert files_on_volume(url)["old.txt"] == moved
    finally:
        stack.destroy(on_output=print_line, color="never")
        docker("rm", "-f", "wbsaleshub-e2e", check=False)
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
