"""A one-host restore's logic before anything reaches the host: whose backup may restore where
(`--from-stack`, `--from-hub`), the file count each archive must arrive with, and the order the
rendered script keeps (everything that can fail before the hub stops; the trap before the first
change). The script's behaviour on a real host: tests/e2e/test_e2e_restore.py."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.config.models import DeploySettings, Hub
from components.render.host.deploy import Serving, restore_script
from components.ssh import RemoteCommandError, failure_message
from tests.unit.render.test_scripts import HUB, SERVING, STACK
from workhub import __main__ as cli
from workhub import data

NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,14}", fullmatch=True)


def tar_gz(entries: list[tuple[str, bool]]) -> bytes:
    """A gzipped tar of these (path, is a directory) entries; files hold their own path."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for path, is_dir in entries:
            info = tarfile.TarInfo(path)
            if is_dir:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(path.encode())
                tar.addfile(info, io.BytesIO(path.encode()))
    return out.getvalue()


def write_backup(folder: Path, stack: str, hubs: list[str], files: bool = True) -> Path:
    """A one-host backup of `stack` with a `data` archive of each hub (three files and a directory)."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for hub in hubs:
        archive = folder / f"{hub}-data.tar.gz"
        archive.write_bytes(tar_gz([(".", True), ("./a", False), ("./sub", True), ("./sub/b", False), ("./c", False)]))
        entry = {"hub": hub, "volume": "data", "stack": stack, "file": archive.name,
                 "sha256": hashlib.sha256(archive.read_bytes()).hexdigest()}
        if files:
            entry["files"] = data.archive_files(archive)
        entries.append(entry)
    (folder / data.MANIFEST).write_text(json.dumps({"stack": stack, "host": "deploy@10.0.0.5:22", "archives": entries}))
    return folder


@settings(max_examples=60, deadline=None)
@given(made_of=NAMES, target=NAMES)
def test_another_stacks_backup_is_refused_unless_from_stack_names_it(tmp_path_factory, made_of, target):
    """A backup restores into its own stack; into another only with --from-stack <its stack>, and
    the refusal names both stacks and the flag."""
    source = write_backup(tmp_path_factory.mktemp("backup"), made_of, ["wbsaleshub"])
    logs: list[str] = []
    if made_of == target:
        assert data._read_manifest(source, target, logs.append)[1]["stack"] == made_of and logs == []
        return
    with pytest.raises(data.DataError) as refused:
        data._read_manifest(source, target, logs.append)
    assert str(refused.value) == (f"{source / data.MANIFEST} is a backup of stack {made_of!r}, not of {target!r}; "
                                  f"nothing was changed. To restore it into {target!r} anyway, add --from-stack "
                                  f"{made_of}")
    with pytest.raises(data.DataError, match=re.escape(f"not of {made_of + 'x'!r} (--from-stack)")):
        data._read_manifest(source, target, logs.append, from_stack=made_of + "x")
    assert data._read_manifest(source, target, logs.append, from_stack=made_of)[1]["stack"] == made_of
    assert logs == [f"restore: {source / data.MANIFEST} is a backup of stack {made_of!r} (made on the host "
                    f"deploy@10.0.0.5:22); restoring it into {target!r}"]


def hubs_named(*names: str) -> dict[str, Hub]:
    return {name: Hub(name=name, context="X", port=4000, healthPath="/health", volumes={"data": "/app/data"})
            for name in names}


@settings(max_examples=60, deadline=None)
@given(made_of=NAMES, target=NAMES)
def test_an_archive_restores_into_its_own_hub_or_with_from_hub_into_the_hub_named(tmp_path_factory, made_of, target):
    source = write_backup(tmp_path_factory.mktemp("backup"), "s", [made_of])
    path, manifest = data._read_manifest(source, "s", lambda line: None)
    hubs = hubs_named(target)
    if made_of == target:
        assert [e["hub"] for e in data._chosen(path, manifest, hubs, None, None, "s")] == [target]
    else:
        with pytest.raises(data.DataError, match=f"has no hub {made_of} "):
            data._chosen(path, manifest, hubs, None, None, "s")
        with pytest.raises(data.DataError, match=re.escape(f"add --from-hub <that hub>")):
            data._chosen(path, manifest, hubs, target, None, "s")
    (entry,) = data._chosen(path, manifest, hubs, target, None, "s", from_hub=made_of)
    assert (entry["hub"], entry["made_of_hub"], entry["file"]) == (target, made_of, f"{made_of}-data.tar.gz")
    with pytest.raises(data.DataError, match=re.escape(f"--from-hub {made_of} needs --hub")):
        data._chosen(path, manifest, hubs, None, None, "s", from_hub=made_of)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.from_regex(r"\./[a-z]{1,8}(/[a-z]{1,8}){0,2}", fullmatch=True), st.booleans()),
                max_size=30, unique_by=lambda entry: entry[0]))
def test_an_archives_file_count_is_its_entries_but_directories(tmp_path_factory, entries):
    archive = tmp_path_factory.mktemp("count") / "a.tar.gz"
    archive.write_bytes(tar_gz([(".", True), *entries]))
    assert data.archive_files(archive) == sum(1 for _, is_dir in entries if not is_dir)


def test_a_damaged_archive_cannot_be_counted(tmp_path):
    archive = tmp_path / "a.tar.gz"
    whole = tar_gz([(".", True), ("./a", False)])
    archive.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(data.DataError, match="is not a whole gzipped tar"):
        data.archive_files(archive)


@pytest.mark.parametrize("recorded", [True, False])
def test_the_script_gets_the_archives_file_count_from_the_manifest_or_counted_here(tmp_path, monkeypatch, recorded):
    """A manifest from before it recorded each archive's files is counted here, before anything is sent."""
    source = write_backup(tmp_path, "staging", ["wbsaleshub"], files=recorded)
    monkeypatch.setattr(data.eng, "stack_config", lambda stack: (STACK, "key"))
    sent = []
    monkeypatch.setattr(data, "run_script", lambda conn, key, text, label, log, data_in=None: sent.append(text) or "")
    assert data.restore(SimpleNamespace(name="staging"), source, log=lambda line: None) == 1
    (text,) = sent
    assert "\nfiles=3\n" in text


def test_from_hub_needs_hub_on_the_command_line(capsys):
    with pytest.raises(SystemExit):
        cli.main(["restore", "--stack", "staging", "--from", "x", "--from-hub", "wbother"])
    assert "--from-hub needs --hub <the hub to restore its data into>" in capsys.readouterr().err


def test_nothing_changes_before_the_archive_is_extracted_and_counted_and_the_trap_is_set_first():
    """The hub stops only after the staging volume holds the archive's files (and they are its uid's);
    the trap is in place before the first volume is made; the live volume is copied away before the
    restored content is copied in."""
    text = restore_script(HUB, "staging", "data", "0" * 64, 12, 14091, SERVING)
    body = text[text.index("\nflock 9\n"):]
    order = ["trap 'finish $?' EXIT", "helper extract", 'got=$(count "$staging")', 'reown "$staging"',
             'docker stop --time "$stop_grace" "$container"', 'copy_into keep "$volume" "$kept"',
             'copy_into swap "$staging" "$volume"', 'docker start "$container"', "wait_healthy",
             'docker volume rm "$staging"']
    assert text.index(order[0]) < text.index("\nflock 9\n")
    places = [body.index(step) for step in order[1:]]
    assert places == sorted(places), order
    assert "rm -rf" not in body.split('copy_into keep "$volume" "$kept"')[0], "nothing is emptied before the copy away"


# A stand-in for the Docker CLI on one host: a volume is a directory $FAKE/volumes/<name>, a running
# container a file $FAKE/running/<name>. The restore's helper containers do their step (by their
# `workhub.restore-step` label) on those directories; $FAKE/fail-<step> makes that step copy part of
# its files and die as a killed container does (exit 137).
FAKE_DOCKER = r"""#!/usr/bin/env bash
printf '%s\n' "$*" >>"$FAKE/calls"
V="$FAKE/volumes"
last=${*: -1}
case "$1 $2" in
  "volume inspect") exit "$([ -d "$V/$last" ] && echo 0 || echo 1)" ;;
  "volume create") mkdir -p "$V/$last"; printf '%s\n' "$*" >"$FAKE/created-$last"; echo "$last"; exit 0 ;;
  "volume rm") rm -rf "${V:?}/$3"; exit 0 ;;
  "container inspect") [ -e "$FAKE/running/$last" ] && echo true || echo false; exit 0 ;;
esac
case "$1" in
  stop) rm -f "$FAKE/running/$last"; echo "$last"; exit 0 ;;
  start) touch "$FAKE/running/$last"; echo "$last"; exit 0 ;;
  exec) exit 1 ;;
  logs) echo "the hub's last log line"; exit 0 ;;
  run) ;;
  *) echo "unexpected: docker $*" >&2; exit 2 ;;
esac
shift
step="" entry=""
declare -A mounts=()
while [ $# -gt 0 ]; do
  case "$1" in
    -v) spec=${2%:ro}; mounts[${spec#*:}]=${spec%%:*}; shift 2 ;;
    --label) case "$2" in workhub.restore-step=*) step=${2#*=} ;; esac; shift 2 ;;
    --entrypoint) entry=$2; shift 2 ;;
    --user | --network | --cap-add | --cap-drop | --security-opt) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
[ "$entry" = chown ] && exit 0
case "$step" in
  extract) tar -xzf - -C "$V/${mounts[/data]}" ;;
  count) find "$V/${mounts[/data]}" -mindepth 1 ! -type d | wc -l ;;
  keep | swap | back)
    from="$V/${mounts[/from]}" to="$V/${mounts[/to]}"
    find "$to" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    if [ -e "$FAKE/fail-$step" ]; then
      first=$(find "$from" -mindepth 1 ! -type d | sort | head -n 1)
      [ -z "$first" ] || cp "$first" "$to/"
      exit 137
    fi
    cp -a "$from/." "$to/" && find "$from" -mindepth 1 ! -type d | wc -l && find "$to" -mindepth 1 ! -type d | wc -l ;;
  *) echo "unexpected: docker run $*" >&2; exit 2 ;;
esac
"""
LIVE = "workhub-staging-wbsaleshub-data"
CONTAINER = "wbsaleshub-staging-blue"


class Health(BaseHTTPRequestHandler):
    """The hub through its proxy: 200 while its container runs and its volume holds no `poison`."""

    fake: Path

    def do_GET(self):  # noqa: N802
        ok = (self.fake / "running" / CONTAINER).exists() and not (self.fake / "volumes" / LIVE / "poison").exists()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def host(tmp_path):
    """The stand-in host: the hub's live volume holding `old` and `sub/older`, its blue container
    running and live, and its host port answering."""
    fake = tmp_path / "fake"
    for folder in ("bin", "volumes", "running", "home/.workhub/proxy/wbsaleshub-staging"):
        (fake / folder).mkdir(parents=True)
    (fake / "bin" / "docker").write_text(FAKE_DOCKER)
    (fake / "bin" / "docker").chmod(0o755)
    (fake / "volumes" / LIVE / "sub").mkdir(parents=True)
    (fake / "volumes" / LIVE / "old").write_text("old data\n")
    (fake / "volumes" / LIVE / "sub" / "older").write_text("older data\n")
    (fake / "running" / CONTAINER).touch()
    (fake / "home/.workhub/proxy/wbsaleshub-staging/haproxy.cfg").write_text("# workhub live slot: blue\n")
    handler = type("Handler", (Health,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield fake, server.server_address[1]
    server.shutdown()


def files_of(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def restore_on(host, archive: bytes, files: int) -> subprocess.CompletedProcess:
    fake, port = host
    serving = Serving("127.0.0.1", DeploySettings(healthTimeoutSeconds=2, stopGraceSeconds=0), "haproxy:2.6")
    text = restore_script(HUB, "staging", "data", hashlib.sha256(archive).hexdigest(), files, port, serving)
    # The script as an argument and the archive on stdin (on the host, both come on stdin).
    done = subprocess.run(["bash", "-c", text], input=archive, capture_output=True,
                          env={"PATH": f"{fake / 'bin'}:/usr/bin:/bin", "FAKE": str(fake), "HOME": str(fake / "home")})
    print(done.stderr.decode())
    return done


NEW = tar_gz([(".", True), ("./new", False), ("./sub", True), ("./sub/newer", False)])
OLD = {"old": "old data\n", "sub/older": "older data\n"}


def volumes(fake: Path, kind: str) -> list[Path]:
    return sorted(p for p in (fake / "volumes").iterdir() if kind in p.name)


def last_line(done: subprocess.CompletedProcess) -> str:
    return done.stderr.decode().splitlines()[-1]


def test_a_restore_swaps_in_the_archive_and_keeps_the_old_content(host):
    fake, _ = host
    done = restore_on(host, NEW, 2)
    assert done.returncode == 0
    assert files_of(fake / "volumes" / LIVE) == {"new": "./new", "sub/newer": "./sub/newer"}
    (kept,) = volumes(fake, ".pre-restore-")
    assert files_of(kept) == OLD and not volumes(fake, ".restore-")
    assert "--label workhub.pre-restore=" in (fake / f"created-{kept.name}").read_text()
    assert (fake / "running" / CONTAINER).exists()
    assert re.match(r"restore: wbsaleshub-staging-blue answers /health again: the hub was stopped for \d+ ms$",
                    last_line(done))
    calls = (fake / "calls").read_text().splitlines()
    steps = [c for c in calls if c.startswith(("stop", "start")) or "restore-step=" in c]
    assert [c.split("restore-step=")[1].split()[0] if "restore-step=" in c else c.split()[0] for c in steps] == \
        ["extract", "count", "stop", "keep", "swap", "start"]


def test_an_archive_that_arrives_short_of_files_changes_nothing(host):
    fake, _ = host
    done = restore_on(host, NEW, 3)
    assert done.returncode == 1
    assert last_line(done).startswith("restore: FAILED: checking workhub-staging-wbsaleshub-data.restore-")
    assert last_line(done).endswith(f"(exit 1); nothing was changed: {LIVE} holds its data as before and "
                                    f"{CONTAINER} kept serving")
    assert "the archive holds 3 file(s), but 2 arrived in" in done.stderr.decode()
    assert files_of(fake / "volumes" / LIVE) == OLD and [p.name for p in (fake / "volumes").iterdir()] == [LIVE]
    assert not any(c.startswith("stop") for c in (fake / "calls").read_text().splitlines())


@pytest.mark.parametrize("fail, outcome", [
    (["keep"], f"{LIVE} was not touched, and {CONTAINER} answers /health again"),
    (["swap"], f"{LIVE} holds its old data again (also kept in {{kept}}), and {CONTAINER} answers /health again"),
    (["swap", "back"], f"putting the old data back into {LIVE} failed too: it is kept in {{kept}}; copy it back with a "
                       f"container that mounts both, and {CONTAINER} answers /health again"),
])
def test_a_copy_that_fails_once_the_hub_stopped_leaves_the_old_data_in_place_and_the_hub_serving(host, fail, outcome):
    fake, _ = host
    for step in fail:
        (fake / f"fail-{step}").touch()
    done = restore_on(host, NEW, 2)
    assert done.returncode == 137
    kept = volumes(fake, ".pre-restore-")
    what = f"copying {LIVE}'s content into {LIVE}.pre-restore-" if fail == ["keep"] else \
        f"copying {LIVE}.restore-"
    assert last_line(done).startswith(f"restore: FAILED: {what}"), last_line(done)
    assert last_line(done).endswith(outcome.format(kept=kept[0].name if kept else "")), last_line(done)
    assert (fake / "running" / CONTAINER).exists() and not volumes(fake, ".restore-")
    if fail == ["keep"]:
        assert not kept, "a copy that failed is not kept"
        assert files_of(fake / "volumes" / LIVE) == OLD
    else:
        assert files_of(kept[0]) == OLD
        if "back" not in fail:
            assert files_of(fake / "volumes" / LIVE) == OLD


def test_restored_data_the_hub_does_not_answer_with_is_replaced_by_the_old_again(host):
    fake, _ = host
    done = restore_on(host, tar_gz([(".", True), ("./poison", False)]), 1)
    assert done.returncode == 1
    (kept,) = volumes(fake, ".pre-restore-")
    assert last_line(done) == (f"restore: FAILED: waiting for {CONTAINER} to answer /health with the restored data "
                               f"(exit 1); {LIVE} holds its old data again (also kept in {kept.name}), and "
                               f"{CONTAINER} answers /health again")
    assert files_of(fake / "volumes" / LIVE) == OLD


def test_a_restore_that_fails_on_the_host_says_so_last_without_a_traceback(tmp_path, monkeypatch, capsys):
    """The host's script failed (its last line said why): the CLI repeats that once, last, and exits 1."""
    source = write_backup(tmp_path, "staging", ["wbsaleshub"])
    monkeypatch.setattr(cli, "open_stack", lambda args: (None, SimpleNamespace(name="staging")))
    monkeypatch.setattr(data.eng, "stack_config", lambda stack: (STACK, "key"))

    def fails(conn, key, text, label, log, data_in=None):
        raise RemoteCommandError(failure_message(label, "deploy@127.0.0.1:22", 1, [
            "restore: FAILED: copying the kept content failed; the old data is in place"]))
    monkeypatch.setattr(data, "run_script", fails)
    assert cli.main(["restore", "--stack", "staging", "--from", str(source)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.rstrip().splitlines()[-1] == "reason: copying the kept content failed; the old data is in place"
    assert err.count("copying the kept content failed") == 1
    assert "\nworkhub: restore of 'staging' failed: step: wbsaleshub/data " in err
