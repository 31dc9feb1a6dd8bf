"""A stack's outputs as a user reads them at the end of an `up` (or `scripts/workhub outputs`): the
host in one line and the hubs as a short table. The whole values stay in the state
(`scripts/workhub pulumi stack output --json`)."""

from __future__ import annotations

import json
from typing import Any, Mapping

from pulumi import automation as auto

COLUMNS = ["hub", "url", "image", "how", "live"]
CHANGE_WORDS = {"create": "created", "update": "updated", "replace": "replaced", "delete": "deleted",
                "same": "unchanged"}


def aligned(rows: list[list[str]], indent: str = "  ") -> list[str]:
    """Rows of cells as lines whose columns line up."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [(indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths))).rstrip() for row in rows]


def changes(resource_changes: Mapping[str, int]) -> str:
    """{'create': 15} as '15 created'; nothing but 'same' as 'nothing changed'."""
    if not any(count for op, count in resource_changes.items() if op != "same"):
        return "nothing changed"
    return ", ".join(f"{count} {CHANGE_WORDS.get(op, op)}" for op, count in sorted(resource_changes.items())
                     if count)


def host_line(host: Any, facts: Any) -> str:
    """deploy@127.0.0.1:22 (Docker 20.10, BuildKit, 2 CPUs, 24105 MB memory, 0 MB swap, 76093 MB disk free)."""
    if not isinstance(facts, Mapping):
        return str(host)
    parts = [f"Docker {facts.get('docker_version', '?')}", "BuildKit" if facts.get("buildkit") else "no BuildKit",
             f"{facts.get('cpus', '?')} CPUs", f"{facts.get('memory_mb', '?')} MB memory",
             f"{facts.get('swap_mb', '?')} MB swap", f"{facts.get('disk_free_mb', '?')} MB disk free"]
    return f"{host} ({', '.join(parts)})"


def how(hub: Mapping[str, Any]) -> str:
    """How the hub's image came to the host: built (and in how many tries), pulled, or promoted."""
    build = hub.get("build") if isinstance(hub.get("build"), Mapping) else {}
    if hub.get("from"):
        return f"promoted from {hub['from']}"
    if build.get("pulled_from"):
        return f"pulled from {build['pulled_from']}"
    attempts = build.get("attempts")
    if attempts:
        return f"built, {attempts} attempt{'s' if attempts != 1 else ''}"
    return hub.get("mode") or "-"


def live(hub: Mapping[str, Any]) -> str:
    """The slot that serves and when it was verified healthy."""
    verified = hub.get("verified") if isinstance(hub.get("verified"), Mapping) else {}
    if not verified:
        return str(hub.get("origin") or "-")
    return " ".join(filter(None, [verified.get("slot"), f"verified {verified['verified_at']}"
                                  if verified.get("verified_at") else ""])) or "-"


def outputs_table(outputs: Mapping[str, auto.OutputValue]) -> str:
    """The stack's outputs, short: `host`, the `hubs` table, and any other output on one line."""
    values = {key: out.value for key, out in outputs.items() if not out.secret}
    lines = []
    if "host" in values:
        lines.append(f"  host: {host_line(values['host'], values.get('hostFacts'))}")
    hubs = values.get("hubs")
    if isinstance(hubs, Mapping) and hubs:
        rows = [[column.upper() for column in COLUMNS]]
        for name, hub in sorted(hubs.items()):
            hub = hub if isinstance(hub, Mapping) else {}
            rows.append([name, str(hub.get("url") or "-"), str(hub.get("image") or "-"), how(hub), live(hub)])
        lines.extend(aligned(rows))
    for key, out in sorted(outputs.items()):
        if key in ("host", "hostFacts", "hubs"):
            continue
        lines.append(f"  {key}: {'[secret]' if out.secret else json.dumps(out.value, sort_keys=True)}")
    return "\n".join(lines)
