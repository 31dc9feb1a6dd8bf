"""Promotion on a Swarm, end to end with the real Pulumi engine (Automation API, one local file
backend for both stacks, so production's StackReference to staging resolves) on the Swarm test bed:
production's services run exactly the digests staging's deploy converged on and production builds
and pushes nothing; a tag moved in the registry after staging verified it changes nothing production
runs (its services name the digest, not the tag); a `pinnedImages` rollback runs the pinned digest,
health-checked, with no failed request through a serving node's proxy.

Run under the shared lock: flock /tmp/workhub-e2e.lock scripts/test tests/e2e/test_e2e_swarm_promotion.py -x -q
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from pulumi import automation as auto

from tests.e2e_fixtures import mark_version
from tests.e2e.test_e2e_swarm_up import HUBS as SAMPLE_HUBS
from tests.e2e.test_e2e_swarm_up import LABELS, bed, get, new_swarm_stack, reported, ssh  # noqa: F401 (bed: fixture)
from workhub.engine import print_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STAGING, PRODUCTION = "e2e-staging", "e2e-production"
# Two of the sample hubs: wbhubmanager (2 replicas, no data) and wbsaleshub (its data on node 2).
HUBS = SAMPLE_HUBS[:2]
PORTS = {STAGING: {"wbhubmanager": 24290, "wbsaleshub": 24291},
         PRODUCTION: {"wbhubmanager": 24390, "wbsaleshub": 24391}}


def service(stack: str, hub: str) -> str:
    return f"workhub-{stack}_{hub}"


def service_image(bed: dict, stack: str, hub: str) -> str:
    """The image a hub's service runs, as its spec on a manager names it."""
    return ssh(bed, f"docker service inspect --format '{{{{.Spec.TaskTemplate.ContainerSpec.Image}}}}' "
                    f"{service(stack, hub)}").strip()


def digest(image: str) -> str:
    assert "@sha256:" in image, image
    return image.rsplit("@", 1)[1]


def tasks(bed: dict, stack: str, hub: str, image: str, count: int) -> list[tuple[str, str]]:
    """The running containers of a hub's service on the test bed's nodes, as (the repository digests
    of the image each runs, its status), once they are `count` of `image`'s digest, all healthy (the
    old tasks of a rollout take their grace period to go), or after 30 s."""
    deadline = time.monotonic() + 30
    while True:
        found = []
        for node in bed["nodes"]:
            def docker(*args: str) -> list[str]:
                done = subprocess.run(["/usr/bin/docker", "-H", node["docker_host"], *args], capture_output=True,
                                      text=True, check=True)
                return [line for line in done.stdout.splitlines() if line.strip()]

            for line in docker("ps", "--filter", f"label=com.docker.swarm.service.name={service(stack, hub)}",
                               "--format", "{{.ID}}|{{.Status}}"):
                container, status = line.split("|", 1)
                ran = docker("inspect", "--format", "{{.Image}}", container)[0]
                found.append((" ".join(docker("image", "inspect", "--format", "{{join .RepoDigests \" \"}}", ran)),
                              status))
        if time.monotonic() > deadline or (len(found) == count and all(
                digest(image) in digests and "(healthy)" in status for digests, status in found)):
            return found
        time.sleep(1)


def serving_urls(bed: dict, stack: str, hub: str) -> list[str]:
    return [f"http://{node['address']}:{PORTS[stack][hub]}" for node, labels in zip(bed["nodes"], LABELS)
            if labels.get("serve")]


def move_tag(bed: dict, source: str, tag: str) -> str:
    """Pushes the image `source` to the test bed's registry under `tag`, through node 1's engine (as
    a rebuild or a hand-made push under a tag already verified would); the digest `tag` names now."""
    node, registry = bed["nodes"][0]["docker_host"], bed["registry"]
    with tempfile.TemporaryDirectory() as config:
        def docker(*args: str, stdin: bytes | None = None, check: bool = True) -> str:
            done = subprocess.run(["/usr/bin/docker", "-H", node, *args], input=stdin, capture_output=True,
                                  env={**os.environ, "DOCKER_CONFIG": config})
            assert done.returncode == 0 or not check, done.stderr.decode()
            return done.stdout.decode()

        docker("login", "--username", registry["username"], "--password-stdin", registry["server"],
               stdin=Path(registry["password_file"]).read_bytes())
        docker("pull", source)
        docker("tag", source, tag)
        pushed = docker("push", tag)
        docker("image", "rm", tag, source, check=False)
    found = re.search(r"digest: (sha256:[0-9a-f]{64})", pushed)
    assert found, pushed
    return found.group(1)


def without_tag(image: str) -> str:
    """`<repository>@<digest>` of `<repository>:<tag>@<digest>`."""
    name, found = image.split("@", 1)
    return f"{name.rsplit(':', 1)[0]}@{found}"


def test_production_runs_the_digests_staging_verified_even_after_their_tag_moved_and_rolls_back_by_pin(
        tmp_path, toolchain, npm_registry, bed, sources):
    engine, staging = new_swarm_stack(tmp_path, bed, sources, npm_registry, name=STAGING, hubs=HUBS,
                                      host_ports=PORTS[STAGING])
    _, production = new_swarm_stack(tmp_path, bed, sources, npm_registry, name=PRODUCTION, hubs=HUBS,
                                    host_ports=PORTS[PRODUCTION], engine=engine,
                                    values={"workhub:promoteFrom": STAGING})
    ci = engine.pusher
    # No destroy at the end: the test bed goes with everything on it after the module.
    result, out = reported(staging)
    assert result is not None, "\n".join(out[-40:])
    first = staging.outputs()["hubs"].value
    pushed = list(ci.pushed)
    assert len(pushed) == 2, pushed

    # Production builds and pushes nothing: its services run staging's images by digest.
    result, out = reported(production)
    assert result is not None, "\n".join(out[-40:])
    assert ci.pushed == pushed, "production pushed nothing"
    types = [resource.get("type", "") for resource in production.export_stack().deployment["resources"]]
    assert not [t for t in types if t == "workhub:swarm:SwarmImage"], types
    promoted = production.outputs()["hubs"].value
    for hub in PORTS[PRODUCTION]:
        assert promoted[hub]["from"] == first[hub]["image"], promoted[hub]
        assert promoted[hub]["origin"] == f"stack {STAGING}, converged on its Swarm"
        assert "pushed" not in promoted[hub]
        assert service_image(bed, STAGING, hub).endswith("@" + digest(first[hub]["image"]))
        assert service_image(bed, PRODUCTION, hub).endswith("@" + digest(first[hub]["image"]))
        for url in serving_urls(bed, STAGING, hub) + serving_urls(bed, PRODUCTION, hub):
            assert get(url + "/health")[0] == 200, f"{hub} through {url}: both stacks serve at once"

    # Staging verifies a new version of wbhubmanager. Then its tag is moved in the registry to
    # another image (the first version, which would run healthy too): production's next `up`
    # runs the digest staging verified, not what the tag names now.
    mark_version(sources, "WBHubManager", "v2")
    result, out = reported(staging)
    assert result is not None, "\n".join(out[-40:])
    second = staging.outputs()["hubs"].value["wbhubmanager"]["image"]
    assert digest(second) != digest(first["wbhubmanager"]["image"])
    moved = move_tag(bed, without_tag(first["wbhubmanager"]["image"]), second.split("@", 1)[0])
    assert moved != digest(second), "the tag names another image now"
    result, out = reported(production)
    assert result is not None, "\n".join(out[-40:])
    assert len(ci.pushed) == 3 and ci.pushed[:2] == pushed, "only staging pushed (its new version)"
    now = production.outputs()["hubs"].value["wbhubmanager"]
    assert now["from"] == second and digest(now["image"]) == digest(second), now
    assert digest(now["previousImage"]) == digest(first["wbhubmanager"]["image"]), "the image a rollback pins"
    assert service_image(bed, PRODUCTION, "wbhubmanager").endswith("@" + digest(second))
    running = tasks(bed, PRODUCTION, "wbhubmanager", second, 2)
    assert len(running) == 2 and all(digest(second) in digests for digests, _ in running), running
    for url in serving_urls(bed, PRODUCTION, "wbhubmanager"):
        status, body = get(url + "/health")
        assert status == 200 and '"rev":"v2"' in body, (url, body)

    # The rollback of one hub by pin: production pins wbhubmanager to the previous image its
    # output names; it rolls out health-checked, with no failed request through a serving proxy.
    from tools.prober import Prober

    previous = now["previousImage"]
    production.set_config("workhub:pinnedImages.wbhubmanager", auto.ConfigValue(previous), path=True)
    url = serving_urls(bed, PRODUCTION, "wbhubmanager")[0]
    prober = Prober(url, rate=10, timeout=10, path="/health").start()
    try:
        result, out = reported(production)
        time.sleep(2)
    finally:
        prober.stop()
    report = prober.report()
    print(report.summary(), file=sys.stderr)
    assert result is not None, "\n".join(out[-40:])
    assert any(f"{service(PRODUCTION, 'wbhubmanager')}: rolled out" in line for line in out), "\n".join(out[-40:])
    assert report.failed == 0, report.summary()
    assert report.total >= 50, report.summary()
    bodies = list(report.bodies)
    assert '"rev":"v2"' in bodies[0] and '"rev"' not in bodies[-1], report.summary()
    pinned = production.outputs()["hubs"].value["wbhubmanager"]
    assert pinned["from"] == previous and pinned["origin"] == "pinned in workhub:pinnedImages", pinned
    assert digest(pinned["image"]) == digest(previous), pinned
    assert digest(pinned["previousImage"]) == digest(second), "and the one before it, to undo the rollback"
    assert service_image(bed, PRODUCTION, "wbhubmanager").endswith("@" + digest(previous))
    running = tasks(bed, PRODUCTION, "wbhubmanager", previous, 2)
    assert len(running) == 2, running
    for digests, status in running:
        assert digest(previous) in digests and "(healthy)" in status, running
    assert service_image(bed, STAGING, "wbhubmanager").endswith("@" + digest(second)), "staging keeps its own"
    assert ci.pushed[:2] == pushed and len(ci.pushed) == 3, "production built and pushed nothing"
