"""Backup and restore of the hubs' volumes: each volume copied to the operator's machine as a
gzipped tar with a manifest, and put back from there. The archives travel over SSH straight between
the host and local files; nothing of them passes through Pulumi state.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from pulumi import automation as auto

from components.build_host import connection_for
from components.config import Hub, StackConfig
from components.deploy import Serving, backup_script, purge_script, restore_script, volume_info_script
from components.remote import run_script

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


def _hubs(config: StackConfig, hub: Optional[str]) -> list[Hub]:
    hubs = [h for h in config.hubs if hub in (None, h.name)]
    if not hubs:
        raise DataError(f"stack has no hub {hub!r}; its hubs: {', '.join(h.name for h in config.hubs)}")
    return hubs


def backup(stack: auto.Stack, out_dir: Path, hub: Optional[str] = None,
           log: Callable[[str], None] = print) -> Path:
    """Copy every volume of the stack's hubs (or of one hub) into `out_dir`, one `<hub>-<volume>.tar.gz`
    each, with `manifest.json` (hub, volume, stack, image, time, sha256); the manifest's path."""
    config, key = eng.stack_config(stack)
    conn = connection_for(config.host)
    pairs = [(h, name) for h in _hubs(config, hub) for name in h.volumes]
    if not pairs:
        raise DataError("no hub of this stack has a volume (workhub:hubs[].volumes in Pulumi.yaml)")
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
            run_script(conn, key, backup_script(volume["docker_volume"], config.proxy_image),
                       f"{volume['hub']}/{volume['volume']}", log, data_out=sink)
        entries.append({"hub": volume["hub"], "volume": volume["volume"], "docker_volume": volume["docker_volume"],
                        "stack": stack.name, "image": volume["image"], "time": started.isoformat(timespec="seconds"),
                        "file": archive.name, "bytes": archive.stat().st_size, "sha256": _sha256(archive)})
        log(f"backup: {volume['hub']}/{volume['volume']}: {archive} ({archive.stat().st_size} bytes)")
    manifest = out_dir / MANIFEST
    manifest.write_text(json.dumps({"stack": stack.name, "host": conn.describe(), "archives": entries}, indent=2) + "\n")
    return manifest


def restore(stack: auto.Stack, source: Path, hub: Optional[str] = None, volume: Optional[str] = None,
            log: Callable[[str], None] = print) -> int:
    """Put back the volumes a backup in `source` (a directory with manifest.json, or the manifest)
    holds, each checked against its sha256 first; the hub's container stops for it and must answer
    its health path again. The number of volumes restored."""
    manifest_path = source / MANIFEST if source.is_dir() else source
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{manifest_path} is not a workhub backup manifest ({error})") from None
    if manifest.get("stack") != stack.name:
        raise DataError(f"{manifest_path} is a backup of stack {manifest.get('stack')!r}, not {stack.name!r}; "
                        "restore it into the stack it came from")
    config, key = eng.stack_config(stack)
    conn = connection_for(config.host)
    hubs = {h.name: h for h in _hubs(config, hub)}
    serving = Serving(config.publish_address, config.deploy, config.proxy_image)
    chosen = [entry for entry in manifest.get("archives", [])
              if entry["hub"] in hubs and volume in (None, entry["volume"])]
    if not chosen:
        raise DataError(f"{manifest_path} holds no archive for hub {hub or 'any'} and volume {volume or 'any'}")
    for entry in chosen:
        archive = manifest_path.parent / entry["file"]
        if _sha256(archive) != entry["sha256"]:
            raise DataError(f"{archive} does not match the sha256 in {manifest_path}; it is damaged or was changed")
        target = hubs[entry["hub"]]
        if entry["volume"] not in target.volumes:
            raise DataError(f"hub {target.name} has no volume {entry['volume']!r} in Pulumi.yaml any more")
        with archive.open("rb") as data:
            run_script(conn, key, restore_script(target, stack.name, entry["volume"], entry["sha256"],
                                                 config.host_ports[target.name], serving),
                       f"{target.name}/{entry['volume']}", log, data_in=data)
    return len(chosen)


def purge(stack: auto.Stack, log: Callable[[str], None] = print) -> None:
    """Remove every volume the stack's hubs keep on the host (after destroy: their data is gone)."""
    config, key = eng.stack_config(stack)
    run_script(connection_for(config.host), key, purge_script(stack.name), "purge", log)


def default_out_dir(stack: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return eng.STATE_DIR / "backups" / stack / stamp
