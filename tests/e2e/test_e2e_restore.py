"""Restores that cannot lose data, on the test host with the real engine, sshd and Docker, one
deployed hub shared by the module's tests: a prober requests the hub's host port 25 times a second
through each restore, and the volumes' files are compared byte for byte (sha256 of each) with the
archive and with what the hub held before.

- A good restore: the volume holds the backup's files, `<volume>.pre-restore-<time>` holds what it
  held before, and requests failed only while the hub was stopped for the two copies.
- A corrupt archive whose sha256 matches its manifest (a cut gzip): it fails while extracting into
  the staging volume, before the hub stops; nothing changed, no staging volume is left.
- The swap killed halfway (its helper container killed by `docker kill` as it starts): the trap
  puts the old content back and starts the hub, and the last line says what failed.
- Another stack's backup is refused without `--from-stack`, and another hub's restores into this
  one only with `--from-hub`, through `scripts/workhub` itself.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from pulumi import automation as auto

from components.ssh import RemoteCommandError
from tests.e2e_fixtures import (SIDE_USER, docker, health, new_local_stack, on_the_side_host, serving_container,
                                 workhub)
from workhub import data
from workhub import engine as eng
from workhub.engine import print_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
# Beside the one-host tests, on a test host of its own (tests/e2e_fixtures.py: on_the_side_host).
test_host, host_state, beside_the_one_host = on_the_side_host()

STACK = "e2erestore"
HUB = {"name": "wbsaleshub", "context": "WBSalesHub", "port": 4091, "healthPath": "/health",
       "volumes": {"data": "/app/data"}}
DEPLOY = {"healthTimeoutSeconds": 30, "healthIntervalMs": 300, "stopGraceSeconds": 5}
VOLUME = f"workhub-{STACK}-wbsaleshub-data"
# How far outside the pause the script reports a failed request may be: the prober's and the log's
# clocks differ by the time a log line takes to come over SSH.
SLACK_S = 0.5
# A request the proxy could not connect for (the hub stopped) is tried again once a second (HAProxy's
# pause between retries): one that came during the pause is answered up to this long after it.
RETRY_S = 1.0


@dataclass
class Deployed:
    engine: eng.Engine
    stack: auto.Stack
    url: str
    helper: str
    tmp: Path


def volumes_of(prefix: str) -> list[str]:
    """The volumes on the test host whose names start with `prefix`."""
    return [name for name in docker("volume", "ls", "--quiet").split() if name.startswith(prefix)]


def remove_volumes() -> None:
    for name in volumes_of(VOLUME):
        docker("volume", "rm", "--force", name, check=False)


def files_in(volume: str, helper: str) -> dict[str, str]:
    """Each file of `volume` (anything but a directory), by its path, with its content's sha256."""
    out = docker("run", "--rm", "--network", "none", "-v", f"{volume}:/data:ro", "--entrypoint", "sh", helper, "-c",
                 "cd /data && find . ! -type d -exec sha256sum {} +")
    return {line.split(None, 1)[1].strip(): line.split(None, 1)[0] for line in out.splitlines() if line.strip()}


def files_of(archive: Path) -> dict[str, str]:
    """Each file a gzipped tar holds (anything but a directory), by its path, with its content's sha256."""
    found = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if not member.isdir():
                content = tar.extractfile(member)
                found["./" + member.name.removeprefix("./")] = hashlib.sha256(content.read() if content else b"").hexdigest()
    return found


def write_file(name: str, content: bytes) -> None:
    """A file the hub itself writes into its volume (as its own uid)."""
    subprocess.run(["/usr/bin/docker", "exec", "-i", serving_container("wbsaleshub", STACK, SIDE_USER), "sh", "-c",
                    f"cat > /app/data/{name}"], input=content, check=True)


def remove_file(name: str) -> None:
    docker("exec", serving_container("wbsaleshub", STACK, SIDE_USER), "rm", "-f", f"/app/data/{name}")



def rewrite_manifest(backup: Path, **changes) -> dict:
    """Change every archive entry of the backup's manifest (and the manifest's own fields given as
    `stack`); the new manifest."""
    manifest = json.loads((backup / data.MANIFEST).read_text())
    if "stack" in changes:
        manifest["stack"] = changes.pop("stack")
    for entry in manifest["archives"]:
        entry.update(changes)
    (backup / data.MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def reseal(backup: Path) -> None:
    """The manifest's sha256 and size of each archive set to what the file holds now."""
    manifest = json.loads((backup / data.MANIFEST).read_text())
    for entry in manifest["archives"]:
        archive = backup / entry["file"]
        entry.update(sha256=hashlib.sha256(archive.read_bytes()).hexdigest(), bytes=archive.stat().st_size)
    (backup / data.MANIFEST).write_text(json.dumps(manifest, indent=2))


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, toolchain, test_host, npm_registry):
    """The hub, deployed once for the module, with a volume."""
    tmp = tmp_path_factory.mktemp("restore")
    engine, stack = new_local_stack(tmp, test_host, npm_registry, hubs=[HUB], name=STACK, deploy=DEPLOY)
    remove_volumes()
    try:
        url = stack.up(on_output=print_line, color="never").outputs["hubs"].value["wbsaleshub"]["url"]
        helper = docker("inspect", "--format", "{{.Config.Image}}", f"wbsaleshub-{STACK}-proxy")
        yield Deployed(engine, stack, url, helper, tmp)
    finally:
        stack.destroy(color="never")
        remove_volumes()


@pytest.fixture
def backup(deployed, tmp_path) -> Path:
    """A backup of the hub's volume holding a lead list and a binary file: its directory."""
    write_file("blob.bin", os.urandom(300_000))
    write_file("leads.json", json.dumps([{"company": "Acme"}]).encode())
    data.backup(deployed.stack, tmp_path / "backup")
    return tmp_path / "backup"


def restore_under_probe(deployed: Deployed, backup: Path, **flags):
    """`restore` while a prober requests the health path: the prober's report, the restore's log
    lines (each with when it came, in prober time), and its error (None when it succeeded)."""
    from tools.prober import Prober

    logs: list[tuple[float, str]] = []
    error = None
    with Prober(deployed.url, rate=25) as prober:
        time.sleep(0.5)  # a few answers before the restore, so the report shows what came before it
        try:
            data.restore(deployed.stack, backup, log=lambda line: logs.append((prober.elapsed(), line)), **flags)
        except (RemoteCommandError, data.DataError) as failed:
            error = failed
        time.sleep(0.5)
    report = prober.report()
    print(report.summary())
    print("\n".join(f"{at:7.2f} {line}" for at, line in logs))
    return report, logs, error


def pause_of(logs: list[tuple[float, str]]) -> tuple[float, float, int]:
    """When the restore stopped the hub, when it answered again (prober time), and the pause it reports."""
    (stopped,) = [at for at, line in logs if "restore: stopping" in line]
    (back,) = [(at, line) for at, line in logs if "answers /health again: the hub was stopped for" in line]
    return stopped, back[0], int(back[1].rsplit("stopped for ", 1)[1].split()[0])


def test_a_restore_swaps_in_the_backup_keeps_the_old_data_and_pauses_the_hub_only_for_the_copies(deployed, backup):
    backed_up = files_of(next(backup.glob("*.tar.gz")))
    assert {"./blob.bin", "./leads.json"} <= set(backed_up)
    assert json.loads((backup / data.MANIFEST).read_text())["archives"][0]["files"] == len(backed_up)
    # After the backup: the blob is gone, another file came.
    remove_file("blob.bin")
    write_file("later.txt", b"written after the backup\n")
    before = files_in(VOLUME, deployed.helper)
    kept_before = set(volumes_of(f"{VOLUME}.pre-restore-"))

    report, logs, error = restore_under_probe(deployed, backup)
    assert error is None, error
    assert files_in(VOLUME, deployed.helper) == backed_up, "the volume holds the backup byte for byte"
    (kept,) = set(volumes_of(f"{VOLUME}.pre-restore-")) - kept_before
    assert files_in(kept, deployed.helper) == before, f"{kept} holds the old data byte for byte"
    labels = json.loads(docker("volume", "inspect", "--format", "{{json .Labels}}", kept))
    assert labels == {"workhub.stack": STACK, "workhub.hub": "wbsaleshub", "workhub.volume": "data",
                      "workhub.pre-restore": kept.rsplit(".pre-restore-", 1)[1]}
    assert not volumes_of(f"{VOLUME}.restore-"), "no staging volume left"
    assert health(deployed.url) == 200
    # The hub's own uid owns what it got back: it writes there.
    write_file("after-restore.txt", b"the hub writes into its restored volume\n")
    remove_file("after-restore.txt")

    # Requests during the pause fail, or wait (the proxy tries the container's address again): both only then.
    stopped, back, reported_ms = pause_of(logs)
    failed = [s for s in report.samples if s.error or s.status != 200]
    held = [s for s in report.samples if s.latency_ms > 500]
    print(f"the restore stopped the hub for {reported_ms} ms (the script's count); the prober saw "
          f"{len(failed)} failed request(s) of {report.total}, {len(held)} held over 500 ms, the longest "
          f"{report.max_ms:.0f} ms")
    outside = [s for s in failed + held
               if not (stopped - SLACK_S <= s.started <= back + SLACK_S and s.ended <= back + RETRY_S + SLACK_S)]
    assert not outside, f"requests failed or waited outside the pause ({stopped:.2f}-{back:.2f} s): {outside}"
    assert any(s.started < stopped and s.status == 200 for s in report.samples)
    assert report.max_ms is not None and report.max_ms < reported_ms + (RETRY_S + SLACK_S) * 1000, report.summary()


def test_a_corrupt_archive_that_matches_its_sha256_changes_nothing(deployed, backup):
    archive = next(backup.glob("*.tar.gz"))
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])  # a gzip cut in half
    reseal(backup)
    write_file("current.txt", b"what the hub holds now\n")
    before = files_in(VOLUME, deployed.helper)
    kept_before = set(volumes_of(f"{VOLUME}.pre-restore-"))

    report, logs, error = restore_under_probe(deployed, backup)
    assert isinstance(error, RemoteCommandError), error
    last = logs[-1][1]
    assert "FAILED: extracting the archive into " + VOLUME + ".restore-" in last, last
    assert last.endswith(f"nothing was changed: {VOLUME} holds its data as before and "
                         f"{serving_container('wbsaleshub', STACK, SIDE_USER)} kept serving"), last
    assert files_in(VOLUME, deployed.helper) == before, "the live data is unchanged byte for byte"
    assert health(deployed.url) == 200 and report.failed == 0, report.summary()
    assert not volumes_of(f"{VOLUME}.restore-"), "no staging volume left"
    assert set(volumes_of(f"{VOLUME}.pre-restore-")) == kept_before


def kill_the_swap() -> tuple[threading.Thread, list[str]]:
    """Kill the restore's swap (its helper container that copies into the live volume) as soon as
    Docker starts it: the thread doing it, and the container it killed."""
    killed: list[str] = []
    events = subprocess.Popen(["/usr/bin/docker", "events", "--filter", "type=container", "--filter", "event=start",
                               "--filter", f"label=workhub.restore={VOLUME}", "--filter",
                               "label=workhub.restore-step=swap", "--format", "{{.ID}}"],
                              stdout=subprocess.PIPE, text=True)

    def watch() -> None:
        try:
            assert events.stdout is not None
            container = events.stdout.readline().strip()
            if container:
                if subprocess.run(["/usr/bin/docker", "kill", container], capture_output=True).returncode == 0:
                    killed.append(container)
        finally:
            events.terminate()
            events.wait()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, killed


def big_archive(path: Path, files: int = 30_000) -> dict[str, str]:
    """A backup's gzipped tar of many small files (so that copying it takes a while); its files."""
    found = {}
    with gzip.open(path, "wb", compresslevel=1) as raw, tarfile.open(fileobj=raw, mode="w") as tar:
        root = tarfile.TarInfo(".")
        root.type = tarfile.DIRTYPE
        root.mode = 0o755
        tar.addfile(root)
        for n in range(files):
            content = os.urandom(512)
            info = tarfile.TarInfo(f"./many/{n % 100:02d}/file-{n}.bin")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
            found[f"./many/{n % 100:02d}/file-{n}.bin"] = hashlib.sha256(content).hexdigest()
    return found


def test_a_swap_killed_halfway_puts_the_old_data_back_and_the_hub_serves(deployed, backup):
    archive = next(backup.glob("*.tar.gz"))
    planted = big_archive(archive)
    rewrite_manifest(backup, files=len(planted))
    reseal(backup)
    write_file("current.txt", b"what the hub holds before the failed restore\n")
    before = files_in(VOLUME, deployed.helper)
    kept_before = set(volumes_of(f"{VOLUME}.pre-restore-"))

    thread, killed = kill_the_swap()
    report, logs, error = restore_under_probe(deployed, backup)
    thread.join(timeout=10)
    assert killed, "the swap's helper container was not killed while it ran"
    assert isinstance(error, RemoteCommandError), error
    (kept,) = set(volumes_of(f"{VOLUME}.pre-restore-")) - kept_before
    container = serving_container("wbsaleshub", STACK, SIDE_USER)
    last = logs[-1][1]
    assert f"FAILED: copying {VOLUME}.restore-" in last and f"'s content into {VOLUME} (exit 137)" in last, last
    assert last.endswith(f"{VOLUME} holds its old data again (also kept in {kept}), and {container} answers "
                         "/health again"), last
    assert files_in(VOLUME, deployed.helper) == before, "the old data is back byte for byte"
    assert files_in(kept, deployed.helper) == before
    assert health(deployed.url) == 200
    assert not volumes_of(f"{VOLUME}.restore-"), "no staging volume left"
    assert report.samples[-1].status == 200, report.summary()


def test_another_stacks_or_hubs_backup_needs_from_stack_or_from_hub(deployed, backup):
    theirs = deployed.tmp / "theirs"
    shutil.copytree(backup, theirs, dirs_exist_ok=True)
    rewrite_manifest(theirs, stack="elsewhere")
    backed_up = files_of(next(theirs.glob("*.tar.gz")))
    remove_file("blob.bin")
    before = files_in(VOLUME, deployed.helper)

    refused = workhub(deployed.engine, "restore", "--stack", STACK, "--from", str(theirs))
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == (
        f"workhub: restore of '{STACK}' failed: {theirs / data.MANIFEST} is a backup of stack 'elsewhere', not of "
        f"'{STACK}'; nothing was changed. To restore it into '{STACK}' anyway, add --from-stack elsewhere")
    assert files_in(VOLUME, deployed.helper) == before

    accepted = workhub(deployed.engine, "restore", "--stack", STACK, "--from", str(theirs), "--from-stack", "elsewhere")
    assert accepted.returncode == 0, accepted.stderr[-3000:]
    assert f"is a backup of stack 'elsewhere' (made on the host " in accepted.stderr
    assert files_in(VOLUME, deployed.helper) == backed_up

    # Another hub's archive (the same bytes, made of a hub `wbother`): only with --from-hub.
    other = deployed.tmp / "other-hub"
    shutil.copytree(backup, other, dirs_exist_ok=True)
    rewrite_manifest(other, hub="wbother")
    remove_file("blob.bin")
    before = files_in(VOLUME, deployed.helper)
    refused = workhub(deployed.engine, "restore", "--stack", STACK, "--from", str(other), "--hub", "wbsaleshub")
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1].endswith(
        "holds no archive for hub wbsaleshub and volume any (it holds wbother/data); to restore another hub's data "
        "into wbsaleshub, add --from-hub <that hub>"), refused.stderr
    assert files_in(VOLUME, deployed.helper) == before
    accepted = workhub(deployed.engine, "restore", "--stack", STACK, "--from", str(other), "--hub", "wbsaleshub",
                       "--from-hub", "wbother")
    assert accepted.returncode == 0, accepted.stderr[-3000:]
    assert files_in(VOLUME, deployed.helper) == backed_up
    assert health(deployed.url) == 200


def test_prune_keeps_the_newest_pre_restore_copy_of_each_volume(deployed):
    copies = sorted(volumes_of(f"{VOLUME}.pre-restore-"))
    assert len(copies) >= 2, f"the tests above kept {copies}"
    pruned = workhub(deployed.engine, "prune", "--stack", STACK)
    assert pruned.returncode == 0, pruned.stderr[-3000:]
    assert volumes_of(f"{VOLUME}.pre-restore-") == [copies[-1]]
    assert f"prune: kept {copies[-1]}, the content {VOLUME} had before its last restore" in pruned.stderr
