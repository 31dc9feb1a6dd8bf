"""A hub's build context: the entries Docker would send (honouring .dockerignore), their content
hash, and a reproducible archive of them to upload to the build host.

As Docker does, a symbolic link travels as a link (its target text), never as the content it points
to: nothing outside the context leaves the machine, wherever a link points, and a dangling link is
sent as it is. Directories the walk meets through a link are not entered.

The .dockerignore matcher is written here, after BuildKit's client (moby/patternmatcher's
ignorefile and MatchesUsingParentResults, fsutil's walker), because no Python package has those
rules: docker-py's `docker.utils.build.exclude_paths` ports the classic builder's older ones (a
parent directory matches a pattern only as deep as the pattern, `..` steps are dropped instead of
kept, the Dockerfile and .dockerignore are always in the context), so it would upload another set
of files than a BuildKit build uses. tests/unit/plan/test_context_buildkit.py compares this one with
BuildKit's own code over generated trees, and tests/e2e/test_e2e_context.py with the Docker engine.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import re
import stat
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

_BOM = "\ufeff"
# Go's regexp escapes (patternmatcher passes `\<letter>` to it), in Python's spelling.
_REGEX_ESCAPES = {c: "\\" + c for c in "afnrtvAbBdDsSwW"} | {"z": r"\Z"}


class DockerignoreError(ValueError):
    """A .dockerignore line Docker refuses (the build would fail with it)."""

    def __init__(self, line: int, message: str):
        super().__init__(f".dockerignore:{line}: {message}")
        self.line = line


@dataclass(frozen=True)
class Rule:
    """One .dockerignore line: a path pattern, and whether it re-includes (`!`)."""

    pattern: re.Pattern
    include: bool


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern:
    """patternmatcher's translation: `*` and `?` within one path step; `**` any number of steps
    (`**/` included), and everything at the end; `\\` escapes the next character as Go's regexp
    reads it (`\\*` is a plain `*`)."""
    rest = pattern[2:]
    if pattern.startswith("**") and not any(c in rest for c in "*?[]\\"):
        # patternmatcher's shortcut for `**<plain text>`: the path ends with the text, so `**.log`
        # is any name ending in `.log`, however deep (its regular expression would say otherwise).
        tail = "(?:.*/)?" + re.escape(rest[1:]) if rest.startswith("/") else ".*" + re.escape(rest)
        return re.compile(tail)
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
            out += ".*" if i >= len(pattern) else "(?:.*/)?"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "\\":
            # patternmatcher hands `\x` to Go's regexp as it is: `\*` is a plain `*`, but `\b` is a
            # word boundary and `\t` a tab there; a letter Go's regexp has no escape for fails.
            i += 1
            if i == len(pattern):
                raise ValueError(f"{pattern!r} is not a valid pattern (it ends in a '\\')")
            escaped = pattern[i]
            if escaped in _REGEX_ESCAPES:
                out += _REGEX_ESCAPES[escaped]
            elif escaped.isalnum():
                raise ValueError(f"{pattern!r} is not a valid pattern ('\\{escaped}' is no escape)")
            else:
                out += re.escape(escaped)
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end == -1:
                raise ValueError(f"{pattern!r} is not a valid pattern (a '[' without its ']')")
            out += "[" + pattern[i + 1:end].replace("\\", "\\\\") + "]"
            i = end
        else:
            out += re.escape(c)
        i += 1
    try:
        return re.compile(out)
    except re.error as error:
        raise ValueError(f"{pattern!r} is not a valid pattern ({error.msg})") from None


def _clean(path: str) -> str:
    """Go's filepath.Clean (posixpath keeps a leading `//`, Go does not)."""
    path = posixpath.normpath(path)
    return "/" + path.lstrip("/") if path.startswith("//") else path


def parse_dockerignore(text: str) -> list[Rule]:
    """The rules of a .dockerignore, read in BuildKit's two steps. ignorefile.ReadAll: `#` starts a
    comment only at the very start of a line, blanks around a line (and after its `!`) go, the path
    is cleaned (`a/../b` is `b`, a trailing `/` goes) and a leading `/` goes. patternmatcher.New then
    trims and cleans again and takes a leading `!` as a re-include (so `/!x` is one too). Raises
    DockerignoreError for a line Docker refuses."""
    rules = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if number == 1:
            line = line.removeprefix(_BOM)
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = _clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        pattern = _clean(("!" if invert else "") + line)
        include = pattern.startswith("!")
        if include:
            pattern = pattern[1:]
            if not pattern:
                raise DockerignoreError(number, "a `!` with no pattern after it (Docker refuses it)")
        try:
            rules.append(Rule(_regex(pattern), include))
        except ValueError as error:
            raise DockerignoreError(number, str(error)) from None
    return rules


def _match(path: str, rules: list[Rule], parent: tuple[bool, ...]) -> tuple[bool, tuple[bool, ...]]:
    """Whether `path` is excluded, and which rules it matched, given which its parent matched:
    patternmatcher's MatchesUsingParentResults, as BuildKit's walker uses it. A rule the parent
    matched matches; the others are tried on the path itself, but only while they could change the
    answer (an exclusion while not excluded, a `!` while excluded), so a rule skipped for the
    parent is not inherited by what is in it."""
    excluded = False
    matched = []
    for rule, parent_matched in zip(rules, parent):
        hit = parent_matched or (rule.include == excluded and rule.pattern.fullmatch(path) is not None)
        matched.append(hit)
        if hit:
            excluded = not rule.include
    return excluded, tuple(matched)


def ignored(path: str, rules: list[Rule]) -> bool:
    """Whether `path` (relative, with '/') is excluded, its parent directories tried first."""
    parts = path.split("/")
    matched = (False,) * len(rules)
    for i in range(len(parts)):
        excluded, matched = _match("/".join(parts[: i + 1]), rules, matched)
    return excluded


def read_rules(root: Path) -> list[Rule]:
    ignore = root / ".dockerignore"
    return parse_dockerignore(ignore.read_text(errors="replace")) if ignore.is_file() else []


def context_files(root: Path) -> list[str]:
    """Every entry of the context Docker would be sent, sorted, as relative paths with '/': regular
    files, symbolic links (not followed), and, ending in '/', the directories Docker sends that hold
    none of the other entries (an empty one; one whose content is all ignored)."""
    rules = read_rules(root)
    reincludes = any(rule.include for rule in rules)
    found: list[str] = []

    def walk(directory: Path, prefix: str, parent: tuple[bool, ...]) -> None:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        for entry in entries:
            path = prefix + entry.name
            excluded, matched = _match(path, rules, parent)
            if entry.is_dir(follow_symlinks=False):
                # An excluded directory is entered only when a `!` rule could re-include below it.
                if excluded and not reincludes:
                    continue
                before = len(found)
                walk(Path(entry.path), path + "/", matched)
                if len(found) == before and not excluded:
                    found.append(path + "/")
            elif not excluded and (entry.is_symlink() or entry.is_file(follow_symlinks=False)):
                found.append(path)

    walk(root, "", (False,) * len(rules))
    return sorted(found)


def build_files(root: Path, files: list[str], dockerfile: str) -> tuple[str, ...]:
    """The Dockerfile and .dockerignore when .dockerignore leaves them out of the context: the
    engine reads them anyway, so they go to the host too (its build leaves them out again)."""
    return tuple(path for path in (dockerfile, ".dockerignore")
                 if path not in files and (root / path).is_file() and not (root / path).is_symlink())


def _kind(full: Path) -> str:
    mode = full.lstat().st_mode
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "dir"
    return "exec" if os.access(full, os.X_OK) else "file"


def content_hash(root: Path, files: list[str]) -> str:
    """sha256 over every entry's path and kind, and a file's bytes or a link's target text."""
    digest = hashlib.sha256()
    for path in files:
        full = root / path
        kind = _kind(full)
        if kind == "link":
            digest.update(f"{path}\0link\0".encode())
            digest.update(hashlib.sha256(os.fsencode(os.readlink(full))).digest())
        elif kind == "dir":
            digest.update(f"{path}\0dir\0".encode())
        else:
            # The format the hash had before links and directories were entries: unchanged sources
            # keep their hash, so upgrading workhub rebuilds nothing.
            digest.update(f"{path}\0{int(kind == 'exec')}\0".encode())
            digest.update(hashlib.sha256(full.read_bytes()).digest())
    return digest.hexdigest()


def archive(root: Path, files: list[str]) -> bytes:
    """A gzipped tar of the entries, the same bytes for the same content (no times, owners); a link
    is stored as a link, which the host's `tar -x` makes again."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT, compresslevel=6) as tar:
        for path in files:
            full = root / path
            info = tarfile.TarInfo(path.rstrip("/"))
            info.mtime = 0
            kind = _kind(full)
            if kind == "link":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(full), 0o777
                tar.addfile(info)
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                data = full.read_bytes()
                info.size = len(data)
                info.mode = 0o755 if kind == "exec" else 0o644
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
