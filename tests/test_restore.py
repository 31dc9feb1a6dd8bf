"""A one-host restore's logic before anything reaches the host: whose backup may restore where
(`--from-stack`, `--from-hub`), the file count each archive must arrive with, and the order the
rendered script keeps (everything that can fail before the hub stops; the trap before the first
change). The script's behaviour on a real host: tests/test_e2e_restore.py."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.config import Hub
from components.deploy import restore_script
from tests.test_scripts import HUB, SERVING, STACK
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
    body = text[text.index("\narchive=$(mktemp)"):]
    order = ["trap 'finish $?' EXIT", "helper extract", 'got=$(count "$staging")', 'reown "$staging"',
             'docker stop --time "$stop_grace" "$container"', 'copy_into keep "$volume" "$kept"',
             'copy_into swap "$staging" "$volume"', 'docker volume rm "$staging"', 'docker start "$container"',
             "wait_healthy"]
    assert text.index(order[0]) < text.index("\narchive=$(mktemp)")
    places = [body.index(step) for step in order[1:]]
    assert places == sorted(places), order
    assert "rm -rf" not in body.split('copy_into keep "$volume" "$kept"')[0], "nothing is emptied before the copy away"
