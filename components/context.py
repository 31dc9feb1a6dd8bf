"""A hub's build context: the files Docker would see (honouring .dockerignore), their content
hash, and a reproducible archive of them to upload to the build host."""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@dataclass(frozen=True)
class Rule:
    """One .dockerignore line: a path pattern, and whether it re-includes (`!`)."""

    pattern: re.Pattern
    include: bool


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern:
    """Docker's pattern syntax: `*` and `?` within one path step, `**` across steps."""
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i)
            if end == -1:
                out += re.escape(c)
            else:
                out += "[" + pattern[i + 1:end].replace("\\", "\\\\") + "]"
                i = end
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + "$")


def parse_dockerignore(text: str) -> list[Rule]:
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = os.path.normpath(line[1:].strip() if include else line).lstrip("/")
        if pattern in ("", "."):
            continue
        rules.append(Rule(_regex(pattern), include))
    return rules


def ignored(path: str, rules: list[Rule]) -> bool:
    """Whether `path` (relative, with '/') is excluded: the last rule matching it or a parent wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for rule in rules:
        if any(rule.pattern.match(candidate) for candidate in candidates):
            excluded = not rule.include
    return excluded


def context_files(root: Path) -> list[str]:
    """Every file of the context Docker would be sent, sorted, as relative paths with '/'."""
    ignore = root / ".dockerignore"
    rules = parse_dockerignore(ignore.read_text()) if ignore.is_file() else []
    found = []
    for directory, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(directory, root)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        # Skip whole directories a rule excludes, unless a later rule could re-include something.
        if not any(rule.include for rule in rules):
            dirs[:] = [d for d in dirs if not ignored(prefix + d, rules)]
        dirs.sort()
        for name in sorted(files):
            path = prefix + name
            if not ignored(path, rules):
                found.append(path)
    return sorted(found)


def content_hash(root: Path, files: list[str]) -> str:
    """sha256 over every file's path, mode bit for execute, and bytes."""
    digest = hashlib.sha256()
    for path in files:
        full = root / path
        executable = os.access(full, os.X_OK)
        digest.update(f"{path}\0{int(executable)}\0".encode())
        digest.update(hashlib.sha256(full.read_bytes()).digest())
    return digest.hexdigest()


def archive(root: Path, files: list[str]) -> bytes:
    """A gzipped tar of the files, the same bytes for the same content (no times, owners)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT, compresslevel=6) as tar:
        for path in files:
            full = root / path
            info = tarfile.TarInfo(path)
            data = full.read_bytes()
            info.size = len(data)
            info.mode = 0o755 if os.access(full, os.X_OK) else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
