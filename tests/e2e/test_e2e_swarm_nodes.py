"""A stack on the Swarm test bed when data and nodes matter, end to end with the real engine: a hub
with a volume pinned to its node keeps its data over a redeploy, is backed up there and restored
there and onto another node; `status` reads every hub's service and every node; and when one node's
dockerd stops, its tasks come back on the others while the probers through the surviving nodes'
proxies see failures only until they moved (the time it took is printed and recorded).

The tests run in this order on one test bed (module fixtures from tests/e2e/test_e2e_swarm.py).
Run under the shared lock: flock /tmp/workhub-e2e.lock scripts/test tests/e2e/test_e2e_swarm_nodes.py
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.e2e.test_e2e_swarm import (DEMO_HOST_PORT, REPO, _answers, bed, build_demo, demo_stack,  # noqa: F401
                                  deploy, get, ssh, swarm, wait_for)
from tests.swarm_bed import run_testbed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEEPER_PORT, KEEPER_HOST_PORT = 4101, 24101
STACK = "e2e"
SERVICE = "workhub-e2e_demo"
KEEPER = "workhub-e2e_keeper"
# Where the node-loss figures go (docs/swarm.md cites them), and where the status
# outputs are recorded when WORKHUB_RECORD_SWARM_STATUS names a directory (tests/fixtures/swarm-status).
MEASURED = Path(os.environ.get("WORKHUB_STATE_DIR", REPO / ".workhub")) / "measurements" / "swarm-node-loss.json"


def with_keeper(node: int, setting: str = "a"):
    """The demo stack plus `keeper`: a hub of the demo image with a volume, pinned by the data label to
    node `node`; every node serves."""
    def change(raw: dict) -> None:
        raw["hubs"].append({"name": "keeper", "context": "demo", "port": KEEPER_PORT, "volumes": {"data": "/data"},
                            "env": {"DATA_DIR": "/data", "SETTING": setting}})
        raw["hostPorts"]["keeper"] = KEEPER_HOST_PORT
        for index, entry in enumerate(raw["swarm"]["nodes"], start=1):
            entry["labels"]["serve"] = True
            if index == node:
                entry["labels"]["data"] = ["keeper"]
    return change


def running_on(env: dict, service: str) -> list[str]:
    """The nodes of the service's tasks that run (one entry per task)."""
    out = ssh(env, 1, f"docker service ps {service} --filter desired-state=running "
                      "--format '{{.Node}} {{.CurrentState}}'")
    return sorted(line.split()[0] for line in out.splitlines() if " Running" in line)


def volume_nodes(env: dict, volume: str) -> list[str]:
    return [f"node{n}" for n in (1, 2, 3)
            if ssh(env, n, f"docker volume ls --quiet --filter name=^{volume}$").strip() == volume]


def keeper_url(env: dict, node: int) -> str:
    return f"http://{env['nodes'][node - 1]['address']}:{KEEPER_HOST_PORT}"


@pytest.fixture(scope="module")
def images(swarm):
    return {"v1": build_demo(swarm, "v1"), "v2": build_demo(swarm, "v2")}


@pytest.fixture(scope="module")
def keeper_deployed(swarm, images):
    env = swarm
    done = deploy(env, images["v1"], with_keeper(2))
    assert done.returncode == 0, done.stderr[-3000:]
    for node in (1, 2, 3):
        wait_for(f"keeper through node{node}", lambda: _answers(keeper_url(env, node)), timeout=60)
    return env


def test_a_pinned_hubs_data_survives_a_redeploy_on_its_node(keeper_deployed, images):
    env = keeper_deployed
    assert running_on(env, KEEPER) == ["node2"], "the hub with a volume runs on the node labelled data: [keeper]"
    assert get(keeper_url(env, 1) + "/data?put=kept%20one") == "kept one"
    redeployed = deploy(env, images["v1"], with_keeper(2, setting="b"))
    assert redeployed.returncode == 0, redeployed.stderr[-3000:]
    assert f"{KEEPER}: rolled out" in redeployed.stderr, "the changed setting is a rollout of the keeper"
    spec = ssh(env, 1, f"docker service inspect --format '{{{{json .Spec.TaskTemplate.ContainerSpec.Env}}}}' {KEEPER}")
    assert "SETTING=b" in json.loads(spec)
    assert running_on(env, KEEPER) == ["node2"]
    for node in (1, 2, 3):
        assert get(keeper_url(env, node) + "/data") == "kept one"
    assert volume_nodes(env, "workhub-e2e-keeper-data") == ["node2"], "the volume is on its node only"


def test_backup_on_its_node_then_restore_there_and_onto_another_node(keeper_deployed, images, tmp_path):
    from workhub import data

    env = keeper_deployed
    config, _, password = demo_stack(env, with_keeper(2, setting="b"))
    key = Path(env["private_key_path"]).read_text()
    get(keeper_url(env, 1) + "/data?put=backed%20up")
    logs: list[str] = []
    manifest = data.swarm_backup(config, key, STACK, tmp_path / "backup", "keeper", logs.append, password)
    written = json.loads(manifest.read_text())
    assert [(a["hub"], a["volume"], a["node"]) for a in written["archives"]] == [("keeper", "data", "node2")]

    get(keeper_url(env, 1) + "/data?put=changed%20since")
    assert data.swarm_restore(config, key, STACK, manifest, "keeper", None, logs.append, password) == 1
    assert running_on(env, KEEPER) == ["node2"]
    wait_for("keeper answers after the restore", lambda: _answers(keeper_url(env, 1)), timeout=60)
    assert get(keeper_url(env, 1) + "/data") == "backed up"

    # Its node lost (here: given up): the data label on another node, and the restore brings the hub
    # back there from the backup.
    elsewhere, _, _ = demo_stack(env, with_keeper(1, setting="b"))
    assert data.swarm_restore(elsewhere, key, STACK, manifest, "keeper", None, logs.append, password) == 1
    assert running_on(env, KEEPER) == ["node1"], "\n".join(logs)
    for node in (1, 2, 3):
        # Each proxy finds the new task by DNS and sends it requests once it passed its checks.
        wait_for(f"keeper on node1 through node{node}'s proxy", lambda: _answers(keeper_url(env, node)), timeout=60)
        assert get(keeper_url(env, node) + "/data") == "backed up"
    assert "node1" in volume_nodes(env, "workhub-e2e-keeper-data")
    # And a deploy of that config keeps it there, with its data.
    again = deploy(env, images["v1"], with_keeper(1, setting="b"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert running_on(env, KEEPER) == ["node1"] and get(keeper_url(env, 2) + "/data") == "backed up"


def status_output(env: dict, config, record: str) -> str:
    from components.render.swarm.status import status_script

    out = ssh(env, 1, "bash -s", status_script(config, STACK))
    target = os.environ.get("WORKHUB_RECORD_SWARM_STATUS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        (Path(target) / f"{record}.txt").write_text(out)
    return out


def test_status_shows_every_hubs_service_and_every_node(keeper_deployed, images):
    from components.render.swarm.status import hub_rows, node_rows, parse_output
    from workhub.swarm_status import format_status

    env = keeper_deployed
    config, _, _ = demo_stack(env, with_keeper(1, setting="b"))
    # The demo rolls out to v2; the keeper is deployed unchanged (its last change, the restore's scale,
    # ran no rollout).
    rolled = deploy(env, images["v2"], with_keeper(1, setting="b"))
    assert rolled.returncode == 0, rolled.stderr[-3000:]
    out = status_output(env, config, "healthy")
    sections = parse_output(out)
    hubs = {row.hub: row for row in hub_rows(config, STACK, sections)}
    assert (hubs["demo"].replicas, hubs["demo"].health) == ("2/2", "ok")
    assert hubs["demo"].nodes in ("node2, node3", "node2 x2", "node3 x2"), "off the build node"
    assert (hubs["keeper"].replicas, hubs["keeper"].nodes, hubs["keeper"].health) == ("1/1", "node1", "ok")
    assert hubs["demo"].image.startswith(f"{env['registry']['server']}/workhub/demo:v2@sha256:")
    assert hubs["demo"].update == "completed" and hubs["demo"].updated.startswith("20")
    nodes = {row.node: row for row in node_rows(sections)}
    assert nodes["node1"].role == "manager (leader)"
    assert {nodes[n].role for n in ("node2", "node3")} == {"manager (reachable)"}
    assert all(row.availability == "active" and row.state == "ready" for row in nodes.values())
    assert nodes["node1"].labels == "build,data.keeper,serve"
    assert nodes["node3"].labels == "serve"
    assert nodes["node2"].address == env["nodes"][1]["address"]
    printed = format_status(config, STACK, out)
    assert printed.splitlines()[0].split() == ["HUB", "REPLICAS", "NODES", "IMAGE", "HEALTH", "UPDATED", "UPDATE"]
    print(printed)


def answers_200(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def test_a_lost_nodes_tasks_come_back_on_the_others(keeper_deployed, bed):
    """The dockerd of a node running a demo task stops (node3, or node2 when the rollout put both
    tasks there; never node1, the leader and the build node): its task comes back on the other
    eligible node; the probers through the two surviving nodes' proxies see failures only until then,
    none after. The Swarm (3 managers) keeps its quorum, and `status` shows the lost node."""
    from components.render.swarm.status import hub_rows, node_rows, parse_output
    from tools.prober import Prober

    env = keeper_deployed
    _, state = bed
    config, _, _ = demo_stack(env, with_keeper(1, setting="b"))
    placed = running_on(env, SERVICE)
    assert len(placed) == 2 and set(placed) <= {"node2", "node3"}, placed
    lost = "node3" if "node3" in placed else "node2"
    other = ({"node2", "node3"} - {lost}).pop()
    surviving = [f"http://{node['address']}:{DEMO_HOST_PORT}" for node in env["nodes"] if node["name"] != lost]
    probers = [Prober(url, rate=20, timeout=10, path="/").start() for url in surviving]
    try:
        time.sleep(3)
        stopped_at = time.monotonic()
        stop = run_testbed(state, "stop-node", lost)
        assert stop.returncode == 0, stop.stderr
        stop_took = time.monotonic() - stopped_at
        wait_for(f"the demo's two tasks running on {other}",
                 lambda: running_on(env, SERVICE) == [other, other], timeout=180, pause=0.5)
        # Moved = served again: running by Swarm's count, then health-checked by every surviving proxy
        # (its next DNS resolution and check; when the rollout had put both tasks on the lost node,
        # nothing served the hub until here).
        wait_for("every surviving proxy answering", lambda: all(answers_200(url) for url in surviving),
                 timeout=30, pause=0.1)
        moved_at = time.monotonic()
        time.sleep(15)
        status = status_output(env, config, "node-lost")
    finally:
        for prober in probers:
            prober.stop()
        started = run_testbed(state, "start-node", lost)
    moved = moved_at - stopped_at
    reports = [(prober, prober.report()) for prober in probers]
    failed_after = [(prober.url, sample.outcome, round(prober._t0 + sample.started - moved_at, 2))
                    for prober, report in reports for sample in report.samples
                    if (sample.error is not None or sample.status != 200)
                    and prober._t0 + sample.started >= moved_at]
    failures = sum(report.failed for _, report in reports)
    figures = {"moved_seconds": round(moved, 1), "dockerd_stop_seconds": round(stop_took, 1),
               "failed_before_moved": failures - len(failed_after), "failed_after_moved": len(failed_after),
               "requests": sum(report.total for _, report in reports), "lost": lost,
               "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    MEASURED.parent.mkdir(parents=True, exist_ok=True)
    MEASURED.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"node loss: the tasks moved (served again) {moved:.1f} s after {lost}'s dockerd was told to stop "
          f"(stopping took {stop_took:.1f} s); {figures}; written to {MEASURED}")
    assert failed_after == [], "\n".join(report.summary() for _, report in reports)
    for _, report in reports:
        assert report.ok > 20 * 10, report.summary()

    # While the node is lost, status says so, and the other two managers kept the Swarm.
    sections = parse_output(status)
    nodes = {row.node: row for row in node_rows(sections)}
    assert nodes[lost].state == "down" and nodes[lost].role == "manager (unreachable)"
    demo = next(row for row in hub_rows(config, STACK, sections) if row.hub == "demo")
    # Docker still counts the lost node's task as running (`docker service ls`: 3/2); status does not.
    assert (demo.replicas, demo.nodes) == ("2/2", f"{other} x2, lost: {lost}")
    address = env["nodes"][int(lost[-1]) - 1]["address"]
    assert demo.health == f"failing ({lost}: refused)", f"{lost}'s proxy ({address}) is gone with its engine"

    assert started.returncode == 0, started.stderr
    wait_for(f"{lost} back in the Swarm", lambda: f"{lost} Ready Reachable" in ssh(
        env, 1, "docker node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}}'"), timeout=120)
