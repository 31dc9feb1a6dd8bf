"""Hub Dockerfiles: the npm cache rules, checked on BuildKit's own parser, and a rewriter that applies them.

Every hub installs its npm packages through a BuildKit cache mount, after copying only the package
manifests, with workhub's npm settings declared as build args. `check_text` names each departure
from that pattern with its line and the fix; `conform` makes the fixes and leaves every other byte
of the file as it was.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import dockerfile

SYNTAX = "# syntax=docker/dockerfile:1"
CACHE_MOUNT = "--mount=type=cache,target=/root/.npm,sharing=locked"
BUILD_ARGS = ("NODE_OPTIONS", "NPM_CONFIG_REGISTRY", "NPM_CONFIG_FETCH_RETRIES", "NPM_CONFIG_FETCH_TIMEOUT",
              "NPM_CONFIG_FETCH_RETRY_MINTIMEOUT", "NPM_CONFIG_FETCH_RETRY_MAXTIMEOUT",
              "NPM_CONFIG_PREFER_OFFLINE")
ARGS_COMMENT = "# Build settings arrive as build args from workhub; npm reads NPM_CONFIG_* from the environment."
MANIFESTS = ("package.json", "package-lock.json")

_INSTALLS = {"ci", "install", "i"}
_NPM_VALUE_OPTIONS = {"--loglevel", "--registry", "--cache", "--workspace", "-w", "--omit", "--include"}
_NPM_CACHE = re.compile(r"^(/root|~|\$HOME|\$\{HOME\})/\.npm(/.*)?$")
_NPM_CACHE_WORD = re.compile(r"[ \t]+(?:/root|~|\$HOME|\$\{HOME\})/\.npm(?:/\S*)?(?=\s|$)")
_RUN_FLAGS = re.compile(r"^\s*RUN((?:(?:[ \t]|\\\n)+--\S+)*)(?:[ \t]|\\\n)*", re.IGNORECASE)
# A whole-context COPY is moved only past instructions that cannot read the application's sources.
_MOVABLE_PAST = {"ARG", "ENV", "LABEL", "EXPOSE", "USER", "COPY", "ADD"}
_SAFE_COMMANDS = {"apt-get", "apk", "cd", "mkdir"}
_SAFE_NPM = _INSTALLS | {"config", "cache"}


@dataclass(frozen=True)
class Violation:
    """One departure from the hub Dockerfile pattern: where it is, which rule, and the fix."""

    path: str
    line: int
    rule: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}\n    fix: {self.fix}"


class DockerfileError(Exception):
    """The file cannot be parsed, or cannot be rewritten safely; the message says what to do."""


@dataclass
class _Run:
    """A RUN instruction that installs npm packages."""

    cmd: dockerfile.Command
    installs: list[tuple[str, Optional[str]]]  # (command, directory relative to WORKDIR; None for a global install)
    mount: Optional[str]  # its --mount flag with a cache at /root/.npm, if any
    wipes: list[str]  # the commands (or their parts) that empty the npm cache


@dataclass
class _Stage:
    """One FROM block, as far as the rules care."""

    instructions: list[dockerfile.Command] = field(default_factory=list)
    workdir: str = "/"
    copied: set[tuple[str, str]] = field(default_factory=set)  # (directory, manifest) copied on its own
    args: set[str] = field(default_factory=set)  # ARGs declared before the first install
    runs: list[_Run] = field(default_factory=list)
    missing: list[tuple[_Run, str]] = field(default_factory=list)  # installs whose manifests were not copied
    context_copies: list[dockerfile.Command] = field(default_factory=list)  # `COPY . .` before the last install


def _words(command: str) -> list[str]:
    """The words of one shell command, without line continuations or comment lines."""
    text = "\n".join(line for line in command.split("\n") if not line.lstrip().startswith("#"))
    try:
        return shlex.split(text.replace("\\\n", " "))
    except ValueError:
        return text.replace("\\\n", " ").split()


def _segments(body: str) -> list[tuple[int, int]]:
    """Spans of the commands of a shell line, split at `&&`, `||`, `;`, `|` and `&` (not `2>&1`) outside quotes."""
    spans, start, quote, i = [], 0, "", 0
    while i < len(body):
        char = body[i]
        if quote:
            i += 2 if char == "\\" and quote == '"' else 1
            quote = "" if char == quote else quote
            continue
        if char in "'\"":
            quote = char
        elif char == "\\":
            i += 1
        elif char in ";|" or char == "&" and not (i and body[i - 1] in "<>" or body[i + 1:i + 2] == ">"):
            spans.append((start, i))
            start = i = i + (2 if body[i:i + 2] in ("&&", "||") else 1)
            continue
        i += 1
    return spans + [(start, len(body))]


def _commands(cmd: dockerfile.Command) -> list[list[str]]:
    """The words of each command a RUN runs (exec form, shell form or heredoc lines)."""
    if cmd.json:
        return [list(cmd.value)]
    lines = [line for doc in cmd.heredocs for line in doc.content.split("\n")] if cmd.heredocs else [cmd.value[0]]
    return [_words(line[a:b]) for line in lines for a, b in _segments(line)]


def _npm(words: list[str]) -> Optional[tuple[str, list[str], Optional[str]]]:
    """(subcommand, its other words, --prefix) when `words` run npm, else None."""
    while words and re.match(r"^\w+=", words[0]):
        words = words[1:]
    if not words or posixpath.basename(words[0]) != "npm":
        return None
    sub, rest, prefix, i = "", [], None, 1
    while i < len(words):
        word = words[i]
        if word in ("--prefix", "-C") and i + 1 < len(words):
            prefix, i = words[i + 1], i + 1
        elif word.startswith("--prefix="):
            prefix = word.split("=", 1)[1]
        elif word in _NPM_VALUE_OPTIONS:
            i += 1
        elif not sub and not word.startswith("-"):
            sub = word
        else:
            rest.append(word)
        i += 1
    return sub, rest, prefix


def _wipe(words: list[str]) -> Optional[str]:
    """The part of the command that empties the npm cache (`npm cache clean`, `rm -rf ~/.npm`), if any."""
    npm = _npm(words)
    if npm and npm[0] == "cache" and npm[1]:
        return " ".join(words) if npm[1][0] in ("clean", "clear", "rm") or {"-f", "--force"} & set(npm[1]) else None
    if words[:1] == ["rm"] and any(_NPM_CACHE.match(w) for w in words[1:]):
        return " ".join(w for w in words if w == "rm" or w.startswith("-") or _NPM_CACHE.match(w))
    return None


def _relative(path: str, workdir: str) -> str:
    """`path` relative to WORKDIR, without `./` or a trailing slash ("" for WORKDIR itself)."""
    path, base = posixpath.normpath(posixpath.join(workdir, path)), workdir.rstrip("/") + "/"
    return "" if path == workdir else path[len(base):] if path.startswith(base) else path


def _mount(flags: tuple[str, ...]) -> Optional[str]:
    """The --mount flag that mounts a cache at /root/.npm, if there is one."""
    for flag in flags:
        if flag.startswith("--mount="):
            options = dict(o.split("=", 1) if "=" in o else (o, "") for o in flag[8:].split(","))
            target = options.get("target") or options.get("dst") or options.get("destination") or ""
            if options.get("type") == "cache" and target.rstrip("/") == "/root/.npm":
                return flag
    return None


def _locked(mount: Optional[str]) -> bool:
    return mount is not None and "sharing=locked" in mount[8:].split(",")


def _install_run(cmd: dockerfile.Command, workdir: str) -> Optional[_Run]:
    """What the RUN installs, where, and what it wipes; None when it installs nothing."""
    installs, wipes, cwd = [], [], workdir
    for words in _commands(cmd):
        npm = _npm(words)
        if words[:1] == ["cd"] and len(words) > 1:
            cwd = posixpath.normpath(posixpath.join(cwd, words[1]))
        elif npm and npm[0] in _INSTALLS:
            where = None if {"-g", "--global"} & set(npm[1]) else _relative(posixpath.join(cwd, npm[2] or "."), workdir)
            installs.append((" ".join(words), where))
        elif wipe := _wipe(words):
            wipes.append(wipe)
    return _Run(cmd, installs, _mount(cmd.flags), wipes) if installs else None


def _stages(text: str, path: str) -> list[_Stage]:
    """Parse with BuildKit's parser and collect, per stage, what the rules look at."""
    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError as error:
        raise DockerfileError(f"{path}: BuildKit cannot parse it ({error})\n"
                              "    fix: correct it until `docker build` accepts it") from None
    stages, names = [_Stage()], {}
    for cmd in commands:
        kind, stage = cmd.cmd.upper(), stages[-1]
        if kind == "FROM":
            parent = names.get(cmd.value[0].lower(), _Stage())  # FROM an earlier stage starts with its files
            stage = _Stage(workdir=parent.workdir, copied=set(parent.copied))
            stages.append(stage)
            if len(cmd.value) == 3:
                names[cmd.value[2].lower()] = stage
        stage.instructions.append(cmd)
        if kind == "WORKDIR":
            stage.workdir = posixpath.normpath(posixpath.join(stage.workdir, cmd.value[0]))
        elif kind == "ARG" and not stage.runs:
            stage.args |= {v.split("=", 1)[0] for v in cmd.value}
        elif kind in ("COPY", "ADD") and not any(f.startswith("--from=") for f in cmd.flags):
            *sources, dest = cmd.value
            if any(s in (".", "./") for s in sources):
                stage.context_copies.append(cmd)
            dest = _relative(dest, stage.workdir)
            stage.copied |= {(dest, m) for m in MANIFESTS for s in sources
                             if fnmatch.fnmatch(posixpath.join(dest, m), posixpath.normpath(s))}
        elif kind == "RUN" and (run := _install_run(cmd, stage.workdir)):
            stage.runs.append(run)
            stage.missing += [(run, d) for _, d in run.installs
                              if d is not None and not {(d, m) for m in MANIFESTS} <= stage.copied]
    for stage in stages:
        last = stage.runs[-1].cmd.start_line if stage.runs else 0
        stage.context_copies = [c for c in stage.context_copies if c.start_line < last]
    return stages


def _copy_manifests(directory: str) -> str:
    if not directory:
        return "COPY package.json package-lock.json ./"
    return f"COPY {directory}/package.json {directory}/package-lock.json ./{directory}/"


def check_text(text: str, path: str = "Dockerfile") -> list[Violation]:
    """Every violation in the text of one Dockerfile, by line; an empty list means it follows the pattern."""
    found = []
    if text.split("\n", 1)[0] != SYNTAX:
        found.append(Violation(path, 1, "syntax", f"the first line is not `{SYNTAX}`, so RUN --mount may not be "
                               "understood", f"add `{SYNTAX}` as the first line"))
    for stage in _stages(text, path):
        for run in stage.runs:
            line, shown = run.cmd.start_line, ", ".join(command for command, _ in run.installs)
            if run.mount is None:
                found.append(Violation(path, line, "cache-mount", f"`{shown}` runs without the npm cache mount, "
                                       "so every build downloads every package again",
                                       f"start the instruction with `RUN {CACHE_MOUNT}`"))
            elif not _locked(run.mount):
                found.append(Violation(path, line, "cache-mount", f"the npm cache mount of `{shown}` is not "
                                       "sharing=locked, so two builds can write the cache at once",
                                       f"replace `{run.mount}` with `{CACHE_MOUNT}`"))
            for wipe in run.wipes:
                found.append(Violation(path, line, "no-cache-clean", f"`{shown}` runs with `{wipe}`, which wipes "
                                       "the npm cache the mount keeps between builds",
                                       f"drop `{wipe}` from this RUN; the mounted cache never reaches the image"))
        for run, directory in stage.missing:
            files = " and ".join(posixpath.join(directory, m) for m in MANIFESTS)
            command = next(c for c, d in run.installs if d == directory)
            found.append(Violation(path, run.cmd.start_line, "manifests-first", f"`{command}` runs before {files} "
                                   "are copied on their own", f"add `{_copy_manifests(directory)}` before it"))
        for copy in stage.context_copies:
            last = stage.runs[-1].cmd.start_line
            found.append(Violation(path, copy.start_line, "manifests-first", f"`{copy.original}` copies the whole "
                                   f"build context before the npm install at line {last}, so any source change "
                                   "reinstalls every package", f"move it after line {last}"))
        missing = [a for a in BUILD_ARGS if a not in stage.args] if stage.runs else []
        if missing:
            first = stage.runs[0].cmd.start_line
            found.append(Violation(path, first, "build-args", f"{', '.join(missing)} not declared with ARG before "
                                   "the stage's first npm install, so workhub's build args for them are dropped",
                                   "add " + ", ".join(f"`ARG {a}`" for a in missing) + f" before line {first}"))
    return sorted(found, key=lambda violation: violation.line)


def check_dockerfile(path: str | Path) -> list[Violation]:
    """Every violation in the Dockerfile at `path` (it is read, never written)."""
    return check_text(Path(path).read_text(), str(path))


def _without_wipes(command: str) -> str:
    """Shell text without the commands (or rm arguments) that empty the npm cache; "" if nothing is left."""
    spans, kept = _segments(command), []  # kept: (separator before it, command text)
    for index, (start, end) in enumerate(spans):
        segment, words = command[start:end], _words(command[start:end])
        if _wipe(words):
            if words[0] != "rm" or all(w.startswith("-") or _NPM_CACHE.match(w) for w in words[1:]):
                continue
            segment = _NPM_CACHE_WORD.sub("", segment)
        kept.append((command[spans[index - 1][1]:start] if index else "", segment))
    if not kept:
        return ""
    kept[0] = ("", kept[0][1].lstrip(" \t\\\n"))
    return "".join(separator + segment for separator, segment in kept).rstrip(" \t\\\n")


def _fix_run(raw: str, run: _Run) -> str:
    """The RUN's text with the locked npm cache mount and without its cache wipes; other flags stay."""
    match = _RUN_FLAGS.match(raw)
    assert match, raw
    head, body = raw[:match.end()], raw[match.end():]
    if run.wipes and run.cmd.heredocs:  # a script: rewrite only its lines that wipe
        lines = body.splitlines(keepends=True)
        for index, line in enumerate(lines):
            if any(_wipe(_words(line[a:b])) for a, b in _segments(line)):
                lines[index] = _without_wipes(line) + "\n" if _without_wipes(line) else ""
        body = "".join(lines)
    elif run.wipes and not run.cmd.json:
        body = _without_wipes(body) + "\n"
    if run.mount is None:
        head = head[:match.start(1)] + " " + CACHE_MOUNT + head[match.start(1):]
    elif not _locked(run.mount):
        options = [o for o in run.mount[8:].split(",") if not o.startswith("sharing=")]
        head = head.replace(run.mount, "--mount=" + ",".join(options + ["sharing=locked"]), 1)
    return head + body


def _movable(cmd: dockerfile.Command) -> bool:
    """Whether a whole-context COPY can move past `cmd` without changing what `cmd` does."""
    if cmd.cmd.upper() != "RUN":
        return cmd.cmd.upper() in _MOVABLE_PAST
    for words in _commands(cmd):
        npm = _npm(words)
        if not (words[:1] and words[0] in _SAFE_COMMANDS or npm and npm[0] in _SAFE_NPM):
            return False
    return not cmd.heredocs


def conform(text: str, path: str = "Dockerfile") -> str:
    """The Dockerfile rewritten to follow every rule; a conforming file comes back unchanged.

    Only what a rule needs changes: the syntax line; the mount flag and cache wipes of each install
    RUN; the missing ARGs and manifest COPYs, inserted just before the installs; and a whole-context
    COPY that precedes an install, moved to just after the stage's last install. Raises
    DockerfileError when that move could change what the build does.
    """
    newline = text.endswith("\n")
    text = text if newline else text + "\n"
    if text.split("\n", 1)[0] != SYNTAX:
        text = SYNTAX + "\n" + (text.split("\n", 1)[1] if re.match(r"#\s*syntax\s*=", text) else text)
    lines, stages = text.splitlines(keepends=True), _stages(text, path)
    raw = {c.start_line: "".join(lines[c.start_line - 1:c.end_line]) for s in stages for c in s.instructions}
    ends = {c.start_line: c.end_line for s in stages for c in s.instructions}
    replace: dict[int, str] = {}  # instruction start line -> its new text
    insert: dict[int, list[str]] = {}  # line -> text to insert before it
    for stage in stages:
        for run in stage.runs:
            if not _locked(run.mount) or run.wipes:
                replace[run.cmd.start_line] = _fix_run(raw[run.cmd.start_line], run)
        if not stage.runs:
            continue
        last = stage.runs[-1].cmd
        for copy in stage.context_copies:
            blocker = next((c for c in stage.instructions if copy.start_line < c.start_line <= last.start_line
                            and c not in stage.context_copies and not _movable(c)), None)
            if blocker is not None:
                raise DockerfileError(f"{path}:{copy.start_line}: `{copy.original}` cannot move after the npm "
                                      f"install at line {last.start_line}: line {blocker.start_line} may need the "
                                      "sources\n    fix: move the installs before it by hand (split a RUN that "
                                      "also builds)")
            replace[copy.start_line] = ""
            insert.setdefault(last.end_line + 1, []).append(raw[copy.start_line])
        missing = [a for a in BUILD_ARGS if a not in stage.args]
        if missing:
            comment = [ARGS_COMMENT + "\n"] if len(missing) == len(BUILD_ARGS) else []
            insert.setdefault(stage.runs[0].cmd.start_line, []).extend(
                comment + [f"ARG {a}\n" for a in missing])
        for run, directory in stage.missing:
            insert.setdefault(run.cmd.start_line, []).append(_copy_manifests(directory) + "\n")
    out, line = [], 1
    while line <= len(lines) + 1:
        out += insert.get(line, [])
        if line in replace:
            out.append(replace[line])
            line = ends[line] + 1
        else:
            out.append(lines[line - 1] if line <= len(lines) else "")
            line += 1
    text = "".join(out)
    return text if newline else text[:-1]


def declared_volumes(text: str, path: str = "Dockerfile") -> list[tuple[str, int]]:
    """The paths the final stage of an image declares as VOLUME, with the line of each (a stage
    built FROM an earlier one inherits that one's). Docker gives each such path an anonymous volume
    in every new container, unless a named volume is mounted there."""
    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError as error:
        raise DockerfileError(f"{path}: BuildKit cannot parse it ({error})") from None
    stage: dict = {"workdir": "/", "volumes": []}
    names: dict[str, dict] = {}
    for cmd in commands:
        kind = cmd.cmd.upper()
        if kind == "FROM":
            parent = names.get(cmd.value[0].lower(), {"workdir": "/", "volumes": []})
            stage = {"workdir": parent["workdir"], "volumes": list(parent["volumes"])}
            if len(cmd.value) == 3:
                names[cmd.value[2].lower()] = stage
        elif kind == "WORKDIR":
            stage["workdir"] = posixpath.normpath(posixpath.join(stage["workdir"], cmd.value[0]))
        elif kind == "VOLUME":
            stage["volumes"] += [(posixpath.normpath(posixpath.join(stage["workdir"], value)), cmd.start_line)
                                 for value in cmd.value]
    return stage["volumes"]
