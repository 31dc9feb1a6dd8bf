"""Backup and restore of the hubs' volumes: each volume copied to the operator's machine as a
gzipped tar with a manifest, and put back from there. The archives travel over SSH straight between
the host and local files; nothing of them passes through Pulumi state.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Optional

from pulumi import automation as auto

from components.resources.host.build_host import connection_for
from components.render.swarm import data as swarm_data
from components.config.models import NAMESPACE, REGISTRY_PASSWORD, Hub, StackConfig
from components.render.host.deploy import (Serving, backup_script, prune_copies_script, purge_script, restore_script,
                                           volume_info_script)
from components.ssh import RemoteCommandError, run_script, with_secrets
from components.config.runtime import volume_name
from components.render.swarm.stack import service_name, sockets_volume
from components.resources.swarm.cluster import node_connection
from components.render.swarm.scripts import labels_script

from . import engine as eng

MANIFEST = "manifest.json"


class DataError(Exception):
    """A backup or restore cannot go ahead; the message says why and what to do."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def archive_files(path: Path) -> int:
    """How many files (entries but directories) the gzipped tar at `path` holds: what a restore must
    find in the volume it extracts it into."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            return sum(1 for member in archive if not member.isdir())
    except (OSError, tarfile.TarError, EOFError) as error:
        raise DataError(f"{path} is not a whole gzipped tar ({error}); it is damaged or was changed") from None


def _hubs(config: StackConfig, hub: Optional[str]) -> list[Hub]:
    hubs = [h for h in config.hubs if hub in (None, h.name)]
    if not hubs:
        raise DataError(f"stack has no hub {hub!r}; its hubs: {', '.join(h.name for h in config.hubs)}")
    return hubs


def backup(stack: auto.Stack, out_dir: Path, hub: Optional[str] = None,
           log: Callable[[str], None] = print) -> Path:
    """Copy every volume of the stack's hubs (or of one hub) into `out_dir`, one `<hub>-<volume>.tar.gz`
    each, with `manifest.json` (hub, volume, stack, image, time, sha256, files); the manifest's path."""
    config, key = eng.stack_config(stack)
    if config.swarm is not None:
        return swarm_backup(config, key, stack.name, out_dir, hub, log, _registry_password(stack))
    conn = connection_for(config.host)
    pairs = [(h, name) for h in _hubs(config, hub) for name in h.volumes]
    if not pairs:
        raise DataError(NO_VOLUMES)
    found = [json.loads(line) for line in
             run_script(conn, key, volume_info_script(stack.name, pairs), "backup", lambda line: None).splitlines()
             if line.strip()]
    missing = [f"{v['hub']}/{v['volume']}" for v in found if not v["exists"]]
    if missing:
        raise DataError(f"not on the host yet (never deployed, or purged): {', '.join(missing)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for volume in found:
        archive = out_dir / f"{volume['hub']}-{volume['volume']}.tar.gz"
        started = datetime.now(timezone.utc)
        with archive.open("wb") as sink:
            run_script(conn, key, backup_script(volume["docker_volume"], config.helper),
                       f"{volume['hub']}/{volume['volume']}", log, data_out=sink)
        entries.append(_entry(stack.name, volume["hub"], volume["volume"], volume["docker_volume"], volume["image"],
                              started, archive))
        log(f"backup: {volume['hub']}/{volume['volume']}: {archive} ({archive.stat().st_size} bytes)")
    return _write_manifest(out_dir, {"stack": stack.name, "host": conn.describe(), "archives": entries})


NO_VOLUMES = "no hub of this stack has a volume (workhub:hubs[].volumes in Pulumi.yaml)"


def _entry(stack: str, hub: str, volume: str, docker_volume: str, image: str, started: datetime,
           archive: Path, **more: str) -> dict:
    return {"hub": hub, "volume": volume, "docker_volume": docker_volume, "stack": stack, "image": image,
            "time": started.isoformat(timespec="seconds"), "file": archive.name, "bytes": archive.stat().st_size,
            "sha256": _sha256(archive), "files": archive_files(archive), **more}


def _write_manifest(out_dir: Path, manifest: dict) -> Path:
    path = out_dir / MANIFEST
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def _registry_password(stack: auto.Stack) -> str:
    value = stack.get_all_config().get(f"{NAMESPACE}:{REGISTRY_PASSWORD}")
    return value.value if value is not None else ""


def swarm_backup(config: StackConfig, key: str, stack: str, out_dir: Path, hub: Optional[str] = None,
                 log: Callable[[str], None] = print, registry_password: str = "") -> Path:
    """A Swarm stack's backup: each volume read on its hub's data node (the hub keeps running); the
    manifest names that node for each archive."""
    assert config.swarm is not None
    pairs = [(h, name) for h in _hubs(config, hub) for name in h.volumes]
    if not pairs:
        raise DataError(NO_VOLUMES)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for target, name in pairs:
        node = config.swarm.data_node(target.name)
        assert node is not None
        archive = out_dir / f"{target.name}-{name}.tar.gz"
        started = datetime.now(timezone.utc)
        with archive.open("wb") as sink:
            run_script(node_connection(config, node), key,
                       with_secrets(swarm_data.backup_script(config, stack, target, name),
                                    {"registry_password": registry_password}),
                       f"{target.name}/{name}", log, data_out=sink)
        entries.append(_entry(stack, target.name, name, volume_name(stack, target.name, name), "", started, archive,
                              node=node.name))
        log(f"backup: {target.name}/{name} on {node.name}: {archive} ({archive.stat().st_size} bytes)")
    return _write_manifest(out_dir, {"stack": stack, "swarm": [node.name for node in config.swarm.nodes],
                                     "archives": entries})


def _read_manifest(source: Path, stack: str, log: Callable[[str], None],
                   from_stack: Optional[str] = None) -> tuple[Path, dict]:
    """The manifest in `source` (a backup directory or its manifest.json). A backup of another stack
    (a one-host stack's moving to a Swarm, or back) is refused unless `from_stack` names that stack
    (`--from-stack`); then `log` says so, once."""
    manifest_path = source / MANIFEST if source.is_dir() else source
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{manifest_path} is not a workhub backup manifest ({error})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("archives", []), list):
        raise DataError(f"{manifest_path} is not a workhub backup manifest (no list of archives)")
    made_of = manifest.get("stack")
    if from_stack is not None and from_stack != made_of:
        raise DataError(f"{manifest_path} is a backup of stack {made_of!r}, not of {from_stack!r} (--from-stack); "
                        f"nothing was changed")
    if made_of != stack:
        if from_stack is None:
            raise DataError(f"{manifest_path} is a backup of stack {made_of!r}, not of {stack!r}; nothing was "
                            f"changed. To restore it into {stack!r} anyway, add --from-stack {made_of}")
        made_on = (f"the Swarm {', '.join(manifest['swarm'])}" if manifest.get("swarm")
                   else f"the host {manifest.get('host') or '?'}")
        log(f"restore: {manifest_path} is a backup of stack {made_of!r} (made on {made_on}); "
            f"restoring it into {stack!r}")
    return manifest_path, manifest


def _chosen(manifest_path: Path, manifest: dict, hubs: Mapping[str, Hub], hub: Optional[str],
            volume: Optional[str], stack: str, from_hub: Optional[str] = None) -> list[dict]:
    """The manifest's archives for these hubs (and volume), each checked against its sha256; a hub or
    volume of the backup the target stack does not have stops the restore before anything changed.
    An archive restores into the hub of its own name, or, with `from_hub` (`--from-hub`, which needs
    `hub`), hub `from_hub`'s archives into `hub`: the entries returned name the hub they restore into
    (`hub`), and the hub they were made of (`made_of_hub`)."""
    if from_hub is not None and hub is None:
        raise DataError(f"--from-hub {from_hub} needs --hub <the hub to restore its data into>")
    archives = manifest.get("archives", [])
    source_hub = from_hub if from_hub is not None else hub
    chosen = [{**entry, "hub": hub if from_hub is not None else entry["hub"], "made_of_hub": entry["hub"]}
              for entry in archives if source_hub in (None, entry["hub"]) and volume in (None, entry["volume"])]
    if not chosen:
        held = ", ".join(f"{entry['hub']}/{entry['volume']}" for entry in archives) or "nothing"
        other = (f"; to restore another hub's data into {hub}, add --from-hub <that hub>"
                 if from_hub is None and hub is not None and archives else "")
        raise DataError(f"{manifest_path} holds no archive for hub {source_hub or 'any'} and volume "
                        f"{volume or 'any'} (it holds {held}){other}")
    missing = sorted({entry["hub"] for entry in chosen if entry["hub"] not in hubs})
    if missing:
        raise DataError(f"stack {stack!r} has no hub {', '.join(missing)} (workhub:hubs in Pulumi.yaml), which "
                        f"{manifest_path} holds data of; restore the others with --hub <hub>")
    for entry in chosen:
        volumes = hubs[entry["hub"]].volumes
        if entry["volume"] not in volumes:
            raise DataError(f"hub {entry['hub']} of stack {stack!r} has no volume {entry['volume']!r} (workhub:hubs[]"
                            f".volumes in Pulumi.yaml; it has {', '.join(volumes) or 'none'}); restore the others "
                            "with --volume <name>")
    for entry in chosen:
        archive = manifest_path.parent / entry["file"]
        try:
            matches = _sha256(archive) == entry["sha256"]
        except OSError as error:
            raise DataError(f"{archive}, which {manifest_path} names, cannot be read ({error})") from None
        if not matches:
            raise DataError(f"{archive} does not match the sha256 in {manifest_path}; it is damaged or was changed")
    return chosen


def restore(stack: auto.Stack, source: Path, hub: Optional[str] = None, volume: Optional[str] = None,
            log: Callable[[str], None] = print, from_stack: Optional[str] = None,
            from_hub: Optional[str] = None) -> int:
    """Put back the volumes a backup in `source` (a directory with manifest.json, or the manifest)
    holds, each checked against its sha256 first: each extracted into a staging volume and counted
    while the hub serves, then swapped in while the hub's container stops (the old content kept in
    `<volume>.pre-restore-<time>`), and the hub must answer its health path again. A backup of another
    stack needs `from_stack`, another hub's `from_hub` (see `_chosen`). The number of volumes restored."""
    config, key = eng.stack_config(stack)
    if config.swarm is not None:
        return swarm_restore(config, key, stack.name, source, hub, volume, log, _registry_password(stack),
                             from_stack=from_stack, from_hub=from_hub)
    manifest_path, manifest = _read_manifest(source, stack.name, log, from_stack)
    conn = connection_for(config.host)
    hubs = {h.name: h for h in _hubs(config, hub)}
    serving = Serving(config.publish_address, config.deploy, config.proxy_image, config.helper)
    chosen = _chosen(manifest_path, manifest, hubs, hub, volume, stack.name, from_hub)
    # A manifest from before it recorded each archive's file count: counted here, before anything is sent.
    files = [entry["files"] if isinstance(entry.get("files"), int)
             else archive_files(manifest_path.parent / entry["file"]) for entry in chosen]
    for entry, count in zip(chosen, files):
        target = hubs[entry["hub"]]
        with (manifest_path.parent / entry["file"]).open("rb") as data:
            run_script(conn, key, restore_script(target, stack.name, entry["volume"], entry["sha256"], count,
                                                 config.host_ports[target.name], serving),
                       f"{target.name}/{entry['volume']}", log, data_in=data)
    return len(chosen)


def swarm_restore(config: StackConfig, key: str, stack: str, source: Path, hub: Optional[str] = None,
                  volume: Optional[str] = None, log: Callable[[str], None] = print,
                  registry_password: str = "", from_stack: Optional[str] = None, from_hub: Optional[str] = None) -> int:
    """A Swarm stack's restore, hub by hub: its service scaled to 0 on a manager, each volume put back
    on the node the config names as its data node now (another than the backup's, when the hub
    moves there), the nodes' labels set from the config, and the service scaled back to its replicas,
    there. The number of volumes restored."""
    assert config.swarm is not None
    manifest_path, manifest = _read_manifest(source, stack, log, from_stack)
    hubs = {h.name: h for h in _hubs(config, hub)}
    chosen = _chosen(manifest_path, manifest, hubs, hub, volume, stack, from_hub)
    manager = node_connection(config, config.swarm.node(config.swarm.managers[0]))
    for name in dict.fromkeys(entry["hub"] for entry in chosen):
        _swarm_restore_hub(config, key, stack, hubs[name], [entry for entry in chosen if entry["hub"] == name],
                           manifest_path.parent, manager, log, registry_password)
    return len(chosen)


def _reason(error: Exception) -> str:
    """The one line a failed script gave as its reason (components.ssh.failure_message), else the error."""
    lines = str(error).splitlines()
    return next((line.removeprefix("reason: ") for line in lines if line.startswith("reason: ")),
                lines[-1] if lines else "")


def _swarm_restore_hub(config: StackConfig, key: str, stack: str, target: Hub, entries: list[dict], folder: Path,
                       manager, log: Callable[[str], None], registry_password: str) -> None:
    """One hub's restore on a Swarm, without losing data: each archive extracted into a volume of its
    own on the hub's data node and checked (sha256, file count) while the hub runs; only then the
    service scaled to 0, each volume's content kept in `<volume>.pre-restore-<time>` and replaced by
    the staged one (swarm_data.swap_script, which puts the old content back if it fails), the nodes'
    labels set from the config, and the service scaled back to its replicas, whatever failed. A
    failure raises DataError, its last line saying what failed and where the hub's data is."""
    assert config.swarm is not None
    node = config.swarm.data_node(target.name)
    assert node is not None
    conn = node_connection(config, node)
    secrets = {"registry_password": registry_password}
    service = service_name(stack, target.name)
    replicas = config.swarm.hub(target.name).replicas
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    # A manifest from before it recorded each archive's file count: counted here, before anything is sent.
    counts = [entry["files"] if isinstance(entry.get("files"), int) else archive_files(folder / entry["file"])
              for entry in entries]
    staged: list[str] = []

    def unstage() -> None:
        if staged:
            try:
                run_script(conn, key, swarm_data.unstage_script(config, stack, target, staged, stamp),
                           f"{target.name} (unstage)", log)
            except RemoteCommandError as error:
                log(f"restore: the staged copies on {node.name} were not removed ({_reason(error)}); "
                    f"`docker volume ls --filter label=workhub.restore={stamp}` there lists them")

    for entry, files in zip(entries, counts):
        with (folder / entry["file"]).open("rb") as archive:
            try:
                run_script(conn, key, with_secrets(swarm_data.restore_script(
                    config, stack, target, entry["volume"], entry["sha256"], files, stamp), secrets),
                    f"{target.name}/{entry['volume']}", log, data_in=archive)
            except RemoteCommandError as error:
                unstage()
                raise DataError(f"{error}\nthe restore of {target.name}/{entry['volume']} failed before the hub "
                                f"was stopped: {_reason(error)}") from None
        staged.append(entry["volume"])

    failure, swapped = None, 0
    try:
        run_script(manager, key, swarm_data.scale_script(config, stack, target, 0), f"{target.name} (stop)", log)
        for volume in staged:
            run_script(conn, key, with_secrets(swarm_data.swap_script(config, stack, target, volume, stamp), secrets),
                       f"{target.name}/{volume}", log)
            swapped += 1
    except RemoteCommandError as error:
        failure = error
    finally:
        # Whatever happened above (an interrupt too): the service back at its replicas.
        if swapped < len(staged):
            staged[:] = staged[swapped:]
            unstage()
        try:
            run_script(manager, key, labels_script(config), "labels", log)
            run_script(manager, key, swarm_data.scale_script(config, stack, target, replicas),
                       f"{target.name} (start)", log)
            back = f"{service} is back at its {replicas} task(s) on {node.name}"
        except RemoteCommandError as error:
            back = (f"and {service} did not come back at its {replicas} task(s): {_reason(error)}; "
                    f"`scripts/workhub status --stack {stack}` shows where it is")
            if failure is None:
                raise DataError(f"{error}\nthe data of {target.name} was restored, but {service} did not come back "
                                f"at its {replicas} task(s): {_reason(error)}") from None
    if failure is not None:
        done = ", ".join(f"{target.name}/{entry['volume']}" for entry in entries[:swapped]) or "nothing"
        raise DataError(f"{failure}\nthe restore of {target.name} failed: {_reason(failure)}; restored before "
                        f"that: {done}; {back}")


def purge(stack: auto.Stack, log: Callable[[str], None] = print) -> dict[str, list[str]]:
    """Remove every volume the stack's hubs keep (after destroy: their data is gone): on one host, there;
    on a Swarm, on each node that holds one. The volumes removed on each Swarm node (empty on one host)."""
    config, key = eng.stack_config(stack)
    if config.swarm is not None:
        return swarm_purge(config, key, stack.name, log)
    run_script(connection_for(config.host), key, purge_script(stack.name), "purge", log)
    return {}


def _on_every_node(config: StackConfig, key: str, render: Callable[[str], str], step: str,
                   log: Callable[[str], None]) -> tuple[dict[str, str], list[str]]:
    """Run the script `render(node name)` on every node of the Swarm, each whatever the others did:
    by node, what it printed, and `<node>: <error>` for each node where it failed."""
    assert config.swarm is not None
    printed: dict[str, str] = {}
    failed = []
    for node in config.swarm.nodes:
        try:
            printed[node.name] = run_script(node_connection(config, node), key, render(node.name),
                                            f"{step} on {node.name}", log)
        except RemoteCommandError as error:
            failed.append(f"{node.name}: {error}")
    return printed, failed


def swarm_purge(config: StackConfig, key: str, stack: str, log: Callable[[str], None] = print) -> dict[str, list[str]]:
    """A Swarm stack's purge, once it is off the Swarm: on every node, the stack's volumes there
    removed (a hub's data node, and a node a restore elsewhere left a copy on); by node, the volumes
    removed. A node that does not answer, or a volume still in use, fails it after the other nodes."""
    printed, failed = _on_every_node(config, key, lambda node: swarm_data.purge_script(config, stack, node),
                                     "purge", log)
    if failed:
        raise DataError("the volumes on " + "; ".join(failed) + " were not removed; once that is fixed, "
                        f"`scripts/workhub destroy --stack {stack} --purge-data` removes them")
    # The publish relays' socket volume goes too, but holds no data: not named among the volumes.
    return {node: [line.removeprefix("removed ") for line in out.splitlines()
                   if line.startswith("removed ") and line != f"removed {sockets_volume(stack)}"]
            for node, out in printed.items()}


def swarm_prune_copies(config: StackConfig, key: str, stack: str, log: Callable[[str], None] = print) -> None:
    """A Swarm stack's pre-restore copies: on every node, the newest of each volume kept, the older
    ones removed (a restore keeps its copy on the hub's data node). A node that does not answer
    fails it after the other nodes."""
    _, failed = _on_every_node(config, key, lambda node: prune_copies_script(stack), "prune", log)
    if failed:
        raise DataError("the pre-restore copies on " + "; ".join(failed) + " were not pruned; once that is fixed, "
                        f"`scripts/workhub prune --stack {stack}` prunes them")


def default_out_dir(stack: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return eng.STATE_DIR / "backups" / stack / stamp
