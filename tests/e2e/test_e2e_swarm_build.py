"""`up` of a Swarm stack whose hubs build on the build node (buildMode remote, the default), end to
end with the real Pulumi engine (Automation API, a local file backend) on the Swarm test bed
(scripts/swarm-testbed.sh --hub-images): node 1 is the build node and serves nothing; nodes 2 and 3
serve. Two sample hubs (their back ends: the front-end build would take minutes of CI) are built
on node 1 by the same build step as one host's (context upload, one build at a time under its build
lock, the npm cache mount), pushed from there to the bed's registry, and run on nodes 2 and 3, which
pull them by digest. A second `up` after a small change to each rebuilds with the npm cache warm,
under a prober through node 2's proxy. No process held a secret value (the push's registry login
among them) in its command line or environment meanwhile.

Node 1's npm reaches the local npm registry cache (on this machine's loopback) through a forward on
the bed's bridge (tools/forward.py) to a fault proxy with no faults (tools/faultproxy.py), whose
counts are this module's tarball downloads and nobody else's. npm's own build log says how many
packages an install added, not how many it downloaded; the proxy counts the downloads.

Run under the shared lock: flock /tmp/workhub-e2e.lock scripts/test tests/e2e/test_e2e_swarm_build.py -x -q
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from pulumi import automation as auto

from tests.e2e_fixtures import (assert_no_secret_in_any_process, build_records, mark_version, npm_steps_cached,
                                 secret_values)
from tests.e2e.test_e2e_swarm_up import (HOST_PORTS, bed, get, new_swarm_stack, probed_up,  # noqa: F401 (bed: fixture)
                                     reported, ssh)
from workhub.engine import print_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STACK = "e2e"
# Two sample hubs built on the build node; no volumes, so they keep off it (and can run anywhere else).
HUBS = [
    {"name": "wbhubmanager", "context": "WBHubManager", "port": 4090, "healthPath": "/health",
     "stackEnv": ["PUBLIC_URL"], "secrets": ["SESSION_SECRET"]},
    {"name": "wbfinhub", "context": "WBFinHub", "port": 4092, "healthPath": "/health",
     "stackEnv": ["PUBLIC_URL"], "secrets": ["LEDGER_SIGNING_KEY"]},
]
LABELS = [{"build": True}, {"serve": True}, {"serve": True}]
SWARM_HUBS = {hub["name"]: {"memoryMb": 256} for hub in HUBS}
ADDED = "left-pad@1.3.0"


@pytest.fixture(scope="module")
def npm_relay(bed, npm_registry):
    """The npm registry as node 1's builds reach it: a forward on the bridge address to a fault
    proxy without faults on loopback, in front of the local npm registry cache. One URL for the
    whole module (it is a build arg: another would miss node 1's build cache). Yields the URL and the
    proxy's counts."""
    from tools.faultproxy import running_proxy
    from tools.forward import Forward

    gateway = bed["registry"]["server"].rsplit(":", 1)[0]
    with running_proxy(npm_registry) as proxy:
        port = int(proxy.url.rstrip("/").rsplit(":", 1)[1])
        forward = Forward(gateway, 0, ("127.0.0.1", port))
        assert forward.port, f"could not listen on {gateway} for node 1's npm: {forward.error}"
        try:
            yield forward.url, proxy.stats
        finally:
            forward.close()


def node_docker(bed: dict, node: int, *args: str) -> subprocess.CompletedProcess:
    """Node `node`'s engine through its socket (as root on this machine)."""
    return subprocess.run(["/usr/bin/docker", "-H", bed["nodes"][node - 1]["docker_host"], *args],
                          capture_output=True, text=True, timeout=120)


def registry_digest(bed: dict, pushed: str) -> str:
    """The digest the bed's registry holds for the tag `pushed` (`server/repository:tag`)."""
    registry = bed["registry"]
    name, tag = pushed.removeprefix(registry["server"] + "/").rsplit(":", 1)
    login = f"{registry['username']}:{Path(registry['password_file']).read_text()}"
    request = urllib.request.Request(
        f"http://{registry['server']}/v2/{name}/manifests/{tag}", method="HEAD",
        headers={"Authorization": "Basic " + base64.b64encode(login.encode()).decode(),
                 "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                           "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.headers["Docker-Content-Digest"]


def running_tasks(bed: dict, hub: str) -> list[tuple[str, str]]:
    """The node and image of each running task of the hub's service."""
    listed = node_docker(bed, 2, "service", "ps", "--no-trunc", "--filter", "desired-state=running", "--format",
                         "{{.Node}} {{.Image}} {{.CurrentState}}", f"workhub-{STACK}_{hub}")
    assert listed.returncode == 0, listed.stderr
    return [(line.split()[0], line.split()[1]) for line in listed.stdout.splitlines() if " Running " in f" {line} "]


def builds_of(bed: dict, before: int) -> list[dict]:
    """This stack's builds recorded since `before` by the test bed's deploy user (whose home the nodes
    share with this machine; the single test host's builds go to its own user's), oldest first."""
    return [record for record in build_records(bed["user"])[before:] if record["stack"] == STACK]


def assert_one_at_a_time(records: list[dict]) -> None:
    spans = sorted((record["start_ms"], record["end_ms"], record["hub"]) for record in records)
    for (_, end, first), (start, _, second) in zip(spans, spans[1:]):
        assert start >= end, f"{second}'s build started {end - start} ms before {first}'s ended: {spans}"


def fetched_since(stats, before: dict[str, int]) -> dict[str, int]:
    """Tarballs downloaded through the relay since the snapshot `before`, with how often."""
    return {key: count - before.get(key, 0) for key, count in stats.tarballs.items() if count > before.get(key, 0)}


def back_end_only(sources: Path, context: str) -> None:
    """The sample hub without its front end (its Dockerfile's frontend steps and folder gone): the
    same server, install steps and cache mount, in a fraction of the build time."""
    shutil.rmtree(sources / context / "frontend")
    dockerfile = sources / context / "Dockerfile"
    lines = dockerfile.read_text().splitlines(keepends=True)
    kept = [line for line in lines if "frontend" not in line]
    assert len(lines) - len(kept) == 3, "the sample Dockerfile's three front-end lines"
    dockerfile.write_text("".join(kept))


def add_dependency(sources: Path, context: str, npm_registry: str) -> None:
    """A small change of a hub's lockfile, as a commit adding one package would make."""
    subprocess.run(["npm", "install", "--package-lock-only", "--no-audit", "--no-fund", "--registry", npm_registry,
                    "--omit-lockfile-registry-resolved", ADDED], cwd=sources / context, check=True,
                   capture_output=True)


def test_host_built_hubs_build_on_the_build_node_one_at_a_time_and_run_elsewhere_by_digest(
        tmp_path, toolchain, npm_registry, bed, npm_relay, sources, process_watch):
    relay_url, stats = npm_relay
    for hub in HUBS:
        back_end_only(sources, hub["context"])
    engine, stack = new_swarm_stack(tmp_path, bed, sources, relay_url, hubs=HUBS, labels=LABELS, swarm_hubs=SWARM_HUBS)
    # Nothing is built by CI in this stack.
    engine.pusher = lambda push, opts: pytest.fail(f"{push.plan.hub.name} was pushed from CI")
    urls = {hub["name"]: f"http://{bed['nodes'][1]['address']}:{HOST_PORTS[hub['name']]}" for hub in HUBS}
    try:
        # --- first up: cold (a new test bed: node 1's build cache and npm cache mount are empty) ---
        before = len(build_records(bed["user"]))
        result, out = reported(stack)
        assert result is not None, "\n".join(out[-40:])
        cold = builds_of(bed, before)
        assert sorted(record["hub"] for record in cold) == ["wbfinhub", "wbhubmanager"], cold
        assert all(record["result"] == "succeeded" for record in cold), cold
        assert_one_at_a_time(cold)
        cold_fetched = dict(stats.tarballs)
        print(f"cold: {sum(cold_fetched.values())} tarball downloads of {len(cold_fetched)} packages", file=sys.stderr)
        assert len(cold_fetched) >= 100, "the cold builds downloaded the hubs' packages through the relay"

        hubs = stack.outputs()["hubs"].value
        for record in cold:
            hub, image = record["hub"], record["image"]
            # Built on node 1: its image (by the build's own tag) is there and on no other node.
            assert node_docker(bed, 1, "image", "inspect", image).returncode == 0, f"{image} on node1"
            for other in (2, 3):
                assert node_docker(bed, other, "image", "inspect", image).returncode != 0, f"{image} on node{other}"
            pushed = hubs[hub]["pushed"]
            digest = registry_digest(bed, pushed)
            assert hubs[hub]["image"] == f"{pushed}@{digest}", hubs[hub]
            tasks = running_tasks(bed, hub)
            assert tasks and all(node != "node1" for node, _ in tasks), f"{hub} runs off the build node: {tasks}"
            for node, task_image in tasks:
                assert task_image.endswith("@" + digest), (node, task_image, digest)
                # The node pulled it from the registry: its copy carries the registry's digest.
                by_digest = f"{pushed.rsplit(':', 1)[0]}@{digest}"
                pulled = node_docker(bed, int(node.removeprefix("node")), "image", "inspect", "--format",
                                     "{{json .RepoDigests}}", by_digest)
                assert by_digest in json.loads(pulled.stdout or "[]"), pulled
            assert get(urls[hub] + "/health")[0] == 200

        # --- second up: a small change to each hub, under a prober through node 2's proxy ---
        mark_version(sources, "WBHubManager", "b2")
        add_dependency(sources, "WBFinHub", npm_registry)
        before, snapshot = len(build_records(bed["user"])), dict(stats.tarballs)
        result, out, reports = probed_up(stack, list(urls.values()), "/health")
        assert result is not None, "\n".join(out[-40:])
        warm = {record["hub"]: record for record in builds_of(bed, before)}
        assert sorted(warm) == ["wbfinhub", "wbhubmanager"], warm
        assert_one_at_a_time(list(warm.values()))
        fetched = fetched_since(stats, snapshot)
        print(f"warm: downloaded {fetched}", file=sys.stderr)
        # Only the added package came from the registry; the rest of the re-run install came from the
        # npm cache mount the cold build filled.
        assert set(fetched) == {ADDED}, fetched
        manager_log = Path(warm["wbhubmanager"]["log"]).read_text()
        assert set(npm_steps_cached(manager_log).values()) == {True}, manager_log[-3000:]
        assert warm["wbhubmanager"]["packages_added"] == 0
        fin_log = Path(warm["wbfinhub"]["log"]).read_text()
        assert npm_steps_cached(fin_log)["npm ci"] is False, fin_log[-3000:]
        added = [int(n) for n in re.findall(r"added (\d+) packages", fin_log)]
        assert added, fin_log[-3000:]
        for report in reports:
            assert report.failed == 0, report.summary()
            assert report.total >= 50, report.summary()
        hubs = stack.outputs()["hubs"].value
        for hub in warm:
            digest = registry_digest(bed, hubs[hub]["pushed"])
            tasks = running_tasks(bed, hub)
            assert tasks and all(node != "node1" and image.endswith("@" + digest) for node, image in tasks), tasks
    finally:
        stack.destroy(color="never", on_output=print_line)
        process_watch.secrets.update(secret_values(stack))


def test_no_secret_was_in_any_process_command_line_or_environment(bed, process_watch):
    """Through the Swarm's forming, the builds on the build node and their pushes (each with a
    registry login of its own), and the deploys, no process on this machine held a secret value in
    its command line or environment."""
    process_watch.secrets.update({f"the Swarm's {role} join token": ssh(bed, f"docker swarm join-token --quiet {role}").strip()
                                  for role in ("manager", "worker")})
    assert_no_secret_in_any_process(process_watch)
