"""`up` of a stack with workhub:swarm, end to end with the real Pulumi engine (Automation API, a local
file backend) on the Swarm test bed (scripts/swarm-testbed.sh: three nodes in network namespaces,
each its own dockerd and sshd, and an image registry with a login): workhub forms the Swarm, the
sample hubs' images reach every node through the registry, and one deploy on the first manager
runs them as services behind the proxy of each serving node. Under a prober through each serving
node's proxy: a changed setting rolls out with no failed request, and an update whose new version
answers its health path with 500 is rolled back by Swarm with no failed request, `up` failing with
the reason in its last lines. Then, on that stack, what its operator runs as `scripts/workhub` (a
subprocess of `python -m workhub` in the stack's project, its backend and passphrase in the
environment): `backup`, `restore` and `status`; a one-host stack's backup (the test host) restored
into it, as a move to a Swarm does; and `destroy`, which keeps the volumes on their nodes, and
`destroy --purge-data`, which removes them there. Through all of it, no process on this machine (the
engine and its providers, and every node's sshd, scripts and Docker clients) held a secret value
in its command line or environment: the SSH keys, the hubs' secrets, the registry password and the
Swarm's join tokens.

The tests run in this order on one deployed stack (the `deployed` fixture runs the first `up`).
Run under the shared lock: flock /tmp/workhub-e2e.lock scripts/test tests/e2e/test_e2e_swarm_up.py -x -q
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
import yaml
from pulumi import automation as auto

from components.config.models import DEFAULT_HELPER_IMAGE
from components.render.host.build import arg_words
from tests.e2e_fixtures import (CiStandIn, assert_no_secret_in_any_process, break_health, build_cache_to_itself, docker,
                                 engine_shared, new_local_stack, secret_values, serving_container, workhub)
from tests.e2e.test_e2e_swarm import wait_for
from tests.e2e.test_e2e_swarm import ssh as ssh_on
from tests.e2e.test_e2e_swarm_nodes import running_on as nodes_running
from tests.e2e.test_e2e_swarm_nodes import volume_nodes as nodes_holding
from tests.swarm_bed import reset_testbed
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
def bed(swarm_testbed):
    """The run's test bed (tests/swarm_bed.py) with the Node base and proxy images in its registry;
    its nodes plain engines again (workhub forms the Swarm): its env."""
    return reset_testbed(swarm_testbed)[0]


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
        # This machine's engine is used from the build to the last `image rm`: held shared all along, so
        # a test that restarts it (engine_to_itself: the proxy test) waits instead of cutting a step off.
        with engine_shared():
            with build_cache_to_itself():
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


def public_url(hub: str, rev: str = "", port: Optional[int] = None) -> str:
    return f"http://10.213.37.11:{port or HOST_PORTS[hub]}/{rev}"


def new_swarm_stack(tmp_path: Path, bed: dict, sources: Path, npm_registry: str, *, name: str = STACK,
                    hubs: list[dict] = HUBS, host_ports: Optional[dict[str, int]] = None,
                    labels: list[dict] = LABELS, swarm_hubs: Optional[dict] = None,
                    engine: eng.Engine | None = None, values: dict[str, str] | None = None,
                    ) -> tuple[eng.Engine, auto.Stack]:
    """The stack `name` (`e2e`) on the test bed's Swarm: `hubs` (the sample hubs) on `host_ports`
    (by default HOST_PORTS), node N with `labels[N - 1]`, `swarm_hubs` as workhub:swarm.hubs (by
    default wbhubmanager with 2 replicas), `values` added to its config. Its project is in a
    directory and file backend of its own, unless `engine` (another stack's) is given: then it
    shares that one's, as a stack that promotes from the other must."""
    if engine is None:
        work = tmp_path / "project"
        work.mkdir()
        project = yaml.safe_load((eng.REPO / "Pulumi.yaml").read_text())
        project["config"]["workhub:hubs"]["value"] = hubs
        project["config"]["workhub:deploy"]["value"].update(healthTimeoutSeconds=20, healthyPasses=2,
                                                            healthIntervalMs=300, stopGraceSeconds=5)
        (work / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
        engine = eng.local_engine(work_dir=work, state_dir=tmp_path)
        engine.pusher = BedCi(bed)
    registry = bed["registry"]
    names = {hub["name"] for hub in hubs}
    host_ports = host_ports or {hub: port for hub, port in HOST_PORTS.items() if hub in names}
    # A node holds the data of this stack's hubs only (naming another hub is refused).
    labels = [{key: [hub for hub in value if hub in names] if key == "data" else value for key, value in row.items()}
              for row in labels]
    swarm = {"user": bed["user"], "managers": [node["name"] for node in bed["nodes"]], "monitorSeconds": 5,
             "healthIntervalSeconds": 1,
             "nodes": [{"name": node["name"], "address": node["address"], "hostKey": node["host_public_key"],
                        "labels": row} for node, row in zip(bed["nodes"], labels)],
             "hubs": {"wbhubmanager": {"replicas": 2, "memoryMb": 256}} if swarm_hubs is None else swarm_hubs}
    config = {
        "workhub:sourceRoot": str(sources),
        "workhub:npmRegistry": npm_registry,
        "workhub:registry.server": registry["server"],
        "workhub:registry.username": registry["username"],
        "workhub:proxyImage": bed["hub_images"]["proxy"],
        "workhub:swarm": json.dumps(swarm),
        **{f"workhub:hostPorts.{hub}": str(port) for hub, port in host_ports.items()},
        **{f"workhub:env.{hub}.PUBLIC_URL": public_url(hub, port=port) for hub, port in host_ports.items()},
        **(values or {}),
    }
    stack = engine.stack(name)
    stack.set_all_config({key: auto.ConfigValue(value) for key, value in config.items()}, path=True)
    engine.set_secret(name, "workhub:sshPrivateKey", Path(bed["private_key_path"]).read_text())
    engine.set_secret(name, "workhub:registryPassword", Path(registry["password_file"]).read_text())
    for hub, named in eng.local_secrets(hubs, tmp_path).items():
        for secret, value in named.items():
            engine.set_secret(name, f"workhub:secrets.{hub}.{secret}", value, path=True)
    return engine, stack


@dataclass
class Deployed:
    engine: eng.Engine
    stack: auto.Stack
    sources: Path
    first_up: tuple[object, list[str]]
    """The first `up`'s result and its lines."""
    rolled_back: bool = False
    """Whether wbhubmanager's last update was rolled back (the first test's last step)."""


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, toolchain, npm_registry, bed, test_host, process_watch):
    """The stack `e2e` on the test bed, deployed by a first `up` (the tests that follow see what it
    did); destroyed after the module (a no-op when a test destroyed it already). CI's stand-in builds
    on this machine's Docker engine, which the test host starts when it is not running."""
    tmp = tmp_path_factory.mktemp("swarm-up")
    # Not under `tmp`, the stack's state directory, whose files workhub makes private once: CI's
    # stand-in builds from the sources with their modes, and the hubs' own uids must read them.
    sources = tmp_path_factory.mktemp("swarm-sources") / "examples"
    shutil.copytree(eng.REPO / "examples", sources, ignore=shutil.ignore_patterns("node_modules", "dist"))
    engine, stack = new_swarm_stack(tmp, bed, sources, npm_registry)
    try:
        yield Deployed(engine, stack, sources, reported(stack))
    finally:
        stack.destroy(color="never", on_output=print_line)
        shutil.rmtree(tmp / "project", ignore_errors=True)


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
        deployed, bed):
    stack, sources, (result, out) = deployed.stack, deployed.sources, deployed.first_up
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
    # Swarm rolled wbhubmanager back: its last update, as `status` shows it later in this module.
    deployed.rolled_back = True
    assert result is None
    whole, report = "\n".join(out), out[-1]
    lines = report.splitlines()
    assert lines[0] == f"workhub: up of stack '{STACK}' failed", report
    assert lines[1].startswith(f"  step: Swarm deploy (swarm-deploy on {bed['user']}@10.213.37.11:22"), report
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




def running_on(bed: dict, hub: str) -> list[str]:
    return nodes_running(bed, f"workhub-{STACK}_{hub}")


def volume_nodes(bed: dict, hub: str) -> list[str]:
    """The nodes that hold the hub's `data` volume."""
    return nodes_holding(bed, f"workhub-{STACK}-{hub}-data")


def in_task(bed: dict, node: int, hub: str, command: str) -> str:
    """`command` (sh) in the hub's running task container on node `node`."""
    return ssh_on(bed, node, f"docker exec \"$(docker ps --quiet --filter label=com.docker.swarm.service.name="
                             f"workhub-{STACK}_{hub})\" sh -c {shlex.quote(command)}")


def files_seen(bed: dict, hub: str = "wbsaleshub") -> list[dict]:
    """The hub's data files as it lists them itself (/debug/data), through each serving node's proxy,
    once the proxies send it requests again."""
    seen = []
    for url in serving_urls(bed, hub):
        deadline = time.monotonic() + 60
        while get(url + "/health")[0] != 200:
            assert time.monotonic() < deadline, f"{hub} does not answer through {url}"
            time.sleep(0.5)
        status, body = get(url + "/debug/data")
        assert status == 200, f"{url}/debug/data answered {status}"
        seen.append(json.loads(body)["files"])
    return seen


def kept_copies(bed: dict, node: int) -> list[str]:
    """The volumes on node `node` that hold what a restore replaced (`<volume>.pre-restore-<time>`)."""
    return ssh_on(bed, node, "docker volume ls --quiet --filter label=workhub.pre-restore").split()


def table(lines: list[str], header: str) -> dict[str, list[str]]:
    """The rows of the aligned table under the line starting with `header`, by first cell."""
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells
    return rows


def test_the_hubs_tasks_run_boxed(deployed, bed):
    """A hub's task runs as its own uid and gid with no capability and a pids limit; its secret file
    is its uid's, mode 0400; the files of its data volume (made on its node before the deploy) are its
    uid's, and it writes there."""
    from components.config.models import Hub, run_uid

    uid = run_uid(Hub.model_validate(HUBS[1]), STACK)
    status = dict(line.split(":", 1) for line in in_task(bed, 2, "wbsaleshub", "cat /proc/1/status").splitlines())
    assert status["Uid"].split() == [str(uid)] * 4 and status["Gid"].split() == [str(uid)] * 4, status
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, status
    assert in_task(bed, 2, "wbsaleshub", "stat -c '%u:%g %a' /run/secrets/LEADS_API_TOKEN").strip() == f"{uid}:{uid} 400"
    assert in_task(bed, 2, "wbsaleshub", "stat -c %u:%g /app/data && echo x > /app/data/boxed && rm /app/data/boxed"
                   ).strip() == f"{uid}:{uid}"
    limit = ssh_on(bed, 2, "docker inspect --format '{{.HostConfig.PidsLimit}}' \"$(docker ps --quiet --filter "
                           f"label=com.docker.swarm.service.name=workhub-{STACK}_wbsaleshub)\"")
    assert limit.strip() == "512"


def test_backup_restore_and_status_through_the_cli(deployed, bed, tmp_path):
    """`backup` reads each pinned hub's volume on its own node into a manifest; `restore` puts the
    volumes back (a file written after the backup is gone, one removed after it is back) and the
    hubs run again with their replicas, there; `status` shows every hub's service and every node."""
    engine = deployed.engine
    in_task(bed, 2, "wbsaleshub", "printf 'before the backup' > /app/data/before.txt")
    out_dir = tmp_path / "backup"
    backed = workhub(engine, "backup", "--stack", STACK, "--out", str(out_dir))
    assert backed.returncode == 0, backed.stderr[-3000:]
    assert backed.stdout.splitlines()[-1] == f"workhub: backup of '{STACK}' written: {out_dir / 'manifest.json'}"
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert (manifest["stack"], manifest["swarm"]) == (STACK, ["node1", "node2", "node3"])
    assert sorted((a["hub"], a["volume"], a["node"]) for a in manifest["archives"]) == \
        [("wbfinhub", "data", "node3"), ("wbsaleshub", "data", "node2")], "each volume read on its own node"
    for archive in manifest["archives"]:
        assert hashlib.sha256((out_dir / archive["file"]).read_bytes()).hexdigest() == archive["sha256"]
        assert f"backup: {archive['hub']}/data on {archive['node']}: " in backed.stderr

    in_task(bed, 2, "wbsaleshub", "rm /app/data/before.txt && printf 'after the backup' > /app/data/after.txt")
    assert all("after.txt" in files and "before.txt" not in files for files in files_seen(bed))
    kept_before = {node: set(kept_copies(bed, node)) for node in (2, 3)}
    restored = workhub(engine, "restore", "--stack", STACK, "--from", str(out_dir))
    assert restored.returncode == 0, restored.stderr[-3000:]
    assert restored.stdout.splitlines()[-1] == f"workhub: 2 volume(s) of '{STACK}' restored from {out_dir}"
    assert "is a backup of stack" not in restored.stderr, "its own backup: nothing to say about it"
    assert (running_on(bed, "wbsaleshub"), running_on(bed, "wbfinhub")) == (["node2"], ["node3"])
    for node, hub in ((2, "wbsaleshub"), (3, "wbfinhub")):
        assert ssh_on(bed, node, "docker volume ls --quiet --filter label=workhub.restore").strip() == "", \
            "the staged copy went into the volume's place"
        kept = sorted(set(kept_copies(bed, node)) - kept_before[node])
        assert [name.split(".pre-restore-")[0] for name in kept] == [f"workhub-{STACK}-{hub}-data"], kept
    (kept,) = set(kept_copies(bed, 2)) - kept_before[2]
    # Read with the helper image the test bed puts in every node's engine (the proxy's is in the registry,
    # behind its login).
    assert ssh_on(bed, 2, f"docker run --rm --user 0 -v {kept}:/kept:ro --entrypoint cat {DEFAULT_HELPER_IMAGE} "
                          "/kept/after.txt") == "after the backup", "the content it replaced is kept"
    for files in files_seen(bed):
        assert "after.txt" not in files, "written after the backup: gone"
        assert files["before.txt"]["sha256"] == hashlib.sha256(b"before the backup").hexdigest()
    # Running by Swarm's count when restore returns; served once each proxy's next DNS resolution and
    # health check take the new task (about a second).
    wait_for("wbfinhub served again through every proxy",
             lambda: all(get(url + "/health")[0] == 200 for url in serving_urls(bed, "wbfinhub")), timeout=30, pause=0.2)

    status = workhub(engine, "status", "--stack", STACK)
    assert status.returncode == 0, status.stderr[-3000:]
    lines = status.stdout.splitlines()
    assert lines[0].split() == ["HUB", "REPLICAS", "NODES", "IMAGE", "HEALTH", "UPDATED", "UPDATE"], status.stdout
    hubs = table(lines, "HUB ")
    assert set(hubs) == set(HOST_PORTS), status.stdout
    manager = hubs["wbhubmanager"]
    assert manager[1] == "2/2" and manager[2] in ("node2, node3", "node2 x2", "node3 x2"), status.stdout
    assert manager[4] == "ok", status.stdout
    if deployed.rolled_back:
        assert manager[6].startswith("rollback_completed: "), status.stdout
    else:
        assert manager[6] == "applied (no rollout)", status.stdout
    assert hubs["wbsaleshub"][1:3] == ["1/1", "node2"] and hubs["wbfinhub"][1:3] == ["1/1", "node3"], status.stdout
    assert all(row[3].startswith(bed["registry"]["server"] + "/") and f"/{hub}:" in row[3] and "@sha256:" in row[3]
               and row[4] == "ok" for hub, row in hubs.items()), status.stdout
    nodes = table(lines, "NODE ")
    assert sorted(nodes) == ["node1", "node2", "node3"], status.stdout
    assert [nodes[n][1] for n in ("node1", "node2", "node3")] == [node["address"] for node in bed["nodes"]]
    assert nodes["node1"][2:5] == ["manager (leader)", "active", "ready"], status.stdout
    assert (nodes["node1"][5], nodes["node2"][5], nodes["node3"][5]) == \
        ("build,serve", "data.wbsaleshub,serve", "data.wbfinhub"), status.stdout


def bad_backup(folder: Path, content: bytes, files: int = 1) -> Path:
    """A backup of wbsaleshub's volume whose manifest matches `content` (sha256 and `files`), so that
    only the node can find what is wrong with it."""
    folder.mkdir(parents=True)
    (folder / "wbsaleshub-data.tar.gz").write_bytes(content)
    entry = {"hub": "wbsaleshub", "volume": "data", "docker_volume": f"workhub-{STACK}-wbsaleshub-data",
             "stack": STACK, "image": "", "time": "2026-12-07T11:00:00+00:00", "file": "wbsaleshub-data.tar.gz",
             "bytes": len(content), "sha256": hashlib.sha256(content).hexdigest(), "files": files, "node": "node2"}
    (folder / "manifest.json").write_text(json.dumps({"stack": STACK, "swarm": ["node1", "node2", "node3"],
                                                      "archives": [entry]}))
    return folder


def tar_gz(files: dict[str, bytes]) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_corrupt_archive_whose_sha256_matches_changes_nothing_and_the_hub_keeps_serving(deployed, bed, tmp_path):
    """An archive that is not a gzipped tar, and one that holds fewer files than its manifest says,
    both with a matching sha256: each restore fails on the node while the hub still runs (a prober
    through each proxy sees no failed request), its last line says why and that nothing changed;
    the hub's data is as it was, its service at its replicas, and no staged copy is left."""
    from tools.prober import Prober

    engine = deployed.engine
    before = files_seen(bed)
    cases = [(bad_backup(tmp_path / "corrupt", b"\x1f\x8b" + os.urandom(4000)), "the archive does not extract into "),
             (bad_backup(tmp_path / "short", tar_gz({"one.txt": b"one"}), files=2),
              "the archive holds 2 file(s), but 1 arrived in ")]
    probers = [Prober(url, rate=10, timeout=10, path="/health").start() for url in serving_urls(bed, "wbsaleshub")]
    try:
        for source, reason in cases:
            restored = workhub(engine, "restore", "--stack", STACK, "--hub", "wbsaleshub", "--from", str(source))
            assert restored.returncode == 1, restored.stderr[-3000:]
            last = restored.stderr.strip().splitlines()[-1]
            assert last.startswith("the restore of wbsaleshub/data failed before the hub was stopped: " + reason), last
            assert last.endswith(f"; nothing was changed: workhub-{STACK}-wbsaleshub-data holds its data as before, "
                                 f"and workhub-{STACK}_wbsaleshub kept running"), last
    finally:
        for prober in probers:
            prober.stop()
    for report in (prober.report() for prober in probers):
        assert report.failed == 0, report.summary()
    assert running_on(bed, "wbsaleshub") == ["node2"]
    assert files_seen(bed) == before
    assert ssh_on(bed, 2, "docker volume ls --quiet --filter label=workhub.restore").strip() == ""


def test_a_restore_that_fails_halfway_through_its_swap_puts_the_old_content_back(deployed, bed, tmp_path,
                                                                                  monkeypatch):
    """The copy of the staged content into the hub's volume fails after it wrote into it (a stand-in
    for a full disk or a lost node): the exit trap copies the old content back from the kept copy,
    the service comes back at its replicas on its node, and the failure's last line says all that."""
    from components.render.swarm import data as swarm_data
    from workhub import data

    before = files_seen(bed)
    source = bad_backup(tmp_path / "good", tar_gz({"new.txt": b"new"}))
    swap = swarm_data.swap_script
    # `docker`, for the copy from the staged volume only: it copies, writes one more file, and fails.
    breaking = r"""docker() {
  if [ "${1:-}" = run ] && [[ "$*" == *".restore-"*":/from:ro"* ]]; then
    command docker "$@"
    command docker run --rm --user 0 --network none -v "$volume:/to" --entrypoint sh "$helper_image" -c 'echo half > /to/half'
    return 1
  fi
  command docker "$@"
}
"""
    monkeypatch.setattr(swarm_data, "swap_script", lambda *args: breaking + swap(*args))
    config, key = eng.stack_config(deployed.stack)
    lines: list[str] = []
    with pytest.raises(data.DataError) as failed:
        data.swarm_restore(config, key, STACK, source, "wbsaleshub", None, lines.append,
                           data._registry_password(deployed.stack))
    last = str(failed.value).splitlines()[-1]
    volume = f"workhub-{STACK}-wbsaleshub-data"
    assert last.startswith(f"the restore of wbsaleshub failed: copying {volume}.restore-"), last
    assert f"; {volume} holds its old content again (a copy of it is in {volume}.pre-restore-" in last, last
    assert last.endswith(f"; restored before that: nothing; workhub-{STACK}_wbsaleshub is back at its 1 task(s) "
                         "on node2"), last
    assert running_on(bed, "wbsaleshub") == ["node2"]
    assert files_seen(bed) == before, "byte for byte what it held before"
    assert ssh_on(bed, 2, "docker volume ls --quiet --filter label=workhub.restore").strip() == ""


ONE_HOST_HUB = {key: value for key, value in HUBS[1].items() if key != "buildMode"}


def test_a_one_host_stacks_backup_restores_into_the_swarm_stack(deployed, bed, test_host, npm_registry, tmp_path,
                                                                 process_watch):
    """The move docs/swarm.md describes: a hub's data backed up on one host (the test host, stack
    `onehost`) and restored into the Swarm stack's hub of the same name; restore says, once, whose
    backup it is, and the file is on the hub's data node, read through the hub itself."""
    engine, stack = new_local_stack(tmp_path, test_host, npm_registry, hubs=[ONE_HOST_HUB], name="onehost",
                                    source_root=deployed.sources, deploy={"healthTimeoutSeconds": 30})
    try:
        stack.up(on_output=print_line, color="never")
        moved = os.urandom(50_000)
        subprocess.run(["/usr/bin/docker", "exec", "-i", serving_container("wbsaleshub", "onehost"), "sh", "-c",
                        "cat > /app/data/moved.bin"], input=moved, check=True)
        out_dir = tmp_path / "from-one-host"
        backed = workhub(engine, "backup", "--stack", "onehost", "--out", str(out_dir))
        assert backed.returncode == 0, backed.stderr[-3000:]
        manifest = json.loads((out_dir / "manifest.json").read_text())
        assert [(a["hub"], a["volume"], a["docker_volume"]) for a in manifest["archives"]] == \
            [("wbsaleshub", "data", "workhub-onehost-wbsaleshub-data")] and "swarm" not in manifest

        restored = workhub(deployed.engine, "restore", "--stack", STACK, "--from", str(out_dir), "--from-stack", "onehost")
        assert restored.returncode == 0, restored.stderr[-3000:]
        assert restored.stdout.splitlines()[-1] == f"workhub: 1 volume(s) of '{STACK}' restored from {out_dir}"
        said = [line for line in restored.stderr.splitlines() if "is a backup of stack" in line]
        assert said == [f"restore: {out_dir / 'manifest.json'} is a backup of stack 'onehost' (made on the host "
                        f"{test_host['user']}@{test_host['host']}:{test_host['port']}); restoring it into '{STACK}'"], said
        assert running_on(bed, "wbsaleshub") == ["node2"] and volume_nodes(bed, "wbsaleshub") == ["node2"]
        for files in files_seen(bed):
            assert files["moved.bin"]["sha256"] == hashlib.sha256(moved).hexdigest()
            assert "before.txt" not in files, "the volume holds what the one host's held, nothing else"
        assert in_task(bed, 2, "wbsaleshub", "sha256sum /app/data/moved.bin").split()[0] == \
            hashlib.sha256(moved).hexdigest()
    finally:
        stack.destroy(color="never", on_output=print_line)
        docker("volume", "rm", "workhub-onehost-wbsaleshub-data", check=False)
        process_watch.secrets.update({f"{key} (of stack onehost)": value for key, value in secret_values(stack).items()})


def test_destroy_keeps_the_volumes_on_their_nodes_and_purge_data_removes_them_there(deployed, bed):
    engine = deployed.engine
    destroyed = workhub(engine, "destroy", "--stack", STACK, f"--yes={STACK}")
    assert destroyed.returncode == 0, destroyed.stderr[-3000:]
    message = destroyed.stdout.strip().splitlines()
    start = next(i for i, line in enumerate(message) if line.startswith(f"workhub: stack '{STACK}' destroyed: "))
    assert message[start].endswith("its hubs' and its proxy's services, its network, configs and secrets are off "
                                   "its Swarm; it keeps:"), message
    assert message[start + 1] == ("  - the hubs' volumes (their data) on their data nodes: wbsaleshub on node2, "
                                  f"wbfinhub on node3 (`scripts/workhub destroy --stack {STACK} --purge-data` "
                                  "removes them)"), message
    assert message[start + 2].startswith("  - the Swarm: node1, node2, node3 stay in it"), message
    left = ssh(bed, f"docker service ls --filter label=com.docker.stack.namespace=workhub-{STACK} --format '{{{{.Name}}}}'")
    assert left.strip() == "", f"destroy left services: {left}"
    assert (volume_nodes(bed, "wbsaleshub"), volume_nodes(bed, "wbfinhub")) == (["node2"], ["node3"])

    purged = workhub(engine, "destroy", "--stack", STACK, "--purge-data", f"--yes={STACK}")
    assert purged.returncode == 0, purged.stderr[-3000:]
    last = [line for line in purged.stdout.splitlines() if line.startswith(f"workhub: stack '{STACK}' destroyed: ")]
    assert last and last[0].endswith(f"off its Swarm, and its volumes are gone: workhub-{STACK}-wbsaleshub-data on "
                                     f"node2, workhub-{STACK}-wbfinhub-data on node3; it keeps:"), purged.stdout
    assert "data nodes" not in purged.stdout
    assert (volume_nodes(bed, "wbsaleshub"), volume_nodes(bed, "wbfinhub")) == ([], [])


def test_no_secret_was_in_any_process_command_line_or_environment(deployed, bed, process_watch):
    """Through the Swarm's forming (the join of nodes 2 and 3, each with a token), the deploys with
    the hubs' secrets and the registry login, the backups and the restores (their helper image
    pulled with the login on a node that lacks it) and the destroys, no process on this machine
    held a secret value in its command line or environment: the nodes' sshd sessions and the
    scripts in them, their Docker clients, the engine and its providers."""
    tokens = {f"the Swarm's {role} join token": ssh(bed, f"docker swarm join-token --quiet {role}").strip()
              for role in ("manager", "worker")}
    process_watch.secrets.update({**secret_values(deployed.stack), **tokens})
    assert_no_secret_in_any_process(process_watch)
