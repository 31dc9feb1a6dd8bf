"""What a stack will build, decided before any resource exists: each hub's context, content
hashes and image tag, plus the checks that need the project's files (sources present, Dockerfiles
conforming, no other stack file redefining the hubs or taking the same host ports)."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.config.models import HUB_SECRETS, NAMESPACE, PROJECT_KEYS, Hub, StackConfig, member
from components.config.checks import Problem, fix_for, path_arg, secret_fix_for
from components.plan.dockerfile import retry_secret
from components.plan.context import DockerignoreError, build_files, content_hash, context_files, read_rules
from components.constants import PULUMI_CLI
from components.render.host.build import build_args, install_retry_file


@dataclass(frozen=True)
class HubPlan:
    """One hub of one stack, ready to build: where its files are and what identifies the build."""

    hub: Hub
    stack: str
    context: Path
    host_port: int
    triggers: dict[str, str]
    """Why a rebuild happens: the hash of the context files, of the Dockerfile, of the settings."""
    build_files: tuple[str, ...] = ()
    """The Dockerfile and .dockerignore when .dockerignore leaves them out (uploaded all the same)."""
    retry_secret: bool = False
    """A build on the host gives the install retry as a BuildKit secret: the Dockerfile's installs
    that run it mount that secret (components.plan.dockerfile.retry_secret)."""

    @property
    def build_id(self) -> str:
        return _sha(json.dumps(self.triggers, sort_keys=True))[:12]

    @property
    def image(self) -> str:
        return f"{self.hub.name}:{self.stack}-{self.build_id}"


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def context_of(hub: Hub, config: StackConfig, project_dir: Path) -> Path:
    return (project_dir / config.source_root / hub.context).resolve()


def plan_hub(hub: Hub, config: StackConfig, stack: str, project_dir: Path) -> HubPlan:
    context = context_of(hub, config, project_dir)
    files = context_files(context)
    dockerfile = (context / hub.dockerfile).read_bytes()
    # A registry-mode build (pulumi-docker's Image) can give no secret: the retry is its build arg.
    secret = hub.build_mode != "registry" and retry_secret(dockerfile.decode(errors="replace"), hub.dockerfile)
    settings = {
        "baseImage": config.base_image,
        "buildArgs": build_args(hub, config.build, config.npm_registry, secret),
        "progress": config.build.progress,
    }
    if secret:
        settings["installRetry"] = install_retry_file(config.build)
    if hub.build_mode == "registry" and config.registry is not None:
        # Built elsewhere, maybe for another platform: not the same build as the host's.
        settings.update(mode="registry", platform=config.registry.platform)
    return HubPlan(
        hub=hub,
        stack=stack,
        context=context,
        host_port=config.host_ports[hub.name],
        triggers={
            "source": content_hash(context, files),
            "dockerfile": _sha(dockerfile),
            "settings": _sha(json.dumps(settings, sort_keys=True)),
        },
        build_files=build_files(context, files, hub.dockerfile),
        retry_secret=secret,
    )


def _dockerignore_error(context: Path) -> DockerignoreError | None:
    try:
        read_rules(context)
    except DockerignoreError as error:
        return error
    return None


def source_problems(config: StackConfig, stack: str, project_dir: Path) -> list[Problem]:
    """Each hub's context and Dockerfile exist, and the Dockerfile follows the cached-install pattern."""
    from components.plan.dockerfile import check_dockerfile

    problems = []
    root = (project_dir / config.source_root).resolve()
    for index, hub in enumerate(config.hubs):
        context = context_of(hub, config, project_dir)
        dockerfile = context / hub.dockerfile
        if not context.is_relative_to(root):
            # `..` is refused with the config; a symlinked directory on the way resolves elsewhere.
            problems.append(Problem(
                f"{NAMESPACE}:hubs[{index}].context",
                f"{hub.context} resolves to {context}, outside workhub:sourceRoot ({root}) through a symbolic "
                f"link (hub {hub.name}); workhub uploads nothing from outside sourceRoot",
                f"put the hub's source itself under {root} (not a link to it), or set workhub:sourceRoot to "
                f"a directory that holds it: {PULUMI_CLI} config set --stack {stack} workhub:sourceRoot <dir>",
            ))
        elif not context.is_dir():
            problems.append(Problem(
                f"{NAMESPACE}:hubs[{index}].context",
                f"{context} is not a directory (hub {hub.name}, workhub:sourceRoot {config.source_root!r})",
                f"check out {hub.context} under {project_dir / config.source_root}, or set workhub:sourceRoot: "
                f"{PULUMI_CLI} config set --stack {stack} workhub:sourceRoot <dir>",
            ))
        elif not dockerfile.is_file():
            problems.append(Problem(
                f"{NAMESPACE}:hubs[{index}].dockerfile",
                f"{dockerfile} does not exist (hub {hub.name})",
                fix_for(f"hubs[{index}].dockerfile", stack),
            ))
        elif (error := _dockerignore_error(context)) is not None:
            problems.append(Problem(
                f"{NAMESPACE}:hubs[{index}].context",
                f"{context}/{error} (hub {hub.name})",
                f"correct line {error.line} of {context / '.dockerignore'}",
            ))
        else:
            for violation in check_dockerfile(dockerfile, context):
                if violation.severity == "warning":
                    continue  # dockerfile_warnings reports them; they do not stop the stack
                problems.append(Problem(
                    f"{NAMESPACE}:hubs[{index}].dockerfile",
                    f"{violation.path}:{violation.line}: {violation.message} (hub {hub.name})",
                    f"{violation.fix}; or rewrite it: python -m workhub dockerfile conform {dockerfile}"
                    + (f" --context {context}" if dockerfile.parent != context else ""),
                ))
    return problems


def _stack_files(project_dir: Path) -> dict[str, dict[str, Any]]:
    """The `config:` of every Pulumi.<stack>.yaml in the project, by stack name."""
    found = {}
    for path in sorted(project_dir.glob("Pulumi.*.yaml")):
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            continue
        found[path.name[len("Pulumi."):-len(".yaml")]] = document.get("config") or {}
    return found


def _same_host(mine: StackConfig, other: dict[str, Any]) -> bool:
    """Unless both stacks name their host and the names differ, assume they share it."""
    host = other.get(f"{NAMESPACE}:host")
    address = host.get("address") if isinstance(host, dict) else None
    return address is None or address == mine.host.address


def stack_file_problems(config: StackConfig, stack: str, project_dir: Path) -> list[Problem]:
    """No stack file redefines the project's hubs or build settings (so a hub's container port is
    the same in every stack), and no two stacks on one host take the same host port."""
    problems = []
    files = _stack_files(project_dir)
    for name, values in files.items():
        for key in PROJECT_KEYS:
            if f"{NAMESPACE}:{key}" in values:
                problems.append(Problem(
                    f"{NAMESPACE}:{key}",
                    f"is set in Pulumi.{name}.yaml, but it is declared once for every stack in Pulumi.yaml "
                    "(so each hub keeps one container PORT everywhere)",
                    f"move the change into Pulumi.yaml and remove it from the stack: "
                    f"{PULUMI_CLI} config rm --stack {name} {NAMESPACE}:{key}",
                ))
    problems += plain_secret_problems(files.get(stack, {}), stack)
    mine = {port: hub for hub, port in config.host_ports.items()}
    for name, values in files.items():
        if name == stack or not _same_host(config, values):
            continue
        ports = values.get(f"{NAMESPACE}:hostPorts")
        for hub, port in (ports.items() if isinstance(ports, dict) else []):
            if port in mine:
                problems.append(Problem(
                    f"{NAMESPACE}:hostPorts.{mine[port]}",
                    f"port {port} is also stack {name}'s host port for {hub}, on the same host",
                    f"{PULUMI_CLI} config set --stack {stack} {path_arg(f'hostPorts.{mine[port]}')} <a free port>",
                ))
    return problems


def plain_secret_problems(values: dict[str, Any], stack: str) -> list[Problem]:
    """Every hub secret the stack file holds is encrypted (`secure:`): the engine only says whether
    workhub:secrets as a whole holds a secret, so one value set without --secret would pass."""
    problems = []
    found = values.get(f"{NAMESPACE}:{HUB_SECRETS}")
    for hub, secrets in (found.items() if isinstance(found, dict) else []):
        for name, value in (secrets.items() if isinstance(secrets, dict) else []):
            if not (isinstance(value, dict) and set(value) == {"secure"}):
                problems.append(Problem(f"{NAMESPACE}:{HUB_SECRETS}{member(hub)}{member(name)}",
                                        f"is stored in plain text in Pulumi.{stack}.yaml; it must be a secret",
                                        secret_fix_for(stack, hub, name)))
    return problems


def host_only_warnings(config: StackConfig) -> list[str]:
    """A stack with no hub in workhub:hubs is a host check, and says so: only the host's own
    commands run (its facts, the preflight, the SSH keep-alive setup); nothing is built or deployed."""
    if config.hubs:
        return []
    return ["workhub:hubs is empty: this stack builds and deploys nothing, it only checks the host (its facts "
            "and the preflight) and keeps its SSH sessions alive; to deploy a hub, add it to workhub:hubs in "
            "Pulumi.yaml and its host port as workhub:hostPorts.<hub> in each stack"]


def dockerfile_warnings(config: StackConfig, project_dir: Path) -> list[str]:
    """The Dockerfile check's warnings for each hub: a FROM other than workhub:baseImage, OS package
    downloads no cache mount keeps (the network steps a weak link fails on next)."""
    from components.plan.dockerfile import DockerfileError, check_dockerfile

    warnings = []
    for hub in config.hubs:
        dockerfile = context_of(hub, config, project_dir) / hub.dockerfile
        try:  # the warnings do not depend on the context's files, so it is not walked again here
            found = check_dockerfile(dockerfile, base_image=config.base_image)
        except (OSError, DockerfileError):
            continue
        warnings += [f"{hub.name}: {v.path}:{v.line}: {v.message}; fix: {v.fix}"
                     for v in found if v.severity == "warning"]
    return warnings


def unreadable_files(context: Path) -> list[str]:
    """The entries of a hub's context (as Docker sends it) that others cannot read: a regular file
    without read permission for others, or a directory on its way without read and search."""
    found: set[str] = set()
    checked: set[str] = set()  # each folder on the way is looked at once, not once per file under it
    for path in context_files(context):
        parts = path.rstrip("/").split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth]) + "/"
            if folder not in checked:
                checked.add(folder)
                if (os.lstat(context / folder).st_mode & 0o005) != 0o005:
                    found.add(folder)
        mode = os.lstat(context / path).st_mode
        if path.endswith("/"):
            if (mode & 0o005) != 0o005:
                found.add(path)
        elif stat.S_ISREG(mode) and not mode & stat.S_IROTH:
            found.add(path)
    return sorted(found)


def private_file_warnings(config: StackConfig, project_dir: Path) -> list[str]:
    """One warning for each registry-mode hub whose context holds files others cannot read: that
    build sends them with their modes as they are (a host build's upload gives every file 0644 or
    0755), COPY makes them root's, and the hub runs as its own uid, so it could not read them."""
    warnings = []
    for index, hub in enumerate(config.hubs):
        if hub.build_mode != "registry":
            continue
        context = context_of(hub, config, project_dir)
        try:
            found = unreadable_files(context)
        except (OSError, DockerignoreError):
            continue  # source_problems names a missing context or a bad .dockerignore
        if found:
            shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
            warnings.append(
                f"{hub.name}: {len(found)} entries of {context} are not readable by others ({shown}); "
                f"hubs[{index}] builds in registry mode, which keeps the context's modes, and the image's "
                f"files belong to root while the hub runs as its own uid, so it cannot read them "
                f"(\"permission denied\" at its start); fix: chmod -R a+rX {context}")
    return warnings


def volume_warnings(config: StackConfig, project_dir: Path) -> list[str]:
    """One warning for each path a hub's Dockerfile declares as VOLUME with no named volume of the
    hub mounted there: the data written there would live in an anonymous volume of one container."""
    from components.plan.dockerfile import DockerfileError, declared_volumes

    warnings = []
    for index, hub in enumerate(config.hubs):
        dockerfile = context_of(hub, config, project_dir) / hub.dockerfile
        try:
            declared = declared_volumes(dockerfile.read_text(), str(dockerfile))
        except (OSError, DockerfileError):
            continue
        kept = {target.rstrip("/") for target in hub.volumes.values()}
        for path, line in declared:
            if path not in kept:
                name = posixpath.basename(path) or "data"
                warnings.append(
                    f"{hub.name}: {dockerfile}:{line} declares VOLUME {path}, but workhub:hubs[{index}].volumes "
                    f"mounts no named volume there, so what the hub writes there stays behind in an anonymous "
                    f"volume at each deploy and is lost to the next version; keep it: add `volumes: "
                    f"{{{name}: {path}}}` to hub {hub.name} in Pulumi.yaml")
    return warnings


def plan_stack(
    config: StackConfig, stack: str, project_dir: Path
) -> tuple[list[HubPlan], list[Problem]]:
    """Every hub's plan, or the problems that stop the stack before anything is registered."""
    problems = stack_file_problems(config, stack, project_dir) + source_problems(config, stack, project_dir)
    if problems:
        return [], problems
    return [plan_hub(hub, config, stack, project_dir) for hub in config.hubs], []
