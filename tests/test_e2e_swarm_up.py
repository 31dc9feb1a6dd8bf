"""`up` of a stack with workhub:swarm, end to end with the real Pulumi engine (Automation API, a local
file backend) on the Swarm test bed (scripts/swarm-testbed.sh: three nodes in network namespaces,
each its own dockerd and sshd, and an image registry with a login): workhub forms the Swarm, the
sample hubs' images reach every node through the registry, and one deploy on the first manager
runs them as services behind the proxy of each serving node. Under a prober through each serving
node's proxy: a changed setting rolls out with no failed request, and an update whose new version
answers its health path with 500 is rolled back by Swarm with no failed request, `up` failing with
the reason in its last lines.

Run under the shared lock: flock /tmp/workhub-e2e.lock scripts/test tests/test_e2e_swarm_up.py -x -q
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import pytest
import yaml
from pulumi import automation as auto

from components.scripts import arg_words
from tests.e2e_fixtures import CiStandIn, break_health
from tests.test_e2e_swarm import run_testbed
from workhub import engine as eng
from workhub.engine import print_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STACK = "e2e"
SERVICE = f"workhub-{STACK}_wbhubmanager"
# The sample hubs; wbhubmanager keeps no data here, so it can run 2 replicas; the others are pinned
# to the node that keeps their volume.
HUBS = [
    {"name": "wbhubmanager", "context": "WBHubManager", "port": 4090, "healthPath": "/health",
     "env": {"LOG_LEVEL": "info"}, "stackEnv": ["PUBLIC_URL"], "secrets": ["SESSION_SECRET"], "buildMode": "registry"},
    {"name": "wbsaleshub", "context": "WBSalesHub", "port": 4091, "healthPath": "/health",
     "stackEnv": ["PUBLIC_URL"], "secrets": ["LEADS_API_TOKEN"], "volumes": {"data": "/app/data"},
     "buildMode": "registry"},
    {"name": "wbfinhub", "context": "WBFinHub", "port": 4092, "healthPath": "/health",
     "stackEnv": ["PUBLIC_URL"], "secrets": ["LEDGER_SIGNING_KEY"], "volumes": {"data": "/app/data"},
     "buildMode": "registry"},
]
HOST_PORTS = {"wbhubmanager": 24190, "wbsaleshub": 24191, "wbfinhub": 24192}
LABELS = [{"serve": True, "build": True}, {"serve": True, "data": ["wbsaleshub"]}, {"data": ["wbfinhub"]}]


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    """The test bed with the Node base and proxy images in its registry; its nodes are plain
    engines (workhub forms the Swarm). Gone again after the module."""
    # Under pytest's own directory, which only root may enter: the nodes' engines keep their data
    # elsewhere (scripts/swarm-testbed.sh), where the deploy user's steps on the build node read the
    # free disk, as on a real node.
    state = tmp_path_factory.mktemp("swarm-up")
    started = run_testbed(state, "up", "--hub-images")
    if started.returncode != 0:
        logs = run_testbed(state, "logs").stdout
        run_testbed(state, "down", "--purge")
        pytest.fail(f"the Swarm test bed did not come up:\n{started.stderr[-3000:]}\n{logs[-5000:]}")
    yield json.loads(started.stdout)
    stopped = run_testbed(state, "down", "--purge")
    assert stopped.returncode == 0, stopped.stderr


class BedCi(CiStandIn):
    """CI for the test bed: builds each registry-mode hub on this machine's engine (which reaches the
    npm registry cache) with the args pulumi-docker would get, and pushes it to the test bed's
    registry through node 1's engine (this machine's engine refuses a plain-HTTP registry that is
    not on loopback); then forgets it on both, so every node pulls it from the registry."""

    def __init__(self, bed: dict):
        super().__init__(bed["registry"])
        self.node = bed["nodes"][0]["docker_host"]

    def __call__(self, push, opts) -> list:
        if push.remote in self.pushed:
            return []
        self.docker("build", "--network=host", "--progress=plain", "--file",
                    str(push.plan.context / push.plan.hub.dockerfile), "--tag", push.remote,
                    *arg_words(push.args), str(push.plan.context))
        saved = subprocess.Popen(["/usr/bin/docker", "save", push.remote], stdout=subprocess.PIPE)
        loaded = subprocess.run(["/usr/bin/docker", "-H", self.node, "load", "--quiet"], stdin=saved.stdout,
                                capture_output=True, text=True)
        assert saved.wait() == 0 and loaded.returncode == 0, loaded.stderr
        with tempfile.TemporaryDirectory() as config:
            password = Path(self.registry["password_file"]).read_bytes()
            self.docker("-H", self.node, "login", "--username", self.registry["username"], "--password-stdin",
                        push.registry.server, config=Path(config), stdin=password)
            self.docker("-H", self.node, "push", push.remote, config=Path(config))
        self.docker("-H", self.node, "image", "rm", push.remote)
        self.docker("image", "rm", push.remote)
        self.pushed.append(push.remote)
        return []


def public_url(hub: str, rev: str = "") -> str:
    return f"http://10.213.37.11:{HOST_PORTS[hub]}/{rev}"


def new_swarm_stack(tmp_path: Path, bed: dict, sources: Path, npm_registry: str, hubs: list[dict] = HUBS,
                    labels: list[dict] = LABELS, swarm_hubs: Optional[dict] = None) -> tuple[eng.Engine, auto.Stack]:
    """The stack `e2e` on the test bed's Swarm: the sample hubs (by default wbhubmanager with 2
    replicas; `swarm_hubs` replaces workhub:swarm.hubs), node N with `labels[N - 1]`, its project in
    a directory and file backend of its own."""
    work = tmp_path / "project"
    work.mkdir()
    project = yaml.safe_load((eng.REPO / "Pulumi.yaml").read_text())
    project["config"]["workhub:hubs"]["value"] = hubs
    project["config"]["workhub:deploy"]["value"].update(healthTimeoutSeconds=20, healthyPasses=2,
                                                        healthIntervalMs=300, stopGraceSeconds=5)
    (work / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    registry = bed["registry"]
    swarm = {"user": bed["user"], "managers": [node["name"] for node in bed["nodes"]], "monitorSeconds": 5,
             "healthIntervalSeconds": 1,
             "nodes": [{"name": node["name"], "address": node["address"], "hostKey": node["host_public_key"],
                        "labels": node_labels} for node, node_labels in zip(bed["nodes"], labels)],
             "hubs": {"wbhubmanager": {"replicas": 2, "memoryMb": 256}} if swarm_hubs is None else swarm_hubs}
    ports = {hub["name"]: HOST_PORTS[hub["name"]] for hub in hubs}
    values = {
        "workhub:sourceRoot": str(sources),
        "workhub:npmRegistry": npm_registry,
        "workhub:registry.server": registry["server"],
        "workhub:registry.username": registry["username"],
        "workhub:proxyImage": bed["hub_images"]["proxy"],
        "workhub:swarm": json.dumps(swarm),
        **{f"workhub:hostPorts.{hub}": str(port) for hub, port in ports.items()},
        **{f"workhub:env.{hub}.PUBLIC_URL": public_url(hub) for hub in ports},
    }
    engine = eng.local_engine(work_dir=work, state_dir=tmp_path)
    engine.pusher = BedCi(bed)
    stack = engine.stack(STACK)
    stack.set_all_config({key: auto.ConfigValue(value) for key, value in values.items()}, path=True)
    engine.set_secret(STACK, "workhub:sshPrivateKey", Path(bed["private_key_path"]).read_text())
    engine.set_secret(STACK, "workhub:registryPassword", Path(registry["password_file"]).read_text())
    for hub, named in eng.local_secrets(hubs, tmp_path).items():
        for name, value in named.items():
            engine.set_secret(STACK, f"workhub:secrets.{hub}.{name}", value, path=True)
    return engine, stack


def reported(stack: auto.Stack) -> tuple[object, list[str]]:
    """`up` as `scripts/workhub up` runs it; its result and every line it printed, in order."""
    out: list[str] = []

    def say(line: str) -> None:
        print_line(line)
        out.append(line)

    return eng.run_reported("up", stack, say=say, say_failure=say), out


def ssh(bed: dict, command: str) -> str:
    """`command` as the deploy user on node 1 (a manager), its host key checked; its stdout."""
    node = bed["nodes"][0]
    done = subprocess.run(["ssh", "-i", bed["private_key_path"], "-o", f"UserKnownHostsFile={bed['known_hosts_path']}",
                           "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                           f"{bed['user']}@{node['address']}", command], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def get(url: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def serving_urls(bed: dict, hub: str) -> list[str]:
    """The hub's host port on each serving node (where the proxy publishes it)."""
    return [f"http://{node['address']}:{HOST_PORTS[hub]}" for node, labels in zip(bed["nodes"], LABELS)
            if labels.get("serve")]


def probed_up(stack: auto.Stack, urls: list[str], path: str = "/debug/digests"):
    """`up` under a prober on each of `urls` (by default through a proxy to wbhubmanager's settings
    page); the up's result, its lines, and the probers' reports."""
    from tools.prober import Prober

    probers = [Prober(url, rate=10, timeout=10, path=path).start() for url in urls]
    try:
        result, out = reported(stack)
        time.sleep(2)
    finally:
        for prober in probers:
            prober.stop()
    reports = [prober.report() for prober in probers]
    for report in reports:
        print(report.summary(), file=sys.stderr)
    return result, out, reports


def public_urls_seen(report) -> list[str]:
    """Which of the stack's PUBLIC_URL values the hub's answers named, in the order first seen (the
    prober keeps the start of each body, where the settings are)."""
    known = [public_url("wbhubmanager"), public_url("wbhubmanager", "v2")]
    return list(dict.fromkeys(url for body in report.bodies for url in known if f'"PUBLIC_URL":"{url}"' in body))


def test_up_deploys_the_sample_hubs_rolls_a_setting_out_and_a_bad_version_back_without_a_failed_request(
        tmp_path, toolchain, npm_registry, bed, sources):
    engine, stack = new_swarm_stack(tmp_path, bed, sources, npm_registry)
    try:
        result, out = reported(stack)
        assert result is not None, "\n".join(out[-40:])
        hubs = stack.outputs()["hubs"].value
        for hub in HOST_PORTS:
            assert "@sha256:" in hubs[hub]["image"], hubs[hub]
            assert hubs[hub]["urls"] == serving_urls(bed, hub)
            for url in serving_urls(bed, hub):
                assert get(url + "/health")[0] == 200, f"{hub} through {url}"
        assert hubs["wbhubmanager"]["replicas"] == "2/2" and hubs["wbsaleshub"]["replicas"] == "1/1"
        nodes = ssh(bed, f"docker service ps {SERVICE} --filter desired-state=running --format '{{{{.Node}}}}'").split()
        assert len(nodes) == 2 and len(set(nodes)) == 2, f"the two replicas run on two nodes: {nodes}"
        assert "node1" not in nodes, "a hub without data keeps off the build node"
        pinned = ssh(bed, f"docker service ps workhub-{STACK}_wbsaleshub --filter desired-state=running "
                          "--format '{{.Node}}'").split()
        assert pinned == ["node2"], "a hub with data runs on the node that keeps it"
        first_image = hubs["wbhubmanager"]["image"]

        # A changed setting: a rolling update of the two replicas, start-first, behind both proxies.
        stack.set_config("workhub:env.wbhubmanager.PUBLIC_URL", auto.ConfigValue(public_url("wbhubmanager", "v2")),
                         path=True)
        result, out, reports = probed_up(stack, serving_urls(bed, "wbhubmanager"))
        assert result is not None, "\n".join(out[-40:])
        assert any(f"{SERVICE}: rolled out" in line for line in out), "\n".join(out[-40:])
        for report in reports:
            assert report.failed == 0, report.summary()
            assert report.total >= 100, report.summary()
            assert public_urls_seen(report) == [public_url("wbhubmanager"), public_url("wbhubmanager", "v2")], \
                report.summary()
        assert stack.outputs()["hubs"].value["wbhubmanager"]["image"] == first_image, "a setting is no new image"

        # A new version whose health path answers 500: Swarm rolls it back, no request reaches it, and
        # `up` fails saying why, last.
        break_health(sources, "WBHubManager")
        result, out, reports = probed_up(stack, serving_urls(bed, "wbhubmanager"))
        assert result is None
        whole, report = "\n".join(out), out[-1]
        lines = report.splitlines()
        assert lines[0] == f"workhub: up of stack '{STACK}' failed", report
        assert lines[1].startswith("  step: Swarm deploy (swarm-deploy on deploy@10.213.37.11:22"), report
        reason = lines[2]
        assert reason.startswith(f"  reason: {SERVICE}: its update did not stay healthy and Swarm rolled it back ("), \
            report
        # Docker's own words on the failed tasks follow when it kept any (not after every rollback).
        assert not reason.rstrip().endswith(";"), report
        assert whole.count(reason.removeprefix("  reason: ")) == 1, "the reason is said once, in the report"
        assert "Traceback" not in whole
        for probe in reports:
            assert probe.failed == 0, probe.summary()
            assert probe.total >= 100, probe.summary()
            assert public_urls_seen(probe) == [public_url("wbhubmanager", "v2")], probe.summary()
        running = ssh(bed, f"docker service inspect --format '{{{{.Spec.TaskTemplate.ContainerSpec.Image}}}}' {SERVICE}")
        assert running.strip() == first_image, "the service runs its previous version"
        for url in serving_urls(bed, "wbhubmanager"):
            assert get(url + "/health")[0] == 200
    finally:
        stack.destroy(color="never", on_output=print_line)
    left = ssh(bed, f"docker service ls --filter label=com.docker.stack.namespace=workhub-{STACK} --format '{{{{.Name}}}}'")
    assert left.strip() == "", f"destroy left services: {left}"
    shutil.rmtree(tmp_path / "project", ignore_errors=True)
