"""What every benchmark report shares: the machine it ran on, and its section of docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from pathlib import Path


def machine_info() -> dict:
    def cmd(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    os_name = "?"
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    vpkg = Path(os.environ.get("WORKHUB_CACHE_DIR", Path.home() / ".cache/workhub")) / "verdaccio/node_modules/verdaccio/package.json"
    try:
        verdaccio = json.loads(vpkg.read_text())["version"]
    except (OSError, ValueError, KeyError):
        verdaccio = "?"
    return {"nproc": cmd("nproc"), "cpu": cpu, "memory": mem, "os": os_name, "kernel": platform.release(),
            "node": cmd("node", "--version"), "npm": cmd("npm", "--version"), "python": platform.python_version(),
            "verdaccio": verdaccio, "load_at_start": os.getloadavg()}


def write_section(path: Path, name: str, text: str) -> None:
    """Put `text` in `path` as the section `name`, between its markers, replacing what was there;
    the other benchmarks' sections stay as they are."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{begin}\n{text.strip()}\n{end}\n"
    old = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    new = pattern.sub(lambda _: block, old) if pattern.search(old) else (old + ("\n" if old else "") + block)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)
