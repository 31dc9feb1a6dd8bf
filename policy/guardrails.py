"""The checks behind the workhub-guardrails policy pack: pure functions from what the engine shows
the pack (a resource's inputs, the project's files) to the problems found, one sentence each with
its fix. `__main__.py` wires them into policies.

Every resource workhub registers is a `RemoteCommand`, a dynamic resource
(`pulumi-python:dynamic:Resource`) whose `label` says what it is: `<hub>-build` builds a hub's
image (its `create` script embeds the detached runner with `dockerfile=` and `build_args=(...)`,
and `upload.localDir` is the hub's build context), `<hub>-run` starts its container (`port=` is the
container's PORT), `<hub>-pull` pulls a registry-mode hub's image, which pulumi-docker's
`docker:index/image:Image` built and pushed (its `build` input holds the args). Scripts carry every value as a quoted assignment at their top (components/render/shell.py),
which is what `script_values` reads back.
"""

from __future__ import annotations

import re
import shlex
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import yaml
from pulumi_policy import Secret
from pulumi_policy import proxy
from pulumi_policy.proxy import UnknownValueError

from components.constants import PULUMI_CLI

DYNAMIC = "pulumi-python:dynamic:Resource"
NAMESPACE = "workhub"
SECRET_INPUTS = ("privateKey", "notifyUrl", "secretValues")
DOCKER_IMAGE = "docker:index/image:Image"
SCRIPT_INPUTS = ("create", "delete", "triggers", "check")
# The Dockerfile rules that keep the npm cache mount working (check_dockerfile's rule names).
CACHE_RULES = ("syntax", "cache-mount", "no-cache-clean")

_ASSIGNMENT = re.compile(r"^([a-z_][a-z0-9_]*)=(.*)$")
_HEAP = re.compile(r"(?:^|\s)--max-old-space-size=[1-9][0-9]*(?:\s|$)")
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----|PuTTY-User-Key-File-[0-9]")
_URL = re.compile(r"https?://[^\s'\"<>`()\\]+", re.IGNORECASE)
_WEBHOOK_HOSTS = re.compile(r"(?:^|\.)(?:hooks\.slack\.com|discord(?:app)?\.com|webhook\.office\.com|outlook\.office\.com"
                            r"|hooks\.zapier\.com|maker\.ifttt\.com|chat\.googleapis\.com|api\.telegram\.org)$")
# What an input not known until the update looks like under a secret (the proxy that raises
# UnknownValueError does not look inside secrets).
_UNKNOWNS = {proxy.UNKNOWN_BOOLEAN_VALUE, proxy.UNKNOWN_NUMBER_VALUE, proxy.UNKNOWN_STRING_VALUE,
             proxy.UNKNOWN_ARRAY_VALUE, proxy.UNKNOWN_ASSET_VALUE, proxy.UNKNOWN_ARCHIVE_VALUE,
             proxy.UNKNOWN_OBJECT_VALUE}
_TOKEN_PARAMS = {"token", "key", "secret", "sig", "signature", "code", "auth", "access_token", "api_key", "apikey"}


# --- what the SDK hands over -------------------------------------------------------------------

_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def keep_secrets_marked() -> None:
    """Make the policy SDK hand validations each secret input as a `pulumi_policy.Secret`.

    The engine sends the pack every input with its secretness (the secret signature), but
    pulumi_policy 1.21 unwraps secrets before validations see them, so a policy cannot tell a
    secret from plain text (pulumi/pulumi-policy#241, open). Its remediation path keeps them
    (`proxy_secrets=True`); this makes the validation paths do the same, and leaves the
    remediation path as it was. Pinned with pulumi-policy==1.21.0: the real-program test fails
    (every key looks like plain text) if a new SDK changes this."""
    import pulumi_policy.policy as sdk

    original = sdk.deserialize_properties

    def mark(value: Any) -> Any:
        if isinstance(value, dict):
            if value.get(_SIG_KEY) == _SECRET_SIG:
                return Secret(original({"value": mark(value.get("value"))})["value"])
            return {key: mark(inner) for key, inner in value.items()}
        if isinstance(value, list):
            return [mark(inner) for inner in value]
        return value

    def deserialize(props: dict[str, Any], proxy_secrets: bool = False) -> dict[str, Any]:
        return original(props, True) if proxy_secrets else original(mark(props))

    sdk.deserialize_properties = deserialize


def keys(props: Mapping[str, Any]) -> list[str]:
    return list(iter(props))


def known(props: Mapping[str, Any], key: str) -> Any:
    """props[key], None when it is absent; raises UnknownValueError when it is unknown at preview."""
    return props[key] if key in keys(props) else None


def plain(value: Any) -> Any:
    return value.value if isinstance(value, Secret) else value


def known_text(props: Mapping[str, Any], key: str) -> Optional[str]:
    """The text of input `key`, secret or not; None when it is absent or not known until the update
    (no-output-feedback reports that)."""
    try:
        value = plain(known(props, key))
    except UnknownValueError:
        return None
    return value if isinstance(value, str) and value not in _UNKNOWNS else None


def is_remote_command(resource_type: str, props: Mapping[str, Any]) -> bool:
    return resource_type == DYNAMIC and {"label", "connection"} <= set(keys(props))


def walk(value: Any, path: str, secret: bool = False) -> Iterator[tuple[str, Any, bool]]:
    """(path, leaf, whether it sits under a secret) for every leaf of an input; an unknown leaf
    comes as UnknownValueError."""
    if isinstance(value, Secret):
        yield from walk(value.value, path, True)
    elif isinstance(value, Mapping):
        for key in keys(value):
            try:
                inner = value[key]
            except UnknownValueError as error:
                yield f"{path}.{key}", error, secret
                continue
            yield from walk(inner, f"{path}.{key}", secret)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for index in range(len(value)):
            try:
                inner = value[index]
            except UnknownValueError as error:
                yield f"{path}[{index}]", error, secret
                continue
            yield from walk(inner, f"{path}[{index}]", secret)
    elif isinstance(value, str) and value in _UNKNOWNS:
        yield path, UnknownValueError(value, [path]), secret
    else:
        yield path, value, secret


def walk_input(props: Mapping[str, Any], key: str) -> Iterator[tuple[str, Any, bool]]:
    """walk() over the input `key`, nothing when it is absent."""
    try:
        value = known(props, key)
    except UnknownValueError as error:
        yield key, error, False
        return
    yield from walk(value, key)


def inputs(props: Mapping[str, Any]) -> Iterator[tuple[str, Any, bool]]:
    """walk() over every input."""
    for key in keys(props):
        yield from walk_input(props, key)


# --- rendered scripts --------------------------------------------------------------------------

def script_values(script: str) -> dict[str, list[str]]:
    """The values a rendered script assigns at its top (`name='value'`, `name=(...)`), as words,
    by name; a later assignment wins, as in the shell."""
    values: dict[str, list[str]] = {}
    for line in script.splitlines():
        match = _ASSIGNMENT.match(line)
        if not match:
            continue
        name, text = match.groups()
        if text.startswith("(") and text.endswith(")"):
            text = text[1:-1]
        try:
            values[name] = shlex.split(text)
        except ValueError:
            continue
    return values


def build_arg_values(words: list[str]) -> dict[str, str]:
    """`--build-arg NAME=value` words as a dict."""
    found = {}
    for flag, value in zip(words, words[1:]):
        if flag == "--build-arg" and "=" in value:
            name, text = value.split("=", 1)
            found[name] = text
    return found


# --- the checks --------------------------------------------------------------------------------

def heap_problems(label: str, node_options: Optional[str], builder: str) -> list[str]:
    """NODE_OPTIONS is passed, with a heap size."""
    if node_options is None:
        return [f"{label}: the build passes no NODE_OPTIONS build arg, so Node runs with its default heap "
                f"and a large install or compile can run out of memory; fix: declare the build with {builder}, "
                "which passes NODE_OPTIONS=--max-old-space-size=<workhub:build.nodeHeapMb>"]
    if not _HEAP.search(node_options):
        return [f"{label}: the build's NODE_OPTIONS is {node_options!r}, without --max-old-space-size=<MB>; "
                "fix: leave NODE_OPTIONS to workhub (workhub:build.nodeHeapMb in Pulumi.yaml)"]
    return []


def dockerfile_problems(label: str, path: Path) -> list[str]:
    """The Dockerfile runs every npm install under the npm cache mount (and declares NODE_OPTIONS)."""
    if not path.is_file():
        return [f"{label}: its Dockerfile {path} does not exist; fix: check out the hub's sources there"]
    # Imported here: BuildKit's parser is only needed when the pack sees a build (not on a no-op).
    from components.plan.dockerfile import DockerfileError, check_dockerfile

    try:
        violations = check_dockerfile(path)
    except DockerfileError as error:
        return [f"{label}: {error}"]
    return [f"{label}: {violation.path}:{violation.line}: {violation.message}; fix: {violation.fix} "
            f"(or `python -m workhub dockerfile conform {violation.path}`)"
            for violation in violations
            if violation.rule in CACHE_RULES or violation.rule == "build-args" and "NODE_OPTIONS" in violation.message]


def build_problems(label: str, create: str, upload: Optional[Mapping[str, Any]]) -> list[str]:
    """A hub build on the host passes NODE_OPTIONS with a heap size, and its Dockerfile runs every
    npm install under the npm cache mount."""
    values = script_values(create)
    node_options = build_arg_values(values.get("build_args", [])).get("NODE_OPTIONS")
    problems = heap_problems(label, node_options, "components.render.host.build.build_script")
    dockerfile = values.get("dockerfile")
    local_dir = plain(upload.get("localDir")) if isinstance(upload, Mapping) and "localDir" in keys(upload) else None
    if not dockerfile or not local_dir:
        problems.append(f"{label}: the build names no Dockerfile (`dockerfile=` in its script) or uploads no build "
                        "context (`upload.localDir`), so its npm cache mount cannot be checked; fix: declare hub "
                        "builds with components.resources.host.hub_image.HubImage")
        return problems
    return problems + dockerfile_problems(label, Path(local_dir) / dockerfile[-1])


def image_build_problems(name: str, build: Any) -> list[str]:
    """A hub image built by pulumi-docker (registry mode) passes NODE_OPTIONS with a heap size,
    builds with BuildKit from a registry cache, and its Dockerfile runs every npm install under the
    npm cache mount. `build` is the docker.Image's `build` input."""
    build = plain(build)
    if not isinstance(build, Mapping):
        return [f"{name}: the image has no build settings, so its npm cache mount and NODE_OPTIONS cannot be "
                "checked; fix: declare registry-mode hubs with components.resources.host.registry_image.push_with_docker"]
    args = plain(known(build, "args")) or {}
    problems = heap_problems(name, plain(known(args, "NODE_OPTIONS")) if isinstance(args, Mapping) else None,
                             "components.resources.host.registry_image.push_with_docker")
    if plain(known(build, "builderVersion")) not in (None, "BuilderBuildKit"):
        problems.append(f"{name}: builds with the classic builder, which has no cache mounts; fix: leave "
                        "builderVersion to BuildKit")
    cache = plain(known(build, "cacheFrom")) or {}
    if not (isinstance(cache, Mapping) and plain(known(cache, "images"))):
        problems.append(f"{name}: builds without a registry cache (cacheFrom.images), so a fresh CI runner installs "
                        "every package again; fix: declare it with components.resources.host.registry_image.push_with_docker")
    dockerfile = plain(known(build, "dockerfile"))
    if dockerfile:
        problems += dockerfile_problems(name, Path(dockerfile))
    return problems


def project_hubs(project_dir: Path) -> dict[str, Any]:
    """Each hub's container port by name, from the `workhub:hubs` catalog in Pulumi.yaml."""
    path = project_dir / "Pulumi.yaml"
    document = yaml.safe_load(path.read_text()) or {}
    entry = (document.get("config") or {}).get(f"{NAMESPACE}:hubs") or {}
    hubs = entry.get("value", []) if isinstance(entry, dict) else entry
    return {hub.get("name"): hub.get("port") for hub in hubs or [] if isinstance(hub, dict)}


def stack_overrides(project_dir: Path) -> list[str]:
    """The stack files that set `workhub:hubs` (the catalog is declared once, in Pulumi.yaml)."""
    found = []
    for path in sorted(project_dir.glob("Pulumi.*.yaml")):
        try:
            config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        except yaml.YAMLError:
            continue
        if any(key == f"{NAMESPACE}:hubs" or key.startswith(f"{NAMESPACE}:hubs.") for key in config):
            stack = path.name[len("Pulumi."):-len(".yaml")]
            found.append(f"{path.name} sets {NAMESPACE}:hubs, so stack {stack} may run a hub on another container "
                         f"port; fix: {PULUMI_CLI} config rm --stack {stack} {NAMESPACE}:hubs (change the hub in Pulumi.yaml)")
    return found


def run_port_problems(label: str, create: str, project_dir: Path) -> list[str]:
    """A hub's container starts with the port of the project's catalog, which no stack overrides."""
    values = script_values(create)
    if "port" not in values:
        return []  # a hub that is not promoted runs nothing
    hub = (values.get("hub") or [label[:-len("-run")]])[-1]
    port = values["port"][-1]
    try:
        catalog = project_hubs(project_dir)
    except (OSError, yaml.YAMLError) as error:
        return [f"{label}: cannot read the project's hub catalog from {project_dir / 'Pulumi.yaml'} ({error}); "
                "fix: run the engine in the project's directory"]
    problems = stack_overrides(project_dir)
    if hub not in catalog:
        problems.append(f"{label}: hub {hub} is not in {NAMESPACE}:hubs of {project_dir / 'Pulumi.yaml'}; fix: add it "
                        "there, with its port, once for every stack")
    elif str(catalog[hub]) != port:
        problems.append(f"{label}: starts {hub} with PORT {port}, but {NAMESPACE}:hubs in Pulumi.yaml says "
                        f"{catalog[hub]}; fix: take the port from the catalog (components.render.host.build.run_script with "
                        "the configured hub), so every stack runs the hub on one port")
    return problems


def looks_like_webhook(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        credentials = parts.username or parts.password
    except ValueError:
        return False
    query = {name.lower() for name, _ in urllib.parse.parse_qsl(parts.query)}
    return bool(credentials or _WEBHOOK_HOSTS.search(host) or "hook" in parts.path.lower() or query & _TOKEN_PARAMS)


def secret_problems(label: str, props: Mapping[str, Any], command: bool) -> list[str]:
    """No secret sits in an input as plain text: a RemoteCommand's privateKey and notifyUrl are
    secrets, and no other input holds a private key, a webhook-like URL, or a secret's value."""
    problems = []
    if command:
        for key in SECRET_INPUTS:
            try:
                value = known(props, key)
            except UnknownValueError:
                continue  # not known before the update; the engine runs the pack again then
            if value is not None and not isinstance(value, Secret):
                problems.append(f"{label}: input {key} is plain text, so it is stored unencrypted in the state and "
                                "shown in diffs; fix: pass it as a secret (pulumi.Output.secret, or "
                                f"pulumi.Config.require_secret of a `{PULUMI_CLI} config set --secret` value)")
    leaves = list(inputs(props))
    secrets = {leaf for _, leaf, secret in leaves if secret and isinstance(leaf, str) and len(leaf) >= 8}
    for path, leaf, secret in leaves:
        if secret or not isinstance(leaf, str):
            continue
        if _PRIVATE_KEY.search(leaf):
            problems.append(f"{label}: input {path} holds a private key in plain text; fix: pass the key only as the "
                            "secret privateKey input")
        hooks = sorted({urllib.parse.urlsplit(url).hostname or "?" for url in _URL.findall(leaf)
                        if looks_like_webhook(url)})
        if hooks:
            problems.append(f"{label}: input {path} holds what looks like a webhook URL (host {', '.join(hooks)}) in "
                            f"plain text; fix: set it with `{PULUMI_CLI} config set --secret workhub:notifyWebhook` and let "
                            "it reach the command only as the secret notifyUrl input")
        if any(value in leaf for value in secrets):
            problems.append(f"{label}: input {path} contains the value of one of its secret inputs in plain text; "
                            "fix: keep secret values out of scripts and triggers")
    return problems


def feedback_problems(label: str, props: Mapping[str, Any]) -> list[str]:
    """A command's scripts and triggers are known before anything runs, and it has no environment
    input, so no command's output can reach what a command runs."""
    problems = []
    if "environment" in keys(props):
        problems.append(f"{label}: has an `environment` input; workhub's commands take their values only as quoted "
                        "assignments in their scripts, so no output of an earlier run can flow into a command's "
                        "environment; fix: drop it and pass values through the script builders")
    for key in SCRIPT_INPUTS:
        unknown = [path for path, leaf, _ in walk_input(props, key) if isinstance(leaf, UnknownValueError)]
        if unknown:
            problems.append(f"{label}: {', '.join(unknown)} is not known before the update: it is computed from "
                            "another resource's output (such as a command's stdout), so what runs on the host would "
                            "depend on what ran before; fix: render it from the stack config only")
    return problems


def stdout_lines(text: Any) -> list[str]:
    """The lines of a command's stdout worth looking for elsewhere (its JSON facts, mostly)."""
    return [line.strip() for line in str(plain(text) or "").splitlines() if len(line.strip()) >= 16]


def graph_feedback_problems(commands: list[tuple[str, str, Mapping[str, Any], Mapping[str, list[str]]]],
                            label_of: Callable[[str], str]) -> list[tuple[str, str]]:
    """(urn, problem) for each command whose create/delete/triggers/environment depends on another
    command's output or contains a line of another command's stdout. `commands` holds
    (urn, label, props, property dependencies by input name)."""
    urns = {urn for urn, _, _, _ in commands}
    outputs = {}
    for urn, _, props, _ in commands:
        try:
            outputs[urn] = stdout_lines(known(props, "stdout"))
        except UnknownValueError:
            outputs[urn] = []
    found = []
    for urn, label, props, dependencies in commands:
        for key in (*SCRIPT_INPUTS, "environment", "secretValues"):
            sources = sorted({label_of(other) for other in dependencies.get(key, []) if other in urns and other != urn})
            if sources:
                found.append((urn, f"{label}: input {key} is computed from the output of {', '.join(sources)}, so "
                                   "what it runs depends on what ran before; fix: render it from the stack config only"))
            texts = [leaf for _, leaf, _ in walk_input(props, key) if isinstance(leaf, str)]
            copied = sorted({label_of(other) for other, lines in outputs.items() if other != urn
                             for line in lines if any(line in text for text in texts)})
            if copied:
                found.append((urn, f"{label}: input {key} contains stdout of {', '.join(copied)}; fix: render it "
                                   "from the stack config only"))
    return found

