"""Operating a stack on a Swarm: per-node backup and restore scripts (golden), the order a restore
runs them in, and `status` read from outputs recorded on the Swarm test bed
(tests/fixtures/swarm-status: a healthy stack, and the same stack while node3's dockerd is stopped)."""

import json
import subprocess
from pathlib import Path

import pytest

from components import swarm_data
from components.swarm_status import hub_rows, node_rows, parse_output, short_image, status_script
from tests.test_scripts import golden
from tests.test_swarm import SECRET_VALUES, config_and_runtimes
from workhub import data
from workhub.swarm_status import format_status

RECORDED = Path(__file__).parent / "fixtures" / "swarm-status"


def scripts() -> dict[str, str]:
    config, _ = config_and_runtimes()
    hub = config.hubs[1]
    return {
        "swarm-backup.sh": swarm_data.backup_script(config, "staging", hub, "data"),
        "swarm-restore.sh": swarm_data.restore_script(config, "staging", hub, "data", "0" * 64),
        "swarm-scale.sh": swarm_data.scale_script(config, "staging", hub, 0),
        "swarm-status.sh": status_script(config, "staging"),
    }


@pytest.mark.parametrize("name", sorted(scripts()))
def test_swarm_ops_scripts_golden(name):
    golden(name, scripts()[name])


@pytest.mark.parametrize("name", sorted(scripts()))
def test_swarm_ops_scripts_are_bash_without_secret_values(name):
    text = scripts()[name]
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
    assert not any(value in text for values in SECRET_VALUES.values() for value in values.values())
    assert "registry_password=" not in text, "the registry password is put in front of the script, a secret"


def test_backup_and_restore_run_on_the_hubs_data_node():
    """wbsaleshub's data is on node2 (data: [wbsaleshub]): its volume is read and written there."""
    text = scripts()
    for name in ("swarm-backup.sh", "swarm-restore.sh"):
        assert "\nnode=node2\n" in text[name] and "\nvolume=workhub-staging-wbsaleshub-data\n" in text[name]
    assert "\nservice=workhub-staging_wbsaleshub\n" in text["swarm-scale.sh"]


def test_a_swarm_restore_stops_the_hub_restores_on_its_data_node_then_starts_it_there(tmp_path, monkeypatch):
    """The order: the service scaled to 0 on the first manager, the volume put back on the node the
    config names now, the labels set from the config, the service back at its replicas."""
    config, _ = config_and_runtimes()
    archive = tmp_path / "wbsaleshub-data.tar.gz"
    archive.write_bytes(b"not really a tar")
    (tmp_path / data.MANIFEST).write_text(
        '{"stack": "staging", "archives": [{"hub": "wbsaleshub", "volume": "data", "file": "wbsaleshub-data.tar.gz", '
        f'"sha256": "{data._sha256(archive)}"}}]}}')
    calls = []

    def run(conn, key, text, label, log, data_in=None, **_):
        calls.append((conn.host, label, "registry_password=" in text, data_in.read() if data_in else None))
        return ""

    monkeypatch.setattr(data, "run_script", run)
    assert data.swarm_restore(config, "key", "staging", tmp_path, "wbsaleshub", None, lambda line: None, "pw") == 1
    assert calls == [("10.0.0.11", "wbsaleshub (stop)", False, None),
                     ("10.0.0.12", "wbsaleshub/data", True, b"not really a tar"),
                     ("10.0.0.11", "labels", False, None),
                     ("10.0.0.11", "wbsaleshub (start)", False, None)]
    archive.write_bytes(b"changed")
    with pytest.raises(data.DataError, match="does not match the sha256"):
        data.swarm_restore(config, "key", "staging", tmp_path, "wbsaleshub", None, lambda line: None, "pw")


def test_short_image_cuts_the_digest():
    assert short_image("10.0.0.1:5000/workhub/demo:v1@sha256:" + "ab" * 32) == \
        "10.0.0.1:5000/workhub/demo:v1@sha256:abababababab"
    assert short_image("haproxy:2.6") == "haproxy:2.6"


def test_a_swarm_backup_reads_each_volume_on_its_data_node(tmp_path, monkeypatch):
    config, _ = config_and_runtimes()
    seen = []

    def run(conn, key, text, label, log, data_out=None, **_):
        seen.append((conn.host, label))
        data_out.write(b"archive bytes")
        return ""

    monkeypatch.setattr(data, "run_script", run)
    manifest = data.swarm_backup(config, "key", "staging", tmp_path, None, lambda line: None, "pw")
    written = json.loads(manifest.read_text())
    assert seen == [("10.0.0.12", "wbsaleshub/data")]
    assert [(a["hub"], a["volume"], a["node"], a["docker_volume"], a["bytes"]) for a in written["archives"]] == \
        [("wbsaleshub", "data", "node2", "workhub-staging-wbsaleshub-data", 13)]
    assert written["stack"] == "staging" and written["swarm"] == ["node1", "node2", "node3"]


def recorded_config(tmp_path, data_node: int = 1):
    """The stack of tests/test_e2e_swarm_nodes.py as the recordings were made with it: demo (2
    replicas) and keeper (a volume, on node1), every node serving, node1 building."""
    from tests.test_e2e_swarm import demo_stack
    from tests.test_e2e_swarm_nodes import with_keeper
    from tests.test_swarm_config import KEYS

    (tmp_path / "password").write_text("pw")
    (tmp_path / "key").write_text("-----BEGIN " + "OPENSSH PRIVATE KEY-----...")
    env = {"user": "deploy", "private_key_path": str(tmp_path / "key"),
           "nodes": [{"name": f"node{n}", "address": f"10.213.37.{10 + n}", "host_public_key": KEYS[n - 1]}
                     for n in (1, 2, 3)],
           "registry": {"server": "10.213.37.1:45497", "username": "workhub-ci",
                        "password_file": str(tmp_path / "password")},
           "hub_images": {"proxy": "10.213.37.1:45497/workhub/haproxy:2.6"}}
    return demo_stack(env, with_keeper(data_node, setting="b"))[0]


def recorded(name: str) -> str:
    return (RECORDED / f"{name}.txt").read_text()


def test_status_of_a_healthy_stack_as_recorded(tmp_path):
    config = recorded_config(tmp_path)
    sections = parse_output(recorded("healthy"))
    assert set(sections) == {"nodes", "services", "service-ls", "tasks", "health"}
    hubs = {row.hub: row for row in hub_rows(config, "e2e", sections)}
    assert (hubs["demo"].replicas, hubs["demo"].health, hubs["demo"].update) == ("2/2", "ok", "completed")
    assert hubs["demo"].image.startswith("10.213.37.1:59377/workhub/demo:v2@sha256:")
    assert len(hubs["demo"].image.split("@sha256:")[1]) == 12
    assert (hubs["keeper"].replicas, hubs["keeper"].nodes, hubs["keeper"].health) == ("1/1", "node1", "ok")
    nodes = {row.node: row for row in node_rows(sections)}
    assert [(n.role, n.availability, n.state) for n in nodes.values()] == [
        ("manager (leader)", "active", "ready"), ("manager (reachable)", "active", "ready"),
        ("manager (reachable)", "active", "ready")]
    assert (nodes["node1"].address, nodes["node1"].labels) == ("10.213.37.11", "build,data.keeper,serve")
    golden("swarm-status-healthy.txt", format_status(config, "e2e", recorded("healthy")) + "\n")


def test_status_while_a_node_is_lost_as_recorded(tmp_path):
    config = recorded_config(tmp_path)
    text = recorded("node-lost")
    sections = parse_output(text)
    nodes = {row.node: row for row in node_rows(sections)}
    lost = [row for row in nodes.values() if row.state == "down"]
    assert len(lost) == 1 and lost[0].role == "manager (unreachable)"
    demo = next(row for row in hub_rows(config, "e2e", sections) if row.hub == "demo")
    # Docker counts the lost node's task as running still (service ls: 3/2); status does not.
    assert (demo.replicas, demo.nodes) == ("2/2", f"node2 x2, lost: {lost[0].node}")
    assert demo.health == f"failing ({lost[0].node}: refused)"
    golden("swarm-status-node-lost.txt", format_status(config, "e2e", text) + "\n")


def test_status_of_a_rolled_back_update_says_dockers_reason(tmp_path):
    """The recorded demo service with the UpdateStatus Docker leaves after an automatic rollback."""
    config = recorded_config(tmp_path)
    sections = parse_output(recorded("healthy"))
    demo = next(s for s in sections["services"] if s["Spec"]["Name"] == "workhub-e2e_demo")
    demo["UpdateStatus"] = {"State": "rollback_completed", "StartedAt": "2026-12-01T17:20:01.1Z",
                            "CompletedAt": "2026-12-01T17:20:31.9Z",
                            "Message": "rollback completed"}
    row = next(row for row in hub_rows(config, "e2e", sections) if row.hub == "demo")
    assert (row.update, row.updated) == ("rollback_completed: rollback completed", "2026-12-01T17:20:31")
    del demo["UpdateStatus"]
    row = next(row for row in hub_rows(config, "e2e", sections) if row.hub == "demo")
    assert row.update == "applied (no rollout)" and row.updated == demo["UpdatedAt"][:19]


def test_status_of_a_hub_not_on_the_swarm(tmp_path):
    config = recorded_config(tmp_path)
    sections = parse_output(recorded("healthy"))
    sections["services"] = [s for s in sections["services"] if s["Spec"]["Name"] != "workhub-e2e_keeper"]
    keeper = next(row for row in hub_rows(config, "e2e", sections) if row.hub == "keeper")
    assert (keeper.replicas, keeper.update) == ("-", "not on the Swarm")


def test_status_reads_on_the_first_manager_that_answers(tmp_path, monkeypatch):
    from components.remote import RemoteCommandError
    from workhub import swarm_status

    config = recorded_config(tmp_path)
    asked, said = [], []

    def run(conn, key, text, label, log, **_):
        asked.append(conn.host)
        if conn.host == "10.213.37.11":
            raise RemoteCommandError("status: cannot reach 10.213.37.11:22 (connection refused)")
        return recorded("healthy")

    monkeypatch.setattr(swarm_status, "run_script", run)
    printed = swarm_status.status(config, "e2e", "key", said.append)
    assert asked == ["10.213.37.11", "10.213.37.12"]
    assert said == ["status: manager node1 (10.213.37.11) did not answer: status: cannot reach 10.213.37.11:22 "
                    "(connection refused)"]
    assert printed == format_status(config, "e2e", recorded("healthy"))
    monkeypatch.setattr(swarm_status, "run_script", lambda *a, **k: (_ for _ in ()).throw(RemoteCommandError("x")))
    with pytest.raises(RemoteCommandError, match=r"no manager answered \(node1, node2, node3\)"):
        swarm_status.status(config, "e2e", "key", said.append)
