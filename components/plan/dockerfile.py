"""Hub Dockerfiles: the npm cache rules, checked on BuildKit's own parser, and a rewriter that applies them.

Every hub installs its npm packages through a BuildKit cache mount, after copying only the package
manifests of the folder it installs in, with workhub's npm settings declared as build args.
`check_text` names each departure from that pattern with its line and the fix (and, as warnings,
the network steps a weak link fails on next); `conform` makes the fixes and leaves every other
byte of the file as it was.

The parser is `dockerfile`, a binding of BuildKit's own Go parser, so a file parses here exactly
when `docker build` parses it (heredocs, continuations, flags, exec form). dockerfile-parse, the
other well-kept Python parser, was considered and not taken: it re-implements the syntax with its
own regular expressions (no heredocs), so it can disagree with Docker. What no library does is
the reasoning over that syntax tree (which folder an install runs in, what a COPY brings where,
what a mount hides); that is written here.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Iterable, Optional

import dockerfile

from components.config.models import DEFAULT_BASE_IMAGE
from components.plan.context import context_files
from components.render.host.build import RETRY_MOUNT, RETRY_SECRET

SYNTAX = "# syntax=docker/dockerfile:1"
CACHE_MOUNT = "--mount=type=cache,target=/root/.npm,sharing=locked"  # root's; other users: _Cache.mount
BUILD_ARGS = ("NODE_OPTIONS", "NPM_CONFIG_REGISTRY", "NPM_CONFIG_FETCH_RETRIES", "NPM_CONFIG_FETCH_TIMEOUT",
              "NPM_CONFIG_FETCH_RETRY_MINTIMEOUT", "NPM_CONFIG_FETCH_RETRY_MAXTIMEOUT",
              "NPM_CONFIG_PREFER_OFFLINE")
ARGS_COMMENT = "# Build settings arrive as build args from workhub; npm reads NPM_CONFIG_* from the environment."
MANIFESTS = ("package.json", "package-lock.json")
LOCKFILES = ("package-lock.json", "npm-shrinkwrap.json")
MANIFEST_NAMES = ("package.json",) + LOCKFILES
APT_MOUNTS = ("--mount=type=cache,target=/var/cache/apt,sharing=locked "
              "--mount=type=cache,target=/var/lib/apt,sharing=locked")
APK_MOUNT = "--mount=type=cache,target=/etc/apk/cache,sharing=locked"

_INSTALLS = {"ci", "install", "i"}
_NPM_VALUE_OPTIONS = {"--loglevel", "--registry", "--cache", "--workspace", "-w", "--omit", "--include"}
_NPM_CACHE = re.compile(r"^(/root|/home/[^/\s]+|~|\$HOME|\$\{HOME\})/\.npm(/.*)?$")
_NPM_CACHE_WORD = re.compile(r"[ \t]+(?:/root|/home/[^/\s]+|~|\$HOME|\$\{HOME\})/\.npm(?:/\S*)?(?=\s|$)")
# The users every stage knows: root, and the official node images' `node` (uid and gid 1000).
# name -> (uid, gid, home); a stage adds those its RUNs create with useradd/adduser.
_USERS = {"root": ("0", "0", "/root"), "node": ("1000", "1000", "/home/node")}
_USER_VALUE_OPTIONS = {"-u", "--uid", "-g", "--gid", "-G", "--groups", "--ingroup", "-d", "--home-dir", "--home",
                       "-h", "-s", "--shell", "-c", "--comment", "--gecos", "-k", "--skel", "-K", "--key", "-e",
                       "--expiredate", "-f", "--inactive", "-p", "--password", "-b", "--base-dir", "-R", "--root",
                       "-P", "--prefix", "-Z", "--selinux-user", "--firstuid", "--lastuid"}
_RUN_FLAGS = re.compile(r"^\s*RUN((?:(?:[ \t]|\\\n)+--\S+)*)(?:[ \t]|\\\n)*", re.IGNORECASE)
# BuildKit's parser directives: leading comment lines `# key=value`, until the first other line.
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
# docker/dockerfile releases that keep RUN --mount in the stable channel: 1, 1.N and 1.N.M with
# N >= 2 (1.2.0 moved mounts there), each also as -labs, by name or pinned by digest.
_FRONTEND = re.compile(r"^(?:docker\.io/)?docker/dockerfile(?:-upstream)?:1(?:\.(\d+)(?:\.\d+)?)?(?:-labs)?"
                       r"(?:@sha256:[0-9a-f]{64})?$")
_GLOB = re.compile(r"[*?\[]")
# A sources COPY is moved only past instructions that cannot read the application's sources.
_MOVABLE_PAST = {"ARG", "ENV", "LABEL", "EXPOSE", "USER", "COPY", "ADD", "WORKDIR"}
_SAFE_COMMANDS = {"apt-get", "apk", "cd", "mkdir", "set"}
_SAFE_NPM = _INSTALLS | {"config", "cache"}
# OS package managers: the install subcommand, and the cache directories a mount may keep.
_OS_INSTALLS = {"apt-get": ("install", ("/var/cache/apt", "/var/cache/apt/archives")),
                "apt": ("install", ("/var/cache/apt", "/var/cache/apt/archives")),
                "apk": ("add", ("/etc/apk/cache", "/var/cache/apk"))}

# When each Node.js release line stopped getting fixes (its end of life), from the Node.js release
# schedule: schedule.json of github.com/nodejs/Release (lines 4 to 26, as published in 2026). A line
# missing here (a newer one) is not warned about. The LTS lines' code names tag images too.
NODE_END_OF_LIFE = {
    4: date(2018, 4, 30), 5: date(2016, 6, 30), 6: date(2019, 4, 30), 7: date(2017, 6, 30),
    8: date(2019, 12, 31), 9: date(2018, 6, 30), 10: date(2021, 4, 30), 11: date(2019, 6, 1),
    12: date(2022, 4, 30), 13: date(2020, 6, 1), 14: date(2023, 4, 30), 15: date(2021, 6, 1),
    16: date(2023, 9, 11), 17: date(2022, 6, 1), 18: date(2025, 4, 30), 19: date(2023, 6, 1),
    20: date(2026, 4, 30), 21: date(2024, 6, 1), 22: date(2027, 4, 30), 23: date(2025, 6, 1),
    24: date(2028, 4, 30), 25: date(2026, 6, 1), 26: date(2029, 4, 30),
}
NODE_CODENAMES = {"argon": 4, "boron": 6, "carbon": 8, "dubnium": 10, "erbium": 12, "fermium": 14,
                  "gallium": 16, "hydrogen": 18, "iron": 20, "jod": 22, "krypton": 24}
# The official image's tags that name a line: 20, 20.11, 20.11.1, iron, each with a variant
# (-alpine, -bookworm-slim); `node`, `lts`, `current` and `latest` move on by themselves.
_NODE_TAG = re.compile(r"^(?:(\d+)(?:\.\d+){0,2}|([a-z]+))(-[a-z0-9.-]+)?$")


@dataclass(frozen=True)
class Violation:
    """One departure from the hub Dockerfile pattern: where it is, which rule, and the fix.
    A warning (severity "warning") does not stop a deploy; it names a step likely to fail."""

    path: str
    line: int
    rule: str
    message: str
    fix: str
    severity: str = "error"

    def __str__(self) -> str:
        kind = "warning: " if self.severity == "warning" else ""
        return f"{self.path}:{self.line}: {kind}{self.message}\n    fix: {self.fix}"


class DockerfileError(Exception):
    """The file cannot be parsed, or cannot be rewritten safely; the message says what to do."""


def _context_path(source: str) -> str:
    """A COPY source as a path in the build context ("" for the context itself)."""
    path = posixpath.normpath("/" + source).lstrip("/")  # a leading / or .. cannot leave the context
    return "" if path == "." else path


class _Context:
    """The build context's files as Docker sees them (honouring .dockerignore), to tell files from
    folders, expand globs and know which manifests exist. Unknown (None): every named source is
    assumed to exist, and one is a folder when it is `.`, ends with `/` or has no extension."""

    def __init__(self, root: Optional[Path]):
        entries = context_files(root) if root is not None else []
        self.files: Optional[set[str]] = {e for e in entries if not e.endswith("/")} if root is not None else None
        # Directories: those of the files, and the empty ones the context lists as `dir/`.
        self.dirs = {""} | {posixpath.dirname(f) for f in self.files or ()} | {
            e.rstrip("/") for e in entries if e.endswith("/")}
        for d in list(self.dirs):
            while d:
                d = posixpath.dirname(d)
                self.dirs.add(d)

    def expand(self, source: str) -> list[tuple[str, bool]]:
        """The (context path, is a folder) pairs a COPY source names."""
        path = _context_path(source)
        if self.files is None:
            base = posixpath.basename(path)
            folder = not path or source.endswith("/") or not _GLOB.search(base) and "." not in base
            return [(path, folder)]
        if _GLOB.search(path):
            depth = path.count("/")
            return sorted((p, p in self.dirs) for p in self.files | self.dirs
                          if p and p.count("/") == depth and fnmatch.fnmatchcase(p, path))
        return [(path, path in self.dirs)] if path in self.dirs or path in self.files else []

    def has(self, path: str) -> bool:
        return self.files is None or path in self.files


@dataclass(frozen=True)
class _Landing:
    """Where a COPY from the build context puts a context file (or a folder's contents)."""

    cmd: dockerfile.Command
    source: str  # context path ("" for the whole context)
    target: str  # absolute path in the image: the file, or the folder that receives the contents
    folder: bool
    sources: bool = False  # its COPY brings sources (a folder, a glob of them, files beside manifests)

    @property
    def manifest(self) -> bool:
        """A package manifest (a glob counts when it names manifests and no source file)."""
        name = posixpath.basename(self.target)
        return not self.folder and any(fnmatch.fnmatchcase(m, name) for m in MANIFEST_NAMES) and \
            not any(fnmatch.fnmatchcase(other, name) for other in ("index.js", "tsconfig.json"))


@dataclass(frozen=True)
class _Cache:
    """Where npm caches for an install: its cache folder (None when the file does not say), and the
    user the install runs as, as USER names it, with its uid and gid where known."""

    folder: Optional[str]
    user: str = "root"
    uid: Optional[str] = "0"
    gid: Optional[str] = "0"
    assumed: str = ""  # what was assumed to find the folder, said in the messages

    @property
    def who(self) -> str:
        """The user as a message names it: `node (uid 1000)`, `uid 1001`, `app`."""
        name = self.user.partition(":")[0]
        return f"uid {name}" if name.isdigit() else f"{name} (uid {self.uid})" if self.uid else name

    @property
    def root(self) -> bool:
        return self.uid == "0"

    def mount(self, flag: Optional[str] = None) -> str:
        """The locked cache mount at the folder, owned by the user (a mount is root's unless it says
        otherwise, and only root could write it): `flag` (a mount already there) with those options
        set, or a new one (with placeholders for a uid and gid the file does not say)."""
        owned = not self.root and self.uid is not None
        options = [o for o in flag[8:].split(",") if not o.startswith(("sharing=",) + (("uid=", "gid=") * owned))] \
            if flag else ["type=cache", f"target={self.folder}"]
        if owned:
            options += [f"uid={self.uid}"] + ([f"gid={self.gid}"] if self.gid else [])
        elif not self.root and not flag:
            options += [f"uid=<uid of {self.user}>", f"gid=<gid of {self.user}>"]
        return "--mount=" + ",".join(options + ["sharing=locked"])


@dataclass
class _Run:
    """A RUN instruction that installs npm packages."""

    cmd: dockerfile.Command
    installs: list[tuple[str, Optional[str]]]  # (command, absolute install folder; None for a global install)
    mount: Optional[str]  # its --mount flag with a cache where npm caches, if any
    cache: _Cache  # where npm caches, as whom
    stray: Optional[str]  # with no such mount: a cache mount for npm elsewhere, which npm never uses
    hiding: list[tuple[str, str]]  # (flag, target) of cache/tmpfs mounts over an install folder's packages
    wipes: list[str]  # the commands (or their parts) that empty the npm cache
    retry: bool = False  # an install runs under workhub's retry (`eval "$WORKHUB_RETRY" npm ci`)
    retry_mount: bool = False  # it mounts the secret the retry comes as (RETRY_MOUNT)


@dataclass
class _Stage:
    """One FROM block, as far as the rules care."""

    instructions: list[dockerfile.Command] = field(default_factory=list)
    workdir: str = "/"
    first_workdir: str = ""
    landings: list[_Landing] = field(default_factory=list)  # COPY/ADD from the context, in order
    dirs: set[str] = field(default_factory=lambda: {"/"})  # folders known to exist in the image
    args: set[str] = field(default_factory=set)  # ARGs declared before the first install
    runs: list[_Run] = field(default_factory=list)
    workdirs: dict[int, str] = field(default_factory=dict)  # instruction start line -> WORKDIR there
    user: str = "root"  # as the last USER names it
    env: dict[str, str] = field(default_factory=dict)  # ENV's HOME and npm_config_cache (lower case) so far
    users: dict[str, tuple[str, str, str]] = field(default_factory=lambda: dict(_USERS))  # name -> uid, gid, home


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


# `eval "$WORKHUB_RETRY" npm ci`: the install under workhub's own retry (components/render/host/install_retry/),
# which a build on the host gives as a BuildKit secret where the RUN mounts it (RETRY_MOUNT).
RETRY_PREFIX = ("eval", "$WORKHUB_RETRY")
RETRY_ARG = "WORKHUB_RETRY"
_RETRY_WORDS = (RETRY_PREFIX, ("eval", "${WORKHUB_RETRY}"))


def _program(words: list[str]) -> list[str]:
    """The words without leading `VAR=value` assignments, `sudo` and workhub's retry prefix."""
    while words and (re.match(r"^\w+=", words[0]) or words[0] == "sudo"
                     or tuple(words[:2]) in _RETRY_WORDS):
        words = words[1:] if words[0] != "eval" else words[2:]
    return words


def _npm(words: list[str]) -> Optional[tuple[str, list[str], Optional[str]]]:
    """(subcommand, its other words, --prefix) when `words` run npm, else None."""
    words = _program(words)
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


def _absolute(path: str, workdir: str) -> str:
    return posixpath.normpath(posixpath.join(workdir, path))


def _under(path: str, folder: str) -> bool:
    """Whether `path` is `folder` or inside it (both absolute and normalized)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _relative(path: str, workdir: str) -> str:
    """An absolute image path as COPY would name it under WORKDIR: `./x/`, `./`, or absolute."""
    if path == workdir:
        return "./"
    return "./" + path[len(workdir.rstrip("/")) + 1:] + "/" if _under(path, workdir) else path.rstrip("/") + "/"


def _mounts(flags: tuple[str, ...], workdir: str) -> list[tuple[str, dict[str, str], str]]:
    """Each --mount flag with its options and its absolute target (BuildKit resolves a relative
    target against WORKDIR)."""
    found = []
    for flag in flags:
        if flag.startswith("--mount="):
            options = dict(o.split("=", 1) if "=" in o else (o, "") for o in flag[8:].split(","))
            target = options.get("target") or options.get("dst") or options.get("destination") or ""
            found.append((flag, options, _absolute(target, workdir) if target else ""))
    return found


def _cache_at(mounts: list[tuple[str, dict[str, str], str]], targets: Iterable[str]) -> Optional[str]:
    """The flag of the cache mount at one of `targets`, if there is one."""
    return next((flag for flag, options, target in mounts if options.get("type") == "cache" and target in targets),
                None)


def _locked(mount: Optional[str]) -> bool:
    return mount is not None and "sharing=locked" in mount[8:].split(",")


def _option(words: list[str], name: str) -> Optional[str]:
    """The value of a command's `--name VALUE` or `--name=VALUE` option, if it has one."""
    for index, word in enumerate(words):
        if word == name and index + 1 < len(words):
            return words[index + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def _created_user(words: list[str]) -> Optional[tuple[str, tuple[str, str, str]]]:
    """(name, (uid, gid, home)) of the user a `useradd`/`adduser` command creates ("" when it does not
    say): its home is /home/<name> unless it names another."""
    words = _program(words)
    if not words or posixpath.basename(words[0]) not in ("useradd", "adduser"):
        return None
    names, index = [], 1
    while index < len(words):
        word = words[index]
        index += 2 if word in _USER_VALUE_OPTIONS else 1
        if not word.startswith("-"):
            names.append(word)
    if not names:
        return None
    uid = _option(words, "-u") or _option(words, "--uid") or ""
    gid = _option(words, "-g") or _option(words, "--gid") or ""
    home = _option(words, "-d") or _option(words, "--home-dir") or _option(words, "--home") or \
        (_option(words, "-h") if words[0].endswith("adduser") else None) or f"/home/{names[0]}"
    return names[0], (uid if uid.isdigit() else "", gid if gid.isdigit() else "", home)


def _who(stage: _Stage) -> tuple[Optional[str], Optional[str], Optional[str], str]:
    """(uid, gid, home, what was assumed) of the user the stage's RUNs run as now."""
    name, _, group = stage.user.partition(":")
    assumed = ""
    if name.isdigit():
        known = next((user for user in stage.users.values() if user[0] == name), None)
        uid, gid, home = name, (known[1] or None) if known else None, known[2] if known else None
    elif name in stage.users:
        uid, gid, home = (value or None for value in stage.users[name])
    else:  # a user made some other way (a base image's, a script's): useradd's and adduser's default home
        uid, gid, home = None, None, f"/home/{name}"
        assumed = f"workhub takes {name}'s home to be /home/{name}, where useradd -m and adduser put it"
    if group:
        gid = group if group.isdigit() else (stage.users.get(group, ("", "", ""))[1] or None)
    if "HOME" in stage.env:
        home, assumed = stage.env["HOME"], ""
    return uid, gid, home, assumed


def _cache(stage: _Stage, words: list[str], cwd: str) -> _Cache:
    """Where npm caches when it runs `words` in `cwd`: its --cache, else npm_config_cache (the
    command's own, then ENV's), else the .npm folder in the user's home."""
    uid, gid, home, assumed = _who(stage)
    setting = _option(words, "--cache") or next(
        (w.split("=", 1)[1] for w in words if re.match(r"(?i)^npm_config_cache=", w)), None) or \
        stage.env.get("npm_config_cache")
    if setting is None:
        folder = posixpath.join(home, ".npm") if home else None
    else:
        expanded = re.sub(r"^~(?=/|$)|\$\{HOME\}|\$HOME\b", lambda _: home or "$", setting)
        folder = None if "$" in expanded else _absolute(expanded, cwd)
        assumed = assumed if "HOME" in setting or setting.startswith("~") else ""
    return _Cache(folder, stage.user, uid, gid, assumed)


def _npm_like(target: str) -> bool:
    """Whether a cache mount's target looks meant for npm's cache (/root/.npm, /tmp/npm-cache)."""
    return "npm" in posixpath.basename(target) or posixpath.basename(target) == "_cacache"


def _install_run(cmd: dockerfile.Command, stage: _Stage) -> Optional[_Run]:
    """What the RUN installs, where, what its mounts hide and what it wipes; None when it installs nothing."""
    installs, wipes, workdir, cwd, cache = [], [], stage.workdir, stage.workdir, None
    for words in _commands(cmd):
        npm = _npm(words)
        if words[:1] == ["cd"] and len(words) > 1:
            cwd = _absolute(words[1], cwd)
        elif npm and npm[0] in _INSTALLS:
            where = None if {"-g", "--global"} & set(npm[1]) else _absolute(npm[2] or ".", cwd)
            installs.append((" ".join(words[2:] if tuple(words[:2]) in _RETRY_WORDS else words), where))
            cache = cache or _cache(stage, words, cwd)
        elif wipe := _wipe(words):
            wipes.append(wipe)
    if not installs or cache is None:
        return None
    mounts = _mounts(cmd.flags, workdir)
    folders = [d for _, d in installs if d is not None]
    # A cache (or tmpfs) mount over an install folder's node_modules, or over the folder itself,
    # keeps what npm installs there out of the image: the app ships without its packages.
    hiding = [(flag, target) for flag, options, target in mounts if options.get("type") in ("cache", "tmpfs")
              and target and any(_under(target, d + "/node_modules") or _under(d, target) for d in folders)]
    retry = any(tuple(words[:2]) in _RETRY_WORDS for words in _commands(cmd))
    retry_mount = any(options.get("type") == "secret" and options.get("id") == RETRY_SECRET for _, options, _ in mounts)
    hidden = {flag for flag, _ in hiding}
    npm_like = [flag for flag, options, target in mounts if options.get("type") == "cache" and _npm_like(target)
                and flag not in hidden]
    # Where the file does not say where npm caches, any mount meant for it is taken as right.
    mount = _cache_at(mounts, (cache.folder,)) if cache.folder else next(iter(npm_like), None)
    stray = next((flag for flag in npm_like if flag != mount), None) if mount is None else None
    return _Run(cmd, installs, mount, cache, stray, hiding, wipes, retry, retry_mount)


def _parse(text: str, path: str) -> list[dockerfile.Command]:
    try:
        return dockerfile.parse_string(text)
    except dockerfile.GoParseError as error:
        raise DockerfileError(f"{path}: BuildKit cannot parse it ({error})\n"
                              "    fix: correct it until `docker build` accepts it") from None


def _landings(cmd: dockerfile.Command, stage: _Stage, context: _Context) -> list[_Landing]:
    """Where a COPY/ADD from the build context puts what it copies (Docker's rules: a folder's
    contents go into the destination; a file goes into it when it is a folder, else becomes it)."""
    if cmd.heredocs or any(f.startswith("--from=") for f in cmd.flags):
        return []
    *sources, dest = cmd.value
    sources = [s for s in sources if not re.match(r"^[a-z][a-z0-9+.-]*://|^git@", s)]  # ADD of a URL
    target = _absolute(dest, stage.workdir)
    into = dest.endswith("/") or dest in (".", "..") or len(sources) > 1 or target in stage.dirs \
        or any(_GLOB.search(s) for s in sources)
    found, globbed = [], set()
    for source in sources:
        for path, folder in context.expand(source):
            found.append(_Landing(cmd, path, target if folder or not into else
                                  posixpath.join(target, posixpath.basename(path)), folder))
            globbed |= {len(found) - 1} if _GLOB.search(source) else set()
    others = [index for index, landing in enumerate(found) if not landing.manifest]
    # Sources: a folder; files a glob picks (they change as the sources do); files beside manifests.
    if any(found[i].folder or i in globbed for i in others) or others and len(others) < len(found):
        found = [dataclasses.replace(landing, sources=True) for landing in found]
    return found


def _stages(text: str, path: str, context: _Context) -> list[_Stage]:
    """Parse with BuildKit's parser and collect, per stage, what the rules look at."""
    stages, names = [_Stage()], {}
    for cmd in _parse(text, path):
        kind, stage = cmd.cmd.upper(), stages[-1]
        if kind == "FROM":
            parent = names.get(cmd.value[0].lower(), _Stage())  # FROM an earlier stage starts with its files
            stage = _Stage(workdir=parent.workdir, first_workdir=parent.first_workdir,
                           landings=list(parent.landings), dirs=set(parent.dirs), user=parent.user,
                           env=dict(parent.env), users=dict(parent.users))
            stages.append(stage)
            if len(cmd.value) == 3:
                names[cmd.value[2].lower()] = stage
        stage.instructions.append(cmd)
        stage.workdirs[cmd.start_line] = stage.workdir
        if kind == "WORKDIR":
            stage.workdir = _absolute(cmd.value[0], stage.workdir)
            stage.first_workdir = stage.first_workdir or stage.workdir
            stage.dirs.add(stage.workdir)
        elif kind == "ARG":
            stage.args |= {v.split("=", 1)[0] for v in cmd.value} if not stage.runs else set()
            stage.env.update(("npm_config_cache", (_words(v.split("=", 1)[1]) or [""])[0]) for v in cmd.value
                             if re.match(r"(?i)^npm_config_cache=", v))
        elif kind in ("COPY", "ADD"):
            landed = _landings(cmd, stage, context)
            stage.landings += landed
            stage.dirs |= {l.target if l.folder else posixpath.dirname(l.target) for l in landed}
        elif kind == "USER":
            stage.user = cmd.value[0]
        elif kind == "ENV":
            for key, value in zip(cmd.value[::2], cmd.value[1::2]):
                key = key.lower() if key.lower() == "npm_config_cache" else key
                if key in ("HOME", "npm_config_cache"):
                    stage.env[key] = (_words(value) or [""])[0]
        elif kind == "RUN" and (run := _install_run(cmd, stage)):
            stage.runs.append(run)
        if kind == "RUN":
            stage.users.update(user for words in _commands(cmd) if (user := _created_user(words)))
    return stages


def _folders(stage: _Stage) -> list[str]:
    """The folders the stage installs npm packages in, deepest first."""
    found = {d for run in stage.runs for _, d in run.installs if d is not None}
    return sorted(found, key=lambda d: (-d.count("/"), d))


def _context_dir(stage: _Stage, folder: str) -> str:
    """The context folder whose files make up the image folder `folder`: from a manifest copied
    there, else from a COPY that brings it (or an enclosing folder), else its path under WORKDIR."""
    for landing in stage.landings:
        if not landing.folder and posixpath.dirname(landing.target) == folder \
                and posixpath.basename(landing.target) in MANIFEST_NAMES:
            return posixpath.dirname(landing.source)
    for landing in stage.landings:
        if landing.folder and _under(folder, landing.target):
            rest = folder[len(landing.target):].strip("/")
            return _context_path(posixpath.join(landing.source, rest))
    base = stage.first_workdir or "/"
    return folder[len(base.rstrip("/")) + 1:] if _under(folder, base) and folder != base else \
        ("" if folder == base else folder.lstrip("/"))


def _lands(stage: _Stage, target: str, before: int) -> bool:
    """Whether a COPY of files (not of a folder, which brings sources too) before line `before`
    puts a context file at `target` (a manifest's image path)."""
    return any(landing.cmd.start_line < before and not landing.folder and not landing.sources
               and fnmatch.fnmatchcase(target, landing.target) for landing in stage.landings)


def _manifests(stage: _Stage, folder: str, context: _Context) -> list[str]:
    """The context paths of the manifests `folder`'s install needs: package.json and each lockfile the
    context has there (without a context: package.json and package-lock.json); [] when the context
    has no package.json there."""
    source = _context_dir(stage, folder)
    if context.files is None:
        return [posixpath.join(source, n) for n in MANIFESTS]
    found = [posixpath.join(source, n) for n in MANIFEST_NAMES if posixpath.join(source, n) in context.files]
    return found if found and posixpath.basename(found[0]) == "package.json" else []


def _missing(stage: _Stage, run: _Run, folder: str, context: _Context) -> list[str]:
    """The manifests of `folder` not copied on their own before `run`, as context paths."""
    line = run.cmd.start_line
    if context.files is None:  # any lockfile will do
        if _lands(stage, posixpath.join(folder, "package.json"), line) and \
                any(_lands(stage, posixpath.join(folder, n), line) for n in LOCKFILES):
            return []
        return _manifests(stage, folder, context)
    return [m for m in _manifests(stage, folder, context)
            if not _lands(stage, posixpath.join(folder, posixpath.basename(m)), line)]


def _installs_without_package_json(stages: list[_Stage], context: _Context) -> list[tuple[_Run, str, str, str]]:
    """(run, command, folder, context path) of each install whose folder has no package.json in the
    context: the build fails there at once, and no COPY can fix it."""
    found = []
    for stage in stages:
        for run in stage.runs:
            for command, folder in run.installs:
                if folder is not None and context.files is not None and not _manifests(stage, folder, context):
                    found.append((run, command, folder, posixpath.join(_context_dir(stage, folder), "package.json")))
    return found


def _source_copies(stage: _Stage) -> list[tuple[dockerfile.Command, _Run, list[str], bool]]:
    """Each COPY of this stage that brings sources into (or around) an install folder before an
    install: (the COPY, the last install after it, the context folders of its sources, whether it
    brings manifests too).
    Any source change then re-runs every install after it (Docker's layer cache), whichever
    folder it installs in."""
    folders, own = _folders(stage), {id(c) for c in stage.instructions}
    found: dict[int, tuple[dockerfile.Command, _Run, list[str], bool]] = {}
    for landing in stage.landings:
        if not landing.sources or id(landing.cmd) not in own or landing.manifest:
            continue
        brought = [d for d in folders if _under(landing.target, d) or landing.folder and _under(d, landing.target)]
        later = [run for run in stage.runs if run.cmd.start_line > landing.cmd.start_line]
        if brought and later:
            line = landing.cmd.start_line
            mixed = any(other.manifest for other in stage.landings if other.cmd is landing.cmd)
            known = found.get(line, (landing.cmd, later[-1], [], mixed))[2]
            folder = landing.source if landing.folder else posixpath.dirname(landing.source)
            found[line] = (landing.cmd, later[-1], sorted(set(known) | {folder + "/" if folder else "./"}), mixed)
    return [found[line] for line in sorted(found)]


def _syntax_problem(text: str, cmds: list[dockerfile.Command]) -> Optional[tuple[int, str, str]]:
    """(line, message, fix) when the syntax directive does not select a docker/dockerfile:1 release
    with RUN --mount (and, when the file uses heredocs, with heredocs: 1.4 or newer)."""
    found = None
    for number, line in enumerate(text.split("\n"), 1):
        match = _DIRECTIVE.match(line)
        if not match:
            break
        if match.group(1).lower() == "syntax":
            found = (number, match.group(2))
    if found is None:
        return 1, f"the file has no `{SYNTAX}` line, so RUN --mount may not be understood", \
            f"add `{SYNTAX}` as the first line"
    number, value = found
    match = _FRONTEND.match(value)
    minor = int(match.group(1)) if match and match.group(1) else None
    if match and (minor is None or minor >= 4 or minor >= 2 and not any(c.heredocs for c in cmds)):
        return None
    if not match:
        why = "is not a docker/dockerfile:1 release, so RUN --mount may not be understood"
    elif minor < 2:
        why = "selects a Dockerfile frontend older than 1.2, which has no RUN --mount"
    else:
        why = "selects a Dockerfile frontend older than 1.4, which has no heredocs"
    return number, f"`syntax={value}` {why}", f"replace line {number} with `{SYNTAX}`"


def image_ref(ref: str) -> str:
    """An image reference in one spelling: without docker.io/library/, with a tag."""
    ref = re.sub(r"^(?:docker\.io|index\.docker\.io)/", "", ref)
    ref = ref[len("library/"):] if ref.startswith("library/") else ref
    return ref if "@" in ref or ":" in ref.rsplit("/", 1)[-1] else ref + ":latest"


def pulled_images(text: str, path: str) -> list[tuple[dockerfile.Command, str]]:
    """Each FROM of the Dockerfile `text` (named `path` in a parse error) that pulls an image, with
    the image (_base_images); DockerfileError when BuildKit cannot parse it."""
    return _base_images(_parse(text, path))


def _base_images(cmds: list[dockerfile.Command]) -> list[tuple[dockerfile.Command, str]]:
    """Each FROM that pulls an image (not an earlier stage, not scratch), with the image as its
    global ARG defaults make it; a FROM whose image depends on an ARG without a default is left out."""
    defaults, names, found, seen_from = {}, set(), [], False
    for cmd in cmds:
        kind = cmd.cmd.upper()
        if kind == "ARG" and not seen_from:
            defaults.update(v.split("=", 1) for v in cmd.value if "=" in v)
        elif kind == "FROM":
            seen_from = True
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults.get(m.group(1) or m.group(2), "\0"),
                           cmd.value[0])
            if image.lower() not in names and image.lower() != "scratch" and "\0" not in image:
                found.append((cmd, image))
            if len(cmd.value) == 3:
                names.add(cmd.value[2].lower())
    return found


def _os_installs(cmd: dockerfile.Command) -> list[tuple[str, str]]:
    """(package manager, command) of each OS package install the RUN makes without a cache mount
    for that manager's downloads."""
    mounts = _mounts(cmd.flags, "/")
    found = []
    for words in _commands(cmd):
        words = _program(words)
        if not words or posixpath.basename(words[0]) not in _OS_INSTALLS:
            continue
        manager = posixpath.basename(words[0])
        sub, caches = _OS_INSTALLS[manager]
        if sub in words[1:] and (_cache_at(mounts, caches) is None or "--no-cache" in words):
            found.append((manager, " ".join(words)))
    return found


def node_line(image: str) -> Optional[int]:
    """The Node.js release line an image of the official `node` repository (or a mirror of it under
    the same name) is tagged with: 20 for node:20-alpine, node:20.11.1 or node:iron-bookworm-slim;
    None for another image, or a tag that moves from line to line (node:lts, node:current)."""
    name, _, tag = image.split("@", 1)[0].rpartition(":")
    if not name or "/" in tag or posixpath.basename(name) != "node":
        return None
    match = _NODE_TAG.match(tag)
    if not match:
        return None
    return int(match.group(1)) if match.group(1) else NODE_CODENAMES.get(match.group(2))


def supported_node_line(today: date, *preferred: Optional[int]) -> int:
    """The line to move to: the first of `preferred` that is still supported, else the LTS line
    (even) supported longest."""
    for line in preferred:
        if line is not None and NODE_END_OF_LIFE.get(line, date.max) > today:
            return line
    return max((line for line in NODE_END_OF_LIFE if line % 2 == 0), key=NODE_END_OF_LIFE.__getitem__)


def _on_line(image: str, line: int) -> str:
    """The image with its tag moved to `line`, its variant kept: node:20.11-alpine -> node:24-alpine."""
    name, _, tag = image.split("@", 1)[0].rpartition(":")
    match = _NODE_TAG.match(tag)
    variant = match.group(3) if match and match.group(3) else ""
    return f"{name}:{line}{variant}"


def _end_of_life(cmds: list[dockerfile.Command], path: str, base_image: Optional[str],
                 today: date) -> list[Violation]:
    """A FROM of a Node.js line whose support has ended: its security fixes have stopped."""
    found = []
    # The project's base image's line, else workhub's default's.
    preferred = (node_line(base_image) if base_image else None, node_line(DEFAULT_BASE_IMAGE))
    for cmd, image in _base_images(cmds):
        line = node_line(image)
        end = NODE_END_OF_LIFE.get(line) if line is not None else None
        if end is None or end > today:
            continue
        target = supported_node_line(today, *preferred)
        to = _on_line(image, target)
        ours = base_image and image_ref(image) == image_ref(base_image)
        also = " and workhub:baseImage (in Pulumi.yaml)" if ours else ""
        found.append(Violation(
            path, cmd.start_line, "node-end-of-life", f"`FROM {image}` runs Node.js {line}, whose support ended on "
            f"{end.isoformat()} (the Node.js release schedule): it gets no more security fixes",
            f"start FROM {to} (Node.js {target}, supported until {NODE_END_OF_LIFE[target].isoformat()}) in this "
            f"file{also}, then build and test the hub on it", "warning"))
    return found


def _warnings(cmds: list[dockerfile.Command], path: str, base_image: Optional[str],
              today: Optional[date] = None) -> list[Violation]:
    """The network steps a weak link fails on next: a base image the host was not checked to pull,
    and OS package downloads that no cache mount keeps between builds; and a Node.js line at its
    end of life."""
    found = _end_of_life(cmds, path, base_image, today or date.today())
    for cmd, image in _base_images(cmds) if base_image else []:
        if image_ref(image) == image_ref(base_image):
            continue
        if "@" in base_image and "@" not in image and image_ref(image) == image_ref(base_image.split("@", 1)[0]):
            found.append(Violation(
                path, cmd.start_line, "base-image", f"`FROM {image}` is workhub:baseImage ({base_image}) without its "
                f"digest: the build takes whatever {image} names on the build host, not the image the digest pins",
                f"start FROM {base_image}", "warning"))
            continue
        found.append(Violation(
            path, cmd.start_line, "base-image", f"`FROM {image}` is not workhub:baseImage ({base_image}), the "
            "image the preflight checks the build host can pull; the host may not be able to pull this one",
            f"start FROM {base_image}, or set workhub:baseImage to {image} (in Pulumi.yaml) so the preflight "
            "checks it", "warning"))
    for cmd in cmds:
        if cmd.cmd.upper() != "RUN":
            continue
        for manager, command in _os_installs(cmd):
            fix = (f"run it as `RUN {APK_MOUNT} apk add ...`, without --no-cache" if manager == "apk" else
                   f"run it as `RUN {APT_MOUNTS} apt-get update && apt-get install ...`, after "
                   "`RUN rm -f /etc/apt/apt.conf.d/docker-clean` (Debian images delete downloaded packages)")
            found.append(Violation(
                path, cmd.start_line, "os-packages", f"`{command}` downloads OS packages on every build (no cache "
                "mount keeps them), the next network step to fail on a weak link", fix, "warning"))
    return found


def check_text(text: str, path: str = "Dockerfile", context: Optional[Path] = None,
               base_image: Optional[str] = None, today: Optional[date] = None) -> list[Violation]:
    """Every violation in the text of one Dockerfile, by line; an empty list means it follows the pattern.

    `context` is the build context directory: with it, the manifests each install needs are the
    ones that folder of the context has. `base_image` (workhub:baseImage) adds a warning for
    each FROM of another image. A FROM of a Node.js line past its end of life (on `today`, by
    default the day it runs) is a warning too."""
    found, ctx = [], _Context(context)
    cmds = _parse(text, path)
    if problem := _syntax_problem(text, cmds):
        found.append(Violation(path, *problem[:1], "syntax", *problem[1:]))
    stages = _stages(text, path, ctx)
    for run, command, folder, source in _installs_without_package_json(stages, ctx):
        found.append(Violation(path, run.cmd.start_line, "manifests-first", f"`{command}` installs in {folder}, but "
                               f"the build context has no {source}", "add the folder's package.json and lockfile "
                               "to the context, or correct where the install runs"))
    for stage in stages:
        for run in stage.runs:
            line, shown = run.cmd.start_line, ", ".join(command for command, _ in run.installs)
            found += _cache_violations(path, run, shown)
            if run.retry and not run.retry_mount:
                found.append(Violation(path, line, "retry-secret", f"`{shown}` runs workhub's install retry "
                                       f"without the secret it comes as, so the whole retry program is its "
                                       "build arg and fills the build log", f"add `{RETRY_MOUNT}` to the RUN",
                                       "warning"))
            for wipe in run.wipes:
                found.append(Violation(path, line, "no-cache-clean", f"`{shown}` runs with `{wipe}`, which wipes "
                                       "the npm cache the mount keeps between builds",
                                       f"drop `{wipe}` from this RUN; the mounted cache never reaches the image"))
            for command, folder in run.installs:
                missing = None if folder is None else _missing(stage, run, folder, ctx)
                if missing:
                    fix = _copy_manifests(missing, folder, stage.workdirs[line], run.cache)
                    found.append(Violation(path, line, "manifests-first", f"`{command}` runs before "
                                           f"{' and '.join(missing)} are copied on their own",
                                           f"add `{fix}` before it"))
        try:
            splits = {split.cmd.start_line: split for split, _ in _moves(text, path, stage)[1]}
        except DockerfileError:  # conform says which step stops the move
            splits = {}
        for copy, last, folders, mixed in _source_copies(stage):
            named = ", ".join(folders)
            what = "the whole build context" if copy.value[:-1] in ((".",), ("./",)) else \
                f"the sources of {named}" + (" together with package manifests" if mixed else "")
            split = "".join(f"; split line {s.cmd.start_line}: its installs stay there, `{s.rest.strip()}` "
                            f"follows the sources" for line, s in splits.items()
                            if copy.start_line < line <= last.cmd.start_line)
            found.append(Violation(path, copy.start_line, "manifests-first", f"`{copy.original}` copies {what} "
                                   f"before the npm install at line {last.cmd.start_line}, so any source change "
                                   "reinstalls every package", f"move it after line {last.cmd.start_line}{split}"))
        missing = [a for a in _wanted_args(stage) if a not in stage.args]
        if missing:
            first = stage.runs[0].cmd.start_line
            found.append(Violation(path, first, "build-args", f"{', '.join(missing)} not declared with ARG before "
                                   "the stage's first npm install, so workhub's build args for them are dropped",
                                   "add " + ", ".join(f"`ARG {a}`" for a in missing) + f" before line {first}"))
    found += _warnings(cmds, path, base_image, today)
    return sorted(found, key=lambda violation: violation.line)


def _cache_violations(path: str, run: _Run, shown: str) -> list[Violation]:
    """Whether the install's npm cache is mounted where npm caches, locked, and writable by its user."""
    line, cache, found = run.cmd.start_line, run.cache, []
    wanted = cache.mount()
    said = f" ({cache.assumed})" if cache.assumed else ""
    if cache.folder is None and run.mount is None:
        owner = f",uid={cache.uid}" if cache.uid else ""
        return [Violation(path, line, "cache-mount", f"`{shown}` runs as {cache.who}, whose home (where npm "
                          "caches) this file does not say, and without a cache mount for npm",
                          f"add `ENV npm_config_cache=/tmp/.npm` before it and start it with "
                          f"`RUN --mount=type=cache,target=/tmp/.npm{owner},sharing=locked`")]
    for flag, target in run.hiding:
        fix = f"drop `{flag}`" if run.mount or run.stray else f"replace `{flag}` with `{wanted}`"
        found.append(Violation(path, line, "cache-mount", f"`{shown}` runs with a cache mount at {target}, "
                               "over the packages it installs, so the image ships without them", fix))
    as_whom = "" if cache.user == "root" else f" as {cache.who}"
    if run.stray:
        found.append(Violation(path, line, "cache-mount", f"`{shown}` runs{as_whom} with its npm cache in "
                               f"{cache.folder}{said}, so its cache mount at {_target(run.stray)} is never used",
                               f"replace `{run.stray}` with `{wanted}`"))
    elif run.mount is None and not run.hiding:
        found.append(Violation(path, line, "cache-mount", f"`{shown}` runs without the npm cache mount, "
                               "so every build downloads every package again",
                               f"start the instruction with `RUN {wanted}`" + (f"{said}" if said else "")))
    elif run.mount is not None and not cache.root and cache.uid and _owner(run.mount) != cache.uid:
        owner = "root (uid 0)" if _owner(run.mount) == "0" else f"uid {_owner(run.mount)}"
        found.append(Violation(path, line, "cache-mount", f"the npm cache mount of `{shown}` belongs to {owner}, but "
                               f"npm runs as {cache.who} and cannot write to it",
                               f"replace `{run.mount}` with `{cache.mount(run.mount)}`"))
    elif run.mount is not None and not _locked(run.mount):
        found.append(Violation(path, line, "cache-mount", f"the npm cache mount of `{shown}` is not "
                               "sharing=locked, so two builds can write the cache at once",
                               f"replace `{run.mount}` with `{cache.mount(run.mount)}`"))
    return found


def _target(flag: str) -> str:
    return next(o.split("=", 1)[1] for o in flag[8:].split(",") if o.startswith(("target=", "dst=", "destination=")))


def _owner(flag: str) -> str:
    """The uid a cache mount belongs to (root's unless it says)."""
    return next((o[4:] for o in flag[8:].split(",") if o.startswith("uid=")), "0")


def _mount_fixed(run: _Run) -> bool:
    """Whether the install's cache mount is where npm caches, locked and its user's."""
    return run.mount is not None and not run.stray and _locked(run.mount) and \
        (run.cache.root or not run.cache.uid or _owner(run.mount) == run.cache.uid)


def _wanted_args(stage: _Stage) -> tuple[str, ...]:
    """The ARGs a stage's installs need: workhub's settings, and WORKHUB_RETRY where an install
    runs under it (undeclared, it is empty, and the install runs once)."""
    if not stage.runs:
        return ()
    return BUILD_ARGS + ((RETRY_ARG,) if any(run.retry for run in stage.runs) else ())


def retry_secret(text: str, path: str = "Dockerfile") -> bool:
    """Whether the Dockerfile runs workhub's install retry and every RUN that does mounts the secret
    it comes as (RETRY_MOUNT): then a build may give it as that secret, not as its build arg."""
    runs = [run for stage in _stages(text, path, _Context(None)) for run in stage.runs if run.retry]
    return bool(runs) and all(run.retry_mount for run in runs)


def check_dockerfile(path: str | Path, context: Optional[Path] = None,
                     base_image: Optional[str] = None, today: Optional[date] = None) -> list[Violation]:
    """Every violation in the Dockerfile at `path` (it is read, never written)."""
    return check_text(Path(path).read_text(), str(path), context, base_image, today)


def _copy_manifests(files: list[str], folder: str, workdir: str, cache: _Cache) -> str:
    """The COPY of a folder's manifests (context paths) into `folder`, as written under `workdir`,
    owned by the user the install runs as (npm writes node_modules and the lockfile there)."""
    dest = _relative(folder, workdir)
    chown = "" if cache.user in ("root", "0", "0:0") else f"--chown={cache.user} "
    return f"COPY {chown}{' '.join(files)} {dest}"


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


def _fix_run(raw: str, run: _Run, path: str) -> str:
    """The RUN's text with the locked npm cache mount (in place of a mount over its packages), the
    install retry's secret mount where it runs the retry, and without its cache wipes; other flags stay."""
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
    if run.cache.folder is None and run.mount is None:
        raise DockerfileError(f"{path}:{run.cmd.start_line}: conform cannot tell where npm caches when it runs as "
                              f"{run.cache.who}\n    fix: {_cache_violations(path, run, '')[0].fix}")
    if run.cache.uid is None and (run.mount is None or run.stray):
        raise DockerfileError(f"{path}:{run.cmd.start_line}: conform cannot tell the uid of {run.cache.user}, whose "
                              f"npm cache it would mount\n    fix: start the RUN with `RUN {run.cache.mount()}`, "
                              f"its uid and gid filled in, or create {run.cache.user} in this file with "
                              "`useradd -u <uid>` or `adduser -u <uid>`")
    mount = run.mount
    if run.stray:
        head, mount = head.replace(run.stray, run.cache.mount(), 1), run.cache.mount()
    for flag, _ in run.hiding:
        if mount is None:
            head, mount = head.replace(flag, run.cache.mount(), 1), run.cache.mount()
        else:
            head = re.sub(r"(?:[ \t]|\\\n)+" + re.escape(flag) + r"(?=\s)", "", head, count=1)
    if mount is None:
        head = head[:match.start(1)] + " " + run.cache.mount() + head[match.start(1):]
    elif mount == run.mount and not _mount_fixed(run):
        head = head.replace(mount, run.cache.mount(mount), 1)
    if run.retry and not run.retry_mount:
        flags = _RUN_FLAGS.match(head)
        assert flags, head
        head = head[:flags.end(1)] + " " + RETRY_MOUNT + head[flags.end(1):]
    return head + body


def _safe(words: list[str]) -> bool:
    """Whether a command cannot read the application's sources (an install, set, cd, mkdir, OS packages)."""
    npm = _npm(words)
    return bool(words[:1] and words[0] in _SAFE_COMMANDS or npm and npm[0] in _SAFE_NPM)


def _movable(cmd: dockerfile.Command) -> bool:
    """Whether a sources COPY can move past `cmd` without changing what `cmd` does."""
    if cmd.cmd.upper() != "RUN":
        return cmd.cmd.upper() in _MOVABLE_PAST
    return all(_safe(words) for words in _commands(cmd)) and not cmd.heredocs


@dataclass(frozen=True)
class _Split:
    """A RUN that installs and then builds, cut in two: the installs (with the commands before them,
    none of which reads the sources) and the rest, which goes after the sources."""

    cmd: dockerfile.Command
    install: str  # the instruction's new text, up to its last install
    rest: str  # the RUN of the rest, with the shell options (`set`) and `cd`s before it


def _split(text: str, stage: _Stage, cmd: dockerfile.Command, there: str) -> Optional[_Split]:
    """The RUN `cmd` split after its last install, the rest to run where WORKDIR is `there`; None when
    it is not a shell-form RUN of commands joined by `&&` whose commands up to that install cannot
    read the sources."""
    run = next((r for r in stage.runs if r.cmd is cmd), None)
    match = _RUN_FLAGS.match(_raw(text, cmd))
    if run is None or cmd.json or cmd.heredocs or not match:
        return None
    raw = _raw(text, cmd)
    head, body = raw[:match.end()], raw[match.end():]
    spans = _segments(body)
    parts = [body[a:b].strip(" \t\\\n") for a, b in spans]
    words = [_words(part) for part in parts]
    cut = max((i for i, w in enumerate(words) if (npm := _npm(w)) and npm[0] in _INSTALLS), default=len(parts) - 1)
    joined = all(body[spans[i][1]:spans[i + 1][0]] == "&&" for i in range(len(spans) - 1))
    if not joined or cut == len(parts) - 1 or not all(_safe(w) for w in words[:cut + 1]):
        return None
    # The rest keeps the shell options and runs where the install ran: its own cds, or one to
    # where they led when it moves past a WORKDIR.
    kept = [part for part, w in zip(parts[:cut + 1], words) if w[:1] == ["set"]]
    cds = [(part, w) for part, w in zip(parts[:cut + 1], words) if w[:1] == ["cd"] and len(w) > 1]
    cwd = stage.workdirs[cmd.start_line]
    for _, w in cds:
        cwd = _absolute(w[1], cwd)
    kept += [part for part, _ in cds] if stage.workdirs[cmd.start_line] == there else \
        [f"cd {cwd}"] if cwd != there else []
    npm_mounts = {run.mount, run.stray, RETRY_MOUNT} | {flag for flag, _ in run.hiding}
    flags = [flag for flag in cmd.flags if flag not in npm_mounts]
    rest = "RUN " + " ".join(flags + [" && ".join(kept + parts[cut + 1:])]) + "\n"
    return _Split(cmd, head + body[:spans[cut][1]].rstrip(" \t\\\n") + "\n", rest)


def _moves(text: str, path: str, stage: _Stage) -> tuple[list[tuple[dockerfile.Command, _Run]], list[_Split]]:
    """The stage's sources COPYs to move after the last install each precedes, and the RUNs to split
    on the way (each one's rest to follow the last of those COPYs); raises DockerfileError with the
    edit to make by hand when a step in between may need the sources and cannot be split."""
    copies = _source_copies(stage)
    moved, splits = {id(copy) for copy, _, _, _ in copies}, {}
    for copy, last, _, _ in copies:
        there = stage.workdirs[last.cmd.start_line]
        for step in stage.instructions:
            if not copy.start_line < step.start_line <= last.cmd.start_line or id(step) in moved or _movable(step):
                continue
            split = _split(text, stage, step, there)
            if split is None:
                run = next((r for r in stage.runs if r.cmd is step), None)
                installs = [r.cmd.start_line for r in stage.runs if r.cmd.start_line > copy.start_line]
                commands = "` and `".join(c for c, _ in run.installs) if run else ""
                fix = f"move the npm installs at line{'s' * (len(installs) > 1)} " \
                    f"{', '.join(map(str, installs))} (with the COPYs of their manifests) before line " \
                    f"{copy.start_line}, by hand" if run is None else \
                    f"split line {step.start_line} by hand: its installs (`{commands}`) " \
                    f"in a RUN of their own, the rest in a RUN after line {last.cmd.end_line}, then conform again"
                raise DockerfileError(f"{path}:{copy.start_line}: `{copy.original}` cannot move after the npm "
                                      f"install at line {last.cmd.start_line}: line {step.start_line} may need "
                                      f"the sources\n    fix: {fix}")
            splits[step.start_line] = (split, max(last.cmd.end_line, splits.get(step.start_line, (split, 0))[1]))
    return [(copy, last) for copy, last, _, _ in copies], [splits[line] for line in sorted(splits)]


@dataclass
class _Edits:
    """Changes to a Dockerfile's text by instruction start line: replacements of whole instructions
    (`ends` says where each ends) and texts inserted before a line."""

    replace: dict[int, str] = field(default_factory=dict)
    ends: dict[int, int] = field(default_factory=dict)
    insert: dict[int, list[str]] = field(default_factory=dict)

    def swap(self, cmd: dockerfile.Command, new: str) -> None:
        self.replace[cmd.start_line], self.ends[cmd.start_line] = new, cmd.end_line

    def apply(self, text: str) -> str:
        lines, out, line = text.splitlines(keepends=True), [], 1
        while line <= len(lines) + 1:
            out += self.insert.get(line, [])
            if line in self.replace:
                out.append(self.replace[line])
                line = self.ends[line] + 1
            else:
                out.append(lines[line - 1] if line <= len(lines) else "")
                line += 1
        return "".join(out)


def _raw(text: str, cmd: dockerfile.Command) -> str:
    return "".join(text.splitlines(keepends=True)[cmd.start_line - 1:cmd.end_line])


def _fix_syntax(text: str, cmds: list[dockerfile.Command]) -> str:
    problem = _syntax_problem(text, cmds)
    if problem is None:
        return text
    lines = text.split("\n")
    if _DIRECTIVE.match(lines[problem[0] - 1]) and problem[0] <= len(lines):
        match = _DIRECTIVE.match(lines[problem[0] - 1])
        if match and match.group(1).lower() == "syntax":
            lines[problem[0] - 1] = SYNTAX
            return "\n".join(lines)
    return SYNTAX + "\n" + text


def _move_sources(text: str, path: str, context: _Context) -> str:
    """Each COPY that brings sources before an install, moved to just after the last such install
    (its destination made absolute if WORKDIR differs there), and each RUN in between that also
    builds split: its installs stay, the rest follows the sources."""
    edits = _Edits()
    for stage in _stages(text, path, context):
        copies, splits = _moves(text, path, stage)
        for copy, last in copies:
            raw, dest = _raw(text, copy), copy.value[-1]
            there = stage.workdirs.get(last.cmd.start_line)
            if there != stage.workdirs[copy.start_line] and not posixpath.isabs(dest):
                if copy.json:
                    raise DockerfileError(f"{path}:{copy.start_line}: `{copy.original}` cannot move past a WORKDIR "
                                          "with a relative destination\n    fix: make its destination absolute")
                cut = raw.rstrip().rfind(dest)
                raw = raw[:cut] + _absolute(dest, stage.workdirs[copy.start_line]) + \
                    ("/" if dest.endswith("/") else "") + raw[cut + len(dest):]
            edits.swap(copy, "")
            edits.insert.setdefault(last.cmd.end_line + 1, []).append(raw)
        for split, after in splits:
            edits.swap(split.cmd, split.install)
            edits.insert.setdefault(after + 1, []).append(split.rest)
    return edits.apply(text)


def _fix_installs(text: str, path: str, context: _Context) -> str:
    """Each install RUN with the locked npm cache mount and no wipes, after the stage's missing ARGs
    and its folder's manifests."""
    edits = _Edits()
    insert = edits.insert
    for stage in _stages(text, path, context):
        for run in stage.runs:
            if not _mount_fixed(run) or run.wipes or run.hiding or run.retry and not run.retry_mount:
                edits.swap(run.cmd, _fix_run(_raw(text, run.cmd), run, path))
        if not stage.runs:
            continue
        missing = [a for a in _wanted_args(stage) if a not in stage.args]
        if missing:
            comment = [ARGS_COMMENT + "\n"] if len(missing) == len(BUILD_ARGS) else []
            insert.setdefault(stage.runs[0].cmd.start_line, []).extend(comment + [f"ARG {a}\n" for a in missing])
        for run in stage.runs:
            for command, folder in run.installs:
                files = None if folder is None else _missing(stage, run, folder, context)
                if not files:
                    continue
                copy = _copy_manifests(files, folder, stage.workdirs[run.cmd.start_line], run.cache) + "\n"
                if copy not in insert.get(run.cmd.start_line, []):
                    insert.setdefault(run.cmd.start_line, []).append(copy)
    return edits.apply(text)


def conform(text: str, path: str = "Dockerfile", context: Optional[Path] = None) -> str:
    """The Dockerfile rewritten to follow every rule; a conforming file comes back unchanged.

    Only what a rule needs changes: the syntax line; the mount flags and cache wipes of each install
    RUN (and the install retry's secret mount, the one warning it fixes); a COPY that brings a folder's sources before its install, moved to just after it; the
    missing ARGs and manifest COPYs (of the files `context` has), inserted just before the
    installs. Raises DockerfileError when a move could change what the build does, or a folder has
    no package.json to copy. Warnings are left for the user.
    """
    ctx = _Context(context)
    newline = text.endswith("\n")
    text = text if newline else text + "\n"
    for run, command, folder, source in _installs_without_package_json(_stages(text, path, ctx), ctx):
        raise DockerfileError(f"{path}:{run.cmd.start_line}: `{command}` installs in {folder}, but the build context "
                              f"has no {source} to copy there first\n    fix: add it (and its lockfile) to the "
                              "context, or correct where the install runs")
    # The syntax line last: every refusal before it names the lines of the file as the user has it.
    text = _fix_installs(_move_sources(text, path, ctx), path, ctx)
    text = _fix_syntax(text, _parse(text, path))
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
