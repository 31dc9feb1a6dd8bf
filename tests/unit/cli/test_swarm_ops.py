"""Operating a stack on a Swarm: per-node backup, restore and purge scripts (golden; the purge run by
bash against a stand-in `docker`), the order a restore runs them in, a backup of another stack or
of one host restored into it, and `status` read from outputs recorded on the Swarm test bed
(tests/fixtures/swarm-status: a healthy stack, and the same stack while node3's dockerd is stopped)."""

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from components.render.swarm import data as swarm_data
from components.render.swarm.status import hub_rows, node_rows, parse_output, short_image, status_script
from tests.unit.render.test_scripts import golden
from tests.unit.render.test_swarm import SECRET_VALUES, config_and_runtimes
from components.ssh import RemoteCommandError
from workhub import data
from workhub.__main__ import destroyed_message
from workhub.swarm_status import format_status

RECORDED = Path(__file__).resolve().parents[2] / "fixtures" / "swarm-status"
STAMP = "20261207T110000Z"


def scripts() -> dict[str, str]:
    config, _ = config_and_runtimes()
    hub = config.hubs[1]
    return {
        "swarm-backup.sh": swarm_data.backup_script(config, "staging", hub, "data"),
        "swarm-restore.sh": swarm_data.restore_script(config, "staging", hub, "data", "0" * 64, 3, STAMP),
        "swarm-swap.sh": swarm_data.swap_script(config, "staging", hub, "data", STAMP),
        "swarm-unstage.sh": swarm_data.unstage_script(config, "staging", hub, ["data"], STAMP),
        "swarm-scale.sh": swarm_data.scale_script(config, "staging", hub, 0),
        "swarm-purge.sh": swarm_data.purge_script(config, "staging", "node2"),
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
    for name in ("swarm-backup.sh", "swarm-restore.sh", "swarm-swap.sh"):
        assert "\nnode=node2\n" in text[name] and "\nvolume=workhub-staging-wbsaleshub-data\n" in text[name]
    assert "\nservice=workhub-staging_wbsaleshub\n" in text["swarm-scale.sh"]


def test_a_swarm_restore_stages_while_the_hub_runs_then_stops_it_swaps_and_starts_it_there(tmp_path, monkeypatch):
    """The order: the archive staged on the node the config names now (the hub still runs), then
    the service scaled to 0 on the first manager, the volume swapped on that node, the labels set
    from the config, the service back at its replicas."""
    config, _ = config_and_runtimes()
    archive = tmp_path / "wbsaleshub-data.tar.gz"
    archive.write_bytes(b"not really a tar")
    (tmp_path / data.MANIFEST).write_text(
        '{"stack": "staging", "archives": [{"hub": "wbsaleshub", "volume": "data", "file": "wbsaleshub-data.tar.gz", '
        f'"sha256": "{data._sha256(archive)}", "files": 2}}]}}')
    calls = []

    def run(conn, key, text, label, log, data_in=None, **_):
        calls.append((conn.host, label, "registry_password=" in text, data_in.read() if data_in else None))
        return ""

    monkeypatch.setattr(data, "run_script", run)
    assert data.swarm_restore(config, "key", "staging", tmp_path, "wbsaleshub", None, lambda line: None, "pw") == 1
    assert calls == [("10.0.0.12", "wbsaleshub/data", True, b"not really a tar"),
                     ("10.0.0.11", "wbsaleshub (stop)", False, None),
                     ("10.0.0.12", "wbsaleshub/data", True, None),
                     ("10.0.0.11", "labels", False, None),
                     ("10.0.0.11", "wbsaleshub (start)", False, None)]
    archive.write_bytes(b"changed")
    with pytest.raises(data.DataError, match="does not match the sha256"):
        data.swarm_restore(config, "key", "staging", tmp_path, "wbsaleshub", None, lambda line: None, "pw")


def one_host_backup(folder: Path, archives: list[tuple[str, str]]) -> Path:
    """A backup as `scripts/workhub backup` writes it for a one-host stack `home`."""
    entries = []
    for hub, volume in archives:
        archive = folder / f"{hub}-{volume}.tar.gz"
        archive.write_bytes(f"{hub} {volume}".encode())
        entries.append({"hub": hub, "volume": volume, "docker_volume": f"workhub-home-{hub}-{volume}", "stack": "home",
                        "image": f"{hub}:home-0123456789ab", "file": archive.name, "sha256": data._sha256(archive), "files": 1})
    (folder / data.MANIFEST).write_text(json.dumps({"stack": "home", "host": "deploy@10.0.0.5:22", "archives": entries}))
    return folder


def test_a_one_host_stacks_backup_restores_into_a_swarm_stack_saying_where_it_came_from(tmp_path, monkeypatch):
    """The move from one host to a Swarm: another stack's backup, of another shape (no nodes), goes
    onto the hub's data node in this stack; restore says once whose backup it is."""
    config, _ = config_and_runtimes()
    source = one_host_backup(tmp_path, [("wbsaleshub", "data")])
    calls, logs = [], []

    def run(conn, key, text, label, log, data_in=None, **_):
        calls.append((conn.host, label, "\nvolume=workhub-staging-wbsaleshub-data\n" in text if data_in else None))
        return ""

    monkeypatch.setattr(data, "run_script", run)
    assert data.swarm_restore(config, "key", "staging", source, None, None, logs.append, "pw", from_stack="home") == 1
    assert logs == [f"restore: {source / data.MANIFEST} is a backup of stack 'home' (made on the host "
                    "deploy@10.0.0.5:22); restoring it into 'staging'"]
    assert calls == [("10.0.0.12", "wbsaleshub/data", True), ("10.0.0.11", "wbsaleshub (stop)", None),
                     ("10.0.0.12", "wbsaleshub/data", None), ("10.0.0.11", "labels", None),
                     ("10.0.0.11", "wbsaleshub (start)", None)]


@pytest.mark.parametrize("archives, hub, volume, error", [
    ([("wbsaleshub", "data"), ("wbfinhub", "data")], None, None,
     "stack 'staging' has no hub wbfinhub (workhub:hubs in Pulumi.yaml), which {manifest} holds data of; restore the "
     "others with --hub <hub>"),
    ([("wbsaleshub", "uploads")], None, None,
     "hub wbsaleshub of stack 'staging' has no volume 'uploads' (workhub:hubs[].volumes in Pulumi.yaml; it has data); "
     "restore the others with --volume <name>"),
    ([("wbsaleshub", "data")], None, "uploads",
     "{manifest} holds no archive for hub any and volume uploads (it holds wbsaleshub/data)"),
])
def test_a_restore_stops_before_anything_changed_when_the_target_lacks_the_hub_or_volume(
        tmp_path, monkeypatch, archives, hub, volume, error):
    config, _ = config_and_runtimes()
    source = one_host_backup(tmp_path, archives)
    monkeypatch.setattr(data, "run_script", lambda *_, **__: pytest.fail("nothing may run"))
    with pytest.raises(data.DataError) as failed:
        data.swarm_restore(config, "key", "staging", source, hub, volume, lambda line: None, "pw", from_stack="home")
    assert str(failed.value) == error.format(manifest=source / data.MANIFEST)
    # With --hub, the hub the target has restores alone.
    if hub is None and len(archives) > 1:
        monkeypatch.setattr(data, "run_script", lambda *_, **__: "")
        assert data.swarm_restore(config, "key", "staging", source, "wbsaleshub", None, lambda line: None, "pw",
                                  from_stack="home") == 1


def test_short_image_cuts_the_digest():
    assert short_image("10.0.0.1:5000/workhub/demo:v1@sha256:" + "ab" * 32) == \
        "10.0.0.1:5000/workhub/demo:v1@sha256:abababababab"
    assert short_image("haproxy:2.6") == "haproxy:2.6"


def one_file_tar() -> bytes:
    """A gzipped tar as a backup reads it: `./` and one file."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        archive.addfile(_dir("."))
        info = tarfile.TarInfo("./leads.json")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"[]"))
    return out.getvalue()


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


ONE_FILE_TAR = one_file_tar()


def test_a_swarm_backup_reads_each_volume_on_its_data_node(tmp_path, monkeypatch):
    config, _ = config_and_runtimes()
    seen = []

    def run(conn, key, text, label, log, data_out=None, **_):
        seen.append((conn.host, label))
        data_out.write(ONE_FILE_TAR)
        return ""

    monkeypatch.setattr(data, "run_script", run)
    manifest = data.swarm_backup(config, "key", "staging", tmp_path, None, lambda line: None, "pw")
    written = json.loads(manifest.read_text())
    assert seen == [("10.0.0.12", "wbsaleshub/data")]
    assert [(a["hub"], a["volume"], a["node"], a["docker_volume"], a["bytes"]) for a in written["archives"]] == \
        [("wbsaleshub", "data", "node2", "workhub-staging-wbsaleshub-data", len(ONE_FILE_TAR))]
    assert [a["files"] for a in written["archives"]] == [1]
    assert written["stack"] == "staging" and written["swarm"] == ["node1", "node2", "node3"]


def recorded_config(tmp_path, data_node: int = 1):
    """The stack of tests/e2e/test_e2e_swarm_nodes.py as the recordings were made with it: demo (2
    replicas) and keeper (a volume, on node1), every node serving, node1 building."""
    from tests.e2e.test_e2e_swarm import demo_stack
    from tests.e2e.test_e2e_swarm_nodes import with_keeper
    from tests.unit.config.test_swarm_config import KEYS

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
    from components.ssh import RemoteCommandError
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


# A stand-in for the Docker CLI on one node: a volume is a file in $FAKE/volumes (its content: its
# namespace label); $FAKE/users/<volume> holds the names of the containers using it, one line each,
# and each `docker ps` lets one of them go (a stopping task) unless $FAKE/stuck is there.
FAKE_DOCKER = r"""#!/usr/bin/env bash
printf '%s\n' "$*" >>"$FAKE/calls"
volume_of() { for arg; do case "$arg" in volume=*) echo "${arg#volume=}" ;; esac; done; }
case "$1 $2" in
  "volume ls") label=${5#label=com.docker.stack.namespace=}
    for f in "$FAKE"/volumes/*; do [ -e "$f" ] && [ "$(cat "$f")" = "$label" ] && basename "$f"; done; true ;;
  "volume inspect") [ -e "$FAKE/volumes/$3" ] ;;
  "volume rm") [ -s "$FAKE/users/$3" ] && { echo "Error: volume is in use" >&2; exit 1; }
    rm "$FAKE/volumes/$3" ;;
  "ps --all") users="$FAKE/users/$(volume_of "$@")"
    [ -s "$users" ] || exit 0
    case "$*" in *--format*) cat "$users" ;; *) echo 0123456789ab ;; esac
    [ -e "$FAKE/stuck" ] || sed -i 1d "$users" ;;
  *) echo "unexpected: docker $*" >&2; exit 2 ;;
esac
"""


@pytest.fixture
def node(tmp_path):
    fake = tmp_path / "fake"
    for folder in ("bin", "volumes", "users"):
        (fake / folder).mkdir(parents=True)
    for name, text in {"docker": FAKE_DOCKER, "sleep": "#!/bin/sh\n"}.items():
        (fake / "bin" / name).write_text(text)
        (fake / "bin" / name).chmod(0o755)
    return fake


def purge_on(node: Path, volumes: dict[str, str], users: dict[str, list[str]] = {}) -> subprocess.CompletedProcess:
    config, _ = config_and_runtimes()
    for name, namespace in volumes.items():
        (node / "volumes" / name).write_text(namespace)
    for name, containers in users.items():
        (node / "users" / name).write_text("".join(f"{c}\n" for c in containers))
    return subprocess.run(["bash", "-s"], input=swarm_data.purge_script(config, "staging", "node2"),
                          env={"PATH": f"{node / 'bin'}:/usr/bin:/bin", "FAKE": str(node), "HOME": str(node)},
                          capture_output=True, text=True)


def test_purge_removes_the_stacks_volumes_on_the_node_once_its_stopping_tasks_are_gone(node):
    """The hub's volume (its task's container still stopping), and one Docker labelled with the stack
    that the config no longer names; another stack's volume stays."""
    done = purge_on(node, {"workhub-staging-wbsaleshub-data": "workhub-staging", "workhub-staging-old-data":
                           "workhub-staging", "workhub-production-wbsaleshub-data": "workhub-production"},
                    {"workhub-staging-wbsaleshub-data": ["workhub-staging_wbsaleshub.1.x", "workhub-staging_wbsaleshub.1.y"]})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["removed workhub-staging-old-data", "removed workhub-staging-wbsaleshub-data"]
    assert sorted(path.name for path in (node / "volumes").iterdir()) == ["workhub-production-wbsaleshub-data"]
    calls = (node / "calls").read_text().splitlines()
    assert calls.count("ps --all --quiet --filter volume=workhub-staging-wbsaleshub-data") == 3, "it waited for both"


def test_purge_fails_naming_the_container_that_still_uses_a_volume_after_removing_the_others(node):
    (node / "stuck").touch()
    done = purge_on(node, {"workhub-staging-wbsaleshub-data": "workhub-staging", "workhub-staging-old-data":
                           "workhub-staging"}, {"workhub-staging-wbsaleshub-data": ["someones-debug-shell"]})
    assert done.returncode == 1
    assert done.stdout.splitlines() == ["removed workhub-staging-old-data"]
    assert done.stderr.splitlines()[-1] == ("purge: FAILED: workhub-staging-wbsaleshub-data on node2 is still used by "
                                            "someones-debug-shell; destroy the stack first")


def test_purge_of_a_node_without_the_stacks_volumes_says_so(node):
    done = purge_on(node, {"workhub-production-wbsaleshub-data": "workhub-production"})
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    assert done.stderr == "purge: no volume of stack staging on node2\n"


def test_a_swarm_purge_runs_on_every_node_and_says_what_it_removed_where(monkeypatch):
    """Every node: the data node, and any a restore elsewhere left a copy on; a node that does not
    answer fails the purge after the others, naming it and how to finish."""
    config, _ = config_and_runtimes()
    seen = []

    def run(conn, key, text, label, log, **_):
        seen.append((conn.host, label))
        if conn.host == "10.0.0.13":
            raise RemoteCommandError("purge on node3: could not connect to deploy@10.0.0.13:22")
        return "removed workhub-staging-wbsaleshub-data\n" if conn.host == "10.0.0.12" else ""

    monkeypatch.setattr(data, "run_script", run)
    with pytest.raises(data.DataError) as failed:
        data.swarm_purge(config, "key", "staging", lambda line: None)
    assert seen == [("10.0.0.11", "purge on node1"), ("10.0.0.12", "purge on node2"), ("10.0.0.13", "purge on node3")]
    assert str(failed.value) == ("the volumes on node3: purge on node3: could not connect to deploy@10.0.0.13:22 were "
                                 "not removed; once that is fixed, `scripts/workhub destroy --stack staging "
                                 "--purge-data` removes them")
    # The publish relays' socket volume on each serving node goes too, unnamed: it holds no data.
    monkeypatch.setattr(data, "run_script", lambda conn, *_, **__: "removed workhub-staging-proxy-sockets\n" + (
        "removed workhub-staging-wbsaleshub-data\n" if conn.host == "10.0.0.12" else ""))
    assert data.swarm_purge(config, "key", "staging", lambda line: None) == \
        {"node1": [], "node2": ["workhub-staging-wbsaleshub-data"], "node3": []}


def test_destroy_of_a_swarm_stack_says_what_left_its_swarm_and_what_stays_on_its_nodes():
    config, _ = config_and_runtimes()
    kept = destroyed_message("staging", False, config).splitlines()
    assert kept[0] == ("workhub: stack 'staging' destroyed: its hubs' and its proxy's services, its network, configs "
                       "and secrets are off its Swarm; it keeps:")
    assert kept[1] == ("  - the hubs' volumes (their data) on their data nodes: wbsaleshub on node2 "
                       "(`scripts/workhub destroy --stack staging --purge-data` removes them)")
    assert "the Swarm: node1, node2, node3 stay in it, with their labels" in kept[2]
    assert "from the host" not in "\n".join(kept), "nothing of it is one host's"
    purged = destroyed_message("staging", True, config, {"node1": [], "node2": ["workhub-staging-wbsaleshub-data"]})
    assert purged.splitlines()[0].endswith("are off its Swarm, and its volumes are gone: "
                                           "workhub-staging-wbsaleshub-data on node2; it keeps:")
    assert "data nodes" not in purged and "--purge-data" not in purged
    assert "no volume of it was on its nodes" in destroyed_message("staging", True, config, {"node1": []})


def restore_failing_at(tmp_path, monkeypatch, failing: str) -> tuple[list[str], str]:
    """A Swarm restore of wbsaleshub whose step labelled `failing` fails: the steps run, in order,
    and the last line of the failure."""
    config, _ = config_and_runtimes()
    archive = tmp_path / "wbsaleshub-data.tar.gz"
    archive.write_bytes(b"an archive")
    (tmp_path / data.MANIFEST).write_text(json.dumps({"stack": "staging", "archives": [
        {"hub": "wbsaleshub", "volume": "data", "file": archive.name, "sha256": data._sha256(archive), "files": 1}]}))
    steps = []

    def run(conn, key, text, label, log, data_in=None, **_):
        step = f"{label}{' (stage)' if data_in else ''}"
        steps.append(step)
        if step == failing:
            raise RemoteCommandError(f"step: {label}\nreason: it broke; what it left")
        return ""

    monkeypatch.setattr(data, "run_script", run)
    with pytest.raises(data.DataError) as failed:
        data.swarm_restore(config, "key", "staging", tmp_path, "wbsaleshub", None, lambda line: None, "pw")
    return steps, str(failed.value).splitlines()[-1]


def test_a_swarm_restore_whose_staging_fails_never_stops_the_hub(tmp_path, monkeypatch):
    steps, last = restore_failing_at(tmp_path, monkeypatch, "wbsaleshub/data (stage)")
    assert steps == ["wbsaleshub/data (stage)"]
    assert last == "the restore of wbsaleshub/data failed before the hub was stopped: it broke; what it left"


def test_a_swarm_restore_whose_swap_fails_brings_the_service_back_and_says_so_last(tmp_path, monkeypatch):
    steps, last = restore_failing_at(tmp_path, monkeypatch, "wbsaleshub/data")
    assert steps == ["wbsaleshub/data (stage)", "wbsaleshub (stop)", "wbsaleshub/data", "wbsaleshub (unstage)",
                     "labels", "wbsaleshub (start)"]
    assert last == ("the restore of wbsaleshub failed: it broke; what it left; restored before that: nothing; "
                    "workhub-staging_wbsaleshub is back at its 1 task(s) on node2")


def test_a_swarm_restore_whose_stop_fails_starts_the_service_again(tmp_path, monkeypatch):
    steps, last = restore_failing_at(tmp_path, monkeypatch, "wbsaleshub (stop)")
    assert steps == ["wbsaleshub/data (stage)", "wbsaleshub (stop)", "wbsaleshub (unstage)", "labels",
                     "wbsaleshub (start)"]
    assert last.startswith("the restore of wbsaleshub failed: it broke; what it left; restored before that: nothing")


def test_a_swarm_restore_whose_service_does_not_come_back_says_the_data_was_restored(tmp_path, monkeypatch):
    steps, last = restore_failing_at(tmp_path, monkeypatch, "wbsaleshub (start)")
    assert steps[-1] == "wbsaleshub (start)"
    assert last == ("the data of wbsaleshub was restored, but workhub-staging_wbsaleshub did not come back at its "
                    "1 task(s): it broke; what it left")


# A stand-in Docker CLI for the pre-restore copies: `volume ls` lists $FAKE/volumes/* whose name holds
# `.pre-restore-` (each labelled with the stack in its name), `volume rm` removes one, unless it is
# named in $FAKE/in-use.
PRUNE_DOCKER = r"""#!/usr/bin/env bash
printf '%s\n' "$*" >>"$FAKE/calls"
case "$1 $2" in
  "volume ls") for v in "$FAKE"/volumes/*; do
                 name=${v##*/}
                 case "$*" in *"workhub.stack=staging"*) [[ $name == workhub-staging-* ]] || continue ;; esac
                 [[ $name == *.pre-restore-* ]] && printf '%s\n' "$name"
               done; exit 0 ;;
  "volume rm") grep -qx "$3" "$FAKE/in-use" 2>/dev/null && exit 1; rm -rf "${FAKE:?}/volumes/$3"; exit 0 ;;
esac
echo "unexpected: docker $*" >&2
exit 2
"""


def test_prune_keeps_the_newest_pre_restore_copy_of_each_volume_and_removes_the_older(tmp_path):
    """Of each volume's copies the newest stays (the way back from its last restore); another stack's
    and the live volumes are not touched; one still in use is said and left for the next prune."""
    from components.render.host.deploy import prune_copies_script
    fake = tmp_path
    (fake / "bin").mkdir()
    (fake / "bin" / "docker").write_text(PRUNE_DOCKER)
    (fake / "bin" / "docker").chmod(0o755)
    names = ["workhub-staging-wbsaleshub-data", "workhub-staging-wbsaleshub-data.pre-restore-20261201T100000Z",
             "workhub-staging-wbsaleshub-data.pre-restore-20261203T100000Z",
             "workhub-staging-wbsaleshub-data.pre-restore-20261202T100000Z",
             "workhub-staging-wbfinhub-data.pre-restore-20261130T100000Z",
             "workhub-staging-wbfinhub-data.pre-restore-20261129T100000Z",
             "workhub-production-wbsaleshub-data.pre-restore-20261101T100000Z"]
    for name in names:
        (fake / "volumes" / name).mkdir(parents=True)
    (fake / "in-use").write_text("workhub-staging-wbfinhub-data.pre-restore-20261129T100000Z\n")
    done = subprocess.run(["bash", "-c", prune_copies_script("staging")], capture_output=True, text=True,
                          env={"PATH": f"{fake / 'bin'}:/usr/bin:/bin", "FAKE": str(fake)})
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (fake / "volumes").iterdir()) == sorted(
        set(names) - {"workhub-staging-wbsaleshub-data.pre-restore-20261201T100000Z",
                      "workhub-staging-wbsaleshub-data.pre-restore-20261202T100000Z"})
    assert done.stderr.splitlines() == [
        "prune: kept workhub-staging-wbsaleshub-data.pre-restore-20261203T100000Z, the content "
        "workhub-staging-wbsaleshub-data had before its last restore",
        "prune: removed workhub-staging-wbsaleshub-data.pre-restore-20261202T100000Z, the content "
        "workhub-staging-wbsaleshub-data had before an earlier restore",
        "prune: removed workhub-staging-wbsaleshub-data.pre-restore-20261201T100000Z, the content "
        "workhub-staging-wbsaleshub-data had before an earlier restore",
        "prune: kept workhub-staging-wbfinhub-data.pre-restore-20261130T100000Z, the content "
        "workhub-staging-wbfinhub-data had before its last restore",
        "prune: could not remove workhub-staging-wbfinhub-data.pre-restore-20261129T100000Z (in use?); the next "
        "prune tries again"]


def test_a_swarm_prune_prunes_the_pre_restore_copies_on_every_node(monkeypatch):
    """A Swarm restore keeps its copy on the hub's data node: `prune` runs there, and on every other
    node (a hub that moved left its older copies behind); a node that does not answer fails it last."""
    config, _ = config_and_runtimes()
    seen = []

    def run(conn, key, text, label, log, **_):
        seen.append((conn.host, label, "prune_copies\n" in text))
        if conn.host == "10.0.0.13":
            raise RemoteCommandError("prune on node3: could not connect to deploy@10.0.0.13:22")
        return ""

    monkeypatch.setattr(data, "run_script", run)
    with pytest.raises(data.DataError) as failed:
        data.swarm_prune_copies(config, "key", "staging", lambda line: None)
    assert seen == [("10.0.0.11", "prune on node1", True), ("10.0.0.12", "prune on node2", True),
                    ("10.0.0.13", "prune on node3", True)]
    assert str(failed.value).endswith("were not pruned; once that is fixed, `scripts/workhub prune --stack staging` "
                                      "prunes them")
