"""The rules a stack config must keep beyond each field's own (across fields, hubs, secrets, the
registry, run-time names), and how each problem says what to fix: one `Problem` per rule broken.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import shlex
import types
import typing
import urllib.parse
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

from docker_image.reference import Reference
from pydantic import BaseModel, ValidationError

from components.config.models import (DEFAULT_BASE_IMAGE, FILE_SUFFIX, HUB_SECRETS, Hub, NAMESPACE, PROJECT_KEYS,
                                      REGISTRY_PASSWORD, SECRET_SETTINGS, StackConfig, hub_names, member,
                                      pulls_from_registry, quoted, run_uid)
from components.constants import PULUMI_CLI


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the stack config, and how to fix it."""

    key: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}\n    fix: {self.fix}"


class ConfigError(Exception):
    """The stack config is not usable; nothing has been registered or touched."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = [f"workhub: the stack config has {len(problems)} problem(s):"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


# Settings that have moved, and where to: named in the fix when an old file still sets them.
MOVED = {"build.healthTimeoutSeconds": "deploy.healthTimeoutSeconds"}


# Example values used in the fixes of missing or bad settings.
_EXAMPLES = {
    "host.address": "<address>",
    "host.user": "deploy",
    "host.port": "22",
    "host.hostKey": "'ssh-ed25519 AAAA...'",
    "baseImage": DEFAULT_BASE_IMAGE,
    "npmRegistry": "http://127.0.0.1:4873/",
    "publishAddress": "127.0.0.1",
    "protectData": "true",
    "sourceRoot": "..",
    "registry.server": "<registry host[:port]>",
    "registry.repository": "workhub",
    "registry.username": "<user>",
    "registry.platform": "linux/arm64",
}


def _held(model: type[BaseModel], key: Any) -> tuple[Optional[type[BaseModel]], bool]:
    """The model the setting `key` of `model` holds (itself, or each item of its list or map), if any;
    and whether an index or a map's key comes next in a path."""
    field = next((info for name, info in model.model_fields.items() if (info.alias or name) == key), None)
    annotation, keyed = (field.annotation if field else None), False
    while typing.get_origin(annotation) in (Union, types.UnionType, list, dict):
        keyed = keyed or typing.get_origin(annotation) in (list, dict)
        annotation = [arg for arg in typing.get_args(annotation) if arg is not type(None)][-1]
    return (annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None), keyed


def known_settings(loc: tuple) -> str:
    """The settings of the section an unknown key at `loc` is in, named in its fix: a key at
    swarm.nodes[0].labels.x is among a node's labels, one at hubs[1].x among a hub's settings."""
    model: Optional[type[BaseModel]] = StackConfig
    skip = False
    for key in loc[:-1]:
        if skip or model is None:
            skip = False
            continue
        model, skip = _held(model, key)
    if model is None:
        return ""
    names = [info.alias or name for name, info in model.model_fields.items()]
    return ", ".join(names + list(SECRET_SETTINGS if model is StackConfig else ()))


def _path(loc: tuple) -> str:
    """A pydantic location as a `pulumi config --path` path: hubs[0].port, hostPorts.wbfinhub,
    hubs[0].env["A\\nB"] (a name that would break the path or the message is quoted)."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (member(part) if text else member(part).removeprefix("."))
    return text


def path_arg(path: str) -> str:
    """`--path` and the key `workhub:<path>` as one shell word, in single quotes (a `'` of a name in
    it written as the shell reads it): what a fix hands `pulumi config set` or `rm`."""
    word = shlex.quote(f"{NAMESPACE}:{path}")
    return f"--path {word if word.startswith(chr(39)) else chr(39) + word + chr(39)}"


def fix_for(path: str, stack: str, known: Optional[str] = None) -> str:
    """How to fix the setting at `path` (without namespace) of `stack`; with `known`, the settings
    of its section, how to remove an unknown one."""
    top = re.split(r"[.\[]", path, maxsplit=1)[0]
    if top in PROJECT_KEYS:
        if known is not None and path in MOVED:
            return f"move it to {NAMESPACE}:{MOVED[path]} in the config: section of Pulumi.yaml"
        if known is not None:
            return f"remove {NAMESPACE}:{path} from the config: section of Pulumi.yaml; known settings here: {known}"
        return f"correct {NAMESPACE}:{path} in the config: section of Pulumi.yaml (one value for every stack)"
    if known is not None:
        return (f"remove it ({PULUMI_CLI} config rm --stack {stack} {path_arg(path)}); "
                f"known settings here: {known}")
    example = _EXAMPLES.get(path, "<port>" if path.startswith("hostPorts.") else "<value>")
    return f"{PULUMI_CLI} config set --stack {stack} {path_arg(path)} {example}"


def _problems_from(error: ValidationError, raw: Mapping[str, Any], stack: str) -> list[Problem]:
    problems = []
    for item in error.errors():
        path = _path(item["loc"])
        unknown = item["type"] == "extra_forbidden"
        if unknown:
            message = "is not a known setting"
        elif item["type"] == "missing":
            message = "is not set"
        else:
            message = item["msg"].removeprefix("Value error, ")
        hub = _hub_named_at(raw, item["loc"])
        if hub:
            message = f"{message} (hub {hub})"
        problems.append(Problem(f"{NAMESPACE}:{path}", message,
                                fix_for(path, stack, known_settings(item["loc"]) if unknown else None)))
    return problems


def _hub_named_at(raw: Mapping[str, Any], loc: tuple) -> Optional[str]:
    if len(loc) >= 3 and loc[0] == "hubs" and isinstance(loc[1], int):
        hubs = raw.get("hubs")
        if isinstance(hubs, list) and loc[1] < len(hubs) and isinstance(hubs[loc[1]], dict):
            name = hubs[loc[1]].get("name")
            return quoted(name) if isinstance(name, str) else None
    return None


def repeats(values: list[Any]) -> list[tuple[int, int]]:
    """Each index of `values` whose value an earlier one has, with the index of its first."""
    first: dict[Any, int] = {}
    return [(index, first[value]) for index, value in enumerate(values) if first.setdefault(value, index) != index]


def cross_checks(config: StackConfig, stack: str) -> list[Problem]:
    """Rules across fields: unique hub names, one host port per hub, no port used twice."""
    problems: list[Problem] = []
    for index, first in repeats([hub.name for hub in config.hubs]):
        problems.append(Problem(f"{NAMESPACE}:hubs[{index}].name",
                                f"{config.hubs[index].name} is declared twice (also hubs[{first}])",
                                fix_for(f"hubs[{index}].name", stack)))
    seen = {hub.name for hub in config.hubs}
    for hub in config.hubs:
        if hub.name not in config.host_ports:
            problems.append(Problem(f"{NAMESPACE}:hostPorts.{hub.name}", f"is not set: hub {hub.name} needs a host port in this stack",
                                    f"{PULUMI_CLI} config set --stack {stack} {path_arg(f'hostPorts.{hub.name}')} <port>"))
    for name in config.host_ports:
        if name not in seen:
            problems.append(Problem(f"{NAMESPACE}:hostPorts{member(name)}", "names no hub in workhub:hubs",
                                    f"{PULUMI_CLI} config rm --stack {stack} {path_arg(f'hostPorts{member(name)}')}"))
    for name in config.pinned_images:
        if name not in seen:
            problems.append(Problem(f"{NAMESPACE}:pinnedImages{member(name)}", "names no hub in workhub:hubs",
                                    f"{PULUMI_CLI} config rm --stack {stack} {path_arg(f'pinnedImages{member(name)}')}"))
    if config.promote_from == stack:
        problems.append(Problem(f"{NAMESPACE}:promoteFrom", "names this stack itself",
                                f"{PULUMI_CLI} config set --stack {stack} {NAMESPACE}:promoteFrom staging"))
    by_port: dict[int, str] = {}
    for name, port in config.host_ports.items():
        if port in by_port:
            problems.append(Problem(f"{NAMESPACE}:hostPorts{member(name)}", f"port {port} is also the host port of "
                                    f"{quoted(by_port[port])}", f"{PULUMI_CLI} config set --stack {stack} "
                                    f"{path_arg(f'hostPorts{member(name)}')} <a free port>"))
        by_port.setdefault(port, name)
    if config.host.port in by_port:
        name = by_port[config.host.port]
        problems.append(Problem(f"{NAMESPACE}:hostPorts{member(name)}", f"port {config.host.port} is the host's SSH port",
                                f"{PULUMI_CLI} config set --stack {stack} {path_arg(f'hostPorts{member(name)}')} <a free port>"))
    by_uid: dict[int, str] = {}
    for index, hub in enumerate(config.hubs):
        uid = run_uid(hub, stack)
        if uid in by_uid and by_uid[uid] != hub.name:
            problems.append(Problem(f"{NAMESPACE}:hubs[{index}].uid", f"{hub.name} would run as uid {uid}, as {by_uid[uid]} does",
                                    f"give hubs[{index}] in Pulumi.yaml a uid of its own (uid: <a number no host account has>)"))
        by_uid.setdefault(uid, hub.name)
    heap = config.build
    if heap.npm_fetch_retry_min_timeout_ms > heap.npm_fetch_retry_max_timeout_ms:
        problems.append(Problem(f"{NAMESPACE}:build.npmFetchRetryMinTimeoutMs",
                                f"{heap.npm_fetch_retry_min_timeout_ms} is more than npmFetchRetryMaxTimeoutMs ({heap.npm_fetch_retry_max_timeout_ms})",
                                fix_for("build.npmFetchRetryMinTimeoutMs", stack)))
    deploy = config.deploy
    needed = deploy.healthy_passes * deploy.health_interval_ms / 1000
    if needed >= deploy.health_timeout_seconds:
        problems.append(Problem(f"{NAMESPACE}:deploy.healthTimeoutSeconds",
                                f"{deploy.health_timeout_seconds} s is not more than healthyPasses x healthIntervalMs "
                                f"({deploy.healthy_passes} x {deploy.health_interval_ms} ms = {needed:g} s): a new "
                                "container misses the probe made as it starts, so its answers in a row end that "
                                "long after at the earliest, and every deploy would fail",
                                f"raise {NAMESPACE}:deploy.healthTimeoutSeconds above {needed:g}, or lower healthyPasses "
                                "or healthIntervalMs, in the config: section of Pulumi.yaml"))
    if heap.install_max_tries < heap.install_tries:
        problems.append(Problem(f"{NAMESPACE}:build.installMaxTries",
                                f"{heap.install_max_tries} is less than installTries ({heap.install_tries}), "
                                "so an install could never use its tries",
                                fix_for("build.installMaxTries", stack)))
    return problems


PRODUCTION = "production"


# The images a production stack's hosts pull by a reference of its own (not a hub's image, which
# promotion pins): workhub:<key> and the StackConfig field holding it.
PULLED_IMAGES = (("baseImage", "base_image"), ("proxyImage", "proxy_image"), ("helperImage", "helper_image"))


def pin_command(stack: str, key: str, image: str) -> str:
    """The command that sets workhub:<key> to `image` pinned by the digest its tag names now."""
    return (f"{PULUMI_CLI} config set --stack {stack} {NAMESPACE}:{key} \"{image}@$(docker buildx imagetools "
            f"inspect {image} | awk '/^Digest:/ {{print $2; exit}}')\"")


def digest_problems(config: StackConfig, stack: str) -> list[Problem]:
    """In the production stack, every image the hosts pull by reference names its digest, so what
    runs there cannot change when a tag moves (a hub's own image is promoted by ID or digest)."""
    if stack.rsplit("/", 1)[-1] != PRODUCTION:
        return []
    problems = []
    for key, field in PULLED_IMAGES:
        image = getattr(config, field)
        if Reference.parse(image)["digest"]:
            continue
        default = " (the default)" if image == StackConfig.model_fields[field].default else ""
        problems.append(Problem(
            f"{NAMESPACE}:{key}", f"is {image}{default}, without a digest: the production stack pins every image "
            "its hosts pull (name:tag@sha256:...), so a tag that moves cannot change what runs there",
            pin_command(stack, key, image)))
    return problems


def webhook_problem(url: str) -> Optional[str]:
    """What is wrong with the failure webhook's URL, in words that never repeat it (it is a secret
    and may carry a token); None when it is https, or plain http to a loopback address."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        host = parts.hostname or ""
    except ValueError:
        return "is not a URL; it must be an https URL"
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        return "names a port outside 1 to 65535; it must be an https URL"
    if not host or any(c.isspace() for c in url.strip()):
        return "is not a URL with a host; it must be an https URL"
    if parts.scheme.lower() == "https":
        return None
    if parts.scheme.lower() != "http":
        return "must be an https URL"
    try:
        loopback = host.lower() == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return ("is plain http to a host that is not loopback, so each notice (with its log lines) would cross the "
            "network unencrypted; it must be an https URL (http only to 127.0.0.0/8, ::1 or localhost)")


def secret_fix(key: str, stack: str, source: str) -> str:
    """The command that sets the secret setting `key`, its value coming from `source`."""
    return f"{PULUMI_CLI} config set --stack {stack} --secret {NAMESPACE}:{key} {source}"


def stored_in_plain_text(key: str, fix: str) -> Problem:
    return Problem(f"{NAMESPACE}:{key}", "is stored in plain text; it must be a secret", fix)


def registry_problems(config: StackConfig, stack: str, raw: Mapping[str, Any], secret_keys: set[str]) -> list[Problem]:
    """A stack with registry-mode builds names its registry, and a registry login has its password,
    stored as a secret."""
    problems = []
    hubs = pulls_from_registry(config)
    if hubs and config.registry is None:
        names = ", ".join(hub.name for hub in hubs)
        problems.append(Problem(f"{NAMESPACE}:registry.server",
                                f"is not set, but {names} build(s) in registry mode (buildMode: registry in workhub:hubs)",
                                fix_for("registry.server", stack) + "; or set the hub's buildMode back to remote "
                                "in Pulumi.yaml"))
    fix = secret_fix(REGISTRY_PASSWORD, stack, "< <file holding the password>")
    if REGISTRY_PASSWORD in raw:
        if REGISTRY_PASSWORD not in secret_keys:
            problems.append(stored_in_plain_text(REGISTRY_PASSWORD, fix))
        elif not str(raw[REGISTRY_PASSWORD]).strip():
            problems.append(Problem(f"{NAMESPACE}:{REGISTRY_PASSWORD}", "is empty (or only white space): the "
                                    "registry login would fail", fix))
        elif config.registry is None or config.registry.username is None:
            problems.append(Problem(f"{NAMESPACE}:{REGISTRY_PASSWORD}", "is set, but workhub:registry.username is not",
                                    fix_for("registry.username", stack)))
    elif config.registry is not None and config.registry.username is not None:
        problems.append(Problem(f"{NAMESPACE}:{REGISTRY_PASSWORD}",
                                f"is not set, but workhub:registry.username ({config.registry.username}) is", fix))
    return problems


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


_VOLUME_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,47}")


# The options Docker reads after a volume's path in its short form (`name:/path:ro`). workhub mounts
# each volume in the long form, where the path is taken whole: `/app/data:ro` is another directory.
_MOUNT_OPTIONS = {"ro", "rw", "z", "Z", "nocopy", "shared", "slave", "private", "rshared", "rslave", "rprivate",
                  "consistent", "cached", "delegated"}


def _mount_option(target: str) -> Optional[str]:
    """The mount options a volume's path ends in (`:ro`, `:ro,z`), or None."""
    head, colon, tail = target.rpartition(":")
    return tail if colon and head and set(tail.split(",")) <= _MOUNT_OPTIONS else None


# Set by workhub itself in every hub's container.
RESERVED_ENV = ("PORT",)


def _project(path: str) -> str:
    return f"correct {NAMESPACE}:{path} in the config: section of Pulumi.yaml (one value for every stack)"


def name_problems(hub: Hub, at: str) -> list[tuple[str, Optional[Problem]]]:
    """Each variable a hub declares (by its key: env.X, stackEnv[0], secrets[1], portEnv) with its
    problem: not an environment variable name, workhub's own (PORT, the port variable), or declared
    already; None for the ones that are fine."""
    found: list[tuple[str, Optional[Problem]]] = []
    seen: dict[str, str] = {}
    for key, name in hub_names(hub):
        path = f"{at}.{key}"
        problem = None
        if not name:
            problem = Problem(f"{NAMESPACE}:{path}", f"is empty, so it names no variable and would be ignored "
                              f"(hub {hub.name})", f"set {NAMESPACE}:{path} in Pulumi.yaml to the variable's name, or remove it")
        elif not _ENV_NAME.fullmatch(name):
            problem = Problem(f"{NAMESPACE}:{path}", f"{name!r} is not an environment variable name (letters, "
                              f"digits and '_', not starting with a digit; hub {hub.name})", _project(path))
        elif name in RESERVED_ENV or (name == hub.port_env and key != "portEnv"):
            what = "PORT" if name in RESERVED_ENV else f"the port variable (portEnv: {name})"
            problem = Problem(f"{NAMESPACE}:{path}", f"{name} is {what}, which workhub sets from the hub's port "
                              f"{hub.port} (hub {hub.name})",
                              f"remove it from {NAMESPACE}:{at} in Pulumi.yaml; the port is {NAMESPACE}:{at}.port")
        elif name in seen:
            problem = Problem(f"{NAMESPACE}:{path}", f"{name} is also declared at {at}.{seen[name]} (hub "
                              f"{hub.name}); a variable has one source", _project(path))
        else:
            seen[name] = key
        found.append((key, problem))
    return found


def usable_declarations(hub: Hub) -> set[str]:
    """The declarations of a hub that have no problem of their own (nothing more is asked of the others)."""
    return {key for key, problem in name_problems(hub, "hubs") if problem is None}


def _text_problem(value: str) -> Optional[str]:
    if "\0" in value:
        return "holds a NUL character, which no environment variable can carry"
    if "\n" in value or "\r" in value:
        return ("holds a line break, which a plain setting cannot carry (one line each in the container's env "
                "file); make it a secret, which reaches the container as a file when it has line breaks")
    return None


def runtime_problems(config: StackConfig, stack: str) -> list[Problem]:
    """Each hub's variable names are environment names, declared once and not workhub's own (PORT, the
    port variable); its volumes have Docker volume names and distinct absolute paths; this stack sets
    exactly the stackEnv values its hubs declare, and nothing Pulumi.yaml pins."""
    problems: list[Problem] = []
    for index, hub in enumerate(config.hubs):
        at = f"hubs[{index}]"
        problems += [problem for _, problem in name_problems(hub, at) if problem]
        seen = {name: key for key, name in hub_names(hub)}
        for name in hub.secrets:
            twin = name + FILE_SUFFIX
            if twin in seen and _ENV_NAME.fullmatch(name):
                path = f"{at}.{seen[twin]}"
                problems.append(Problem(f"{NAMESPACE}:{path}", f"{twin} is where secret {name} is named when it "
                                        f"reaches the container as a file (hub {hub.name})", _project(path)))
        for key, value in hub.env.items():
            message = _text_problem(value)
            if message:
                path = f"{at}.env{member(key)}"
                problems.append(Problem(f"{NAMESPACE}:{path}", f"{message} (hub {hub.name})", _project(path)))
        targets: dict[str, str] = {}
        for name, target in hub.volumes.items():
            path = f"{at}.volumes{member(name)}"
            if not _VOLUME_NAME.fullmatch(name):
                problems.append(Problem(f"{NAMESPACE}:{path}", f"{name!r} is not a volume name (lower-case "
                                        f"letters, digits, '_', '.', '-', at most 48; hub {hub.name})",
                                        _project(path)))
            option = _mount_option(target)
            if option:
                problems.append(Problem(f"{NAMESPACE}:{path}", f"{target!r} ends in Docker's mount option "
                                        f"':{option}', which a volume's path here does not take: the container "
                                        f"would get a read-write volume at the directory {target!r}, not at "
                                        f"{target.rpartition(':')[0]!r} (hub {hub.name})",
                                        f"write the path without ':{option}' in {NAMESPACE}:{path} in Pulumi.yaml; "
                                        "a hub's volumes are read-write"))
                continue
            if not target.startswith("/") or target == "/" or posixpath.normpath(target) != target.rstrip("/") \
                    or _text_problem(target):
                problems.append(Problem(f"{NAMESPACE}:{path}", f"{target!r} is not a directory in the container: "
                                        f"an absolute path such as /app/data, not / and without '..' or line "
                                        f"breaks (hub {hub.name})", _project(path)))
                continue
            target = target.rstrip("/")
            if target in targets:
                problems.append(Problem(f"{NAMESPACE}:{path}", f"{target} is also the path of volume "
                                        f"{targets[target]} (hub {hub.name})", _project(path)))
            targets.setdefault(target, name)
    hubs = {hub.name: hub for hub in config.hubs}
    for name, values in config.env.items():
        hub = hubs.get(name)
        if hub is None:
            problems.append(Problem(f"{NAMESPACE}:env{member(name)}", "names no hub in workhub:hubs",
                                    f"{PULUMI_CLI} config rm --stack {stack} {path_arg(f'env{member(name)}')}"))
            continue
        index = config.hubs.index(hub)
        for key, value in values.items():
            path = f"env.{name}{member(key)}"
            if key in hub.env:
                problems.append(Problem(f"{NAMESPACE}:{path}", f"{quoted(key)} is pinned in Pulumi.yaml "
                                        f"(workhub:hubs[{index}].env{member(key)}), the same in every stack",
                                        f"{PULUMI_CLI} config rm --stack {stack} {path_arg(path)}; to let "
                                        f"stacks differ, move {quoted(key)} from env to stackEnv of the hub in Pulumi.yaml"))
            elif key not in hub.stack_env:
                problems.append(Problem(f"{NAMESPACE}:{path}", f"{quoted(key)} is not declared in workhub:hubs[{index}]."
                                        f"stackEnv (hub {name})", f"add {quoted(key)} to stackEnv of the hub in Pulumi.yaml, "
                                        f"or {PULUMI_CLI} config rm --stack {stack} {path_arg(path)}"))
            elif _text_problem(value):
                problems.append(Problem(f"{NAMESPACE}:{path}", f"{_text_problem(value)} (hub {name})",
                                        f"{PULUMI_CLI} config set --stack {stack} {path_arg(path)} <value>"))
    for hub in config.hubs:
        for i, key in enumerate(hub.stack_env):
            if key not in config.env.get(hub.name, {}) and f"stackEnv[{i}]" in usable_declarations(hub):
                path = f"env.{hub.name}.{key}"
                problems.append(Problem(f"{NAMESPACE}:{path}", f"is not set: hub {hub.name} declares {key} in "
                                        "stackEnv, so each stack gives it a value",
                                        f"{PULUMI_CLI} config set --stack {stack} {path_arg(path)} <value>"))
    return problems


def secret_fix_for(stack: str, hub: str, name: str) -> str:
    """The command that sets one hub secret (from a file, so a value with line breaks stays whole)."""
    return (f"{PULUMI_CLI} config set --stack {stack} --secret {path_arg(f'{HUB_SECRETS}{member(hub)}{member(name)}')} "
            "<value>  (or < <file> for a value with line breaks)")


def secret_problems(config: StackConfig, stack: str, value: Any, is_secret: bool) -> list[Problem]:
    """workhub:secrets holds, as secrets, a text value for every secret each hub declares and nothing else."""
    problems: list[Problem] = []
    values = value if isinstance(value, Mapping) else {}
    if value is not None and not isinstance(value, Mapping):
        problems.append(Problem(f"{NAMESPACE}:{HUB_SECRETS}", "must map hub names to their secrets",
                                f"{PULUMI_CLI} config rm --stack {stack} {NAMESPACE}:{HUB_SECRETS}, then set each with: "
                                + secret_fix_for(stack, "<hub>", "<NAME>")))
    elif value is not None and not is_secret:
        problems.append(stored_in_plain_text(HUB_SECRETS, secret_fix_for(stack, "<hub>", "<NAME>")
                                             + " for each of them"))
        return problems
    hubs = {hub.name: hub for hub in config.hubs}
    for name, found in values.items():
        hub = hubs.get(name)
        if hub is None:
            problems.append(Problem(f"{NAMESPACE}:{HUB_SECRETS}{member(name)}", "names no hub in workhub:hubs",
                                    f"{PULUMI_CLI} config rm --stack {stack} {path_arg(f'{HUB_SECRETS}{member(name)}')}"))
            continue
        if not isinstance(found, Mapping):
            problems.append(Problem(f"{NAMESPACE}:{HUB_SECRETS}{member(name)}", "must map secret names to their values",
                                    secret_fix_for(stack, name, "<NAME>")))
            continue
        index = config.hubs.index(hub)
        for key, secret in found.items():
            path = f"{HUB_SECRETS}{member(name)}{member(key)}"
            if key not in hub.secrets:
                problems.append(Problem(f"{NAMESPACE}:{path}", f"{quoted(key)} is not declared in workhub:hubs[{index}]."
                                        f"secrets (hub {name})", f"add {quoted(key)} to secrets of the hub in Pulumi.yaml, "
                                        f"or {PULUMI_CLI} config rm --stack {stack} {path_arg(path)}"))
            elif not isinstance(secret, str):
                problems.append(Problem(f"{NAMESPACE}:{path}", "must be text", secret_fix_for(stack, name, key)))
            elif not secret.strip():
                problems.append(Problem(f"{NAMESPACE}:{path}", "is empty (or only white space): the hub would get "
                                        "no secret", secret_fix_for(stack, name, key)))
            elif "\0" in secret:
                problems.append(Problem(f"{NAMESPACE}:{path}", "holds a NUL character, which neither an "
                                        "environment variable nor the file a secret becomes can carry here",
                                        secret_fix_for(stack, name, key)))
    for hub in config.hubs:
        for i, key in enumerate(hub.secrets):
            if key not in (values.get(hub.name) or {}) and f"secrets[{i}]" in usable_declarations(hub):
                problems.append(Problem(f"{NAMESPACE}:{HUB_SECRETS}.{hub.name}.{key}",
                                        f"is not set: hub {hub.name} declares the secret {key}",
                                        secret_fix_for(stack, hub.name, key)))
    return problems
