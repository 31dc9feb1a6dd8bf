"""Typed stack config: read once, validated in full before any resource is registered.

Every value the program uses comes from the stack config under the `workhub:` namespace. A bad or
missing value stops the program with one message per problem, each naming its key path and the
command that fixes it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

NAMESPACE = "workhub"
DEFAULT_BASE_IMAGE = "node:20-bookworm-slim"

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_HOST_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+=*$")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]+)?$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class HostConfig(_Section):
    """The build host: where images are built and hubs run, reached over SSH."""

    address: str = Field(description="DNS name or IP address of the host.")
    user: str = Field(description="SSH user; it must be allowed to use Docker.")
    port: int = Field(22, ge=1, le=65535, description="SSH port.")
    host_key: str = Field(
        alias="hostKey",
        description="The host's public key, `<type> <base64>` as in ssh-keyscan output without the name.",
    )
    dial_error_limit: int = Field(
        10, alias="dialErrorLimit", ge=1, le=100, description="SSH connection attempts before giving up."
    )
    per_dial_timeout: int = Field(
        15, alias="perDialTimeout", ge=1, le=300, description="Seconds one SSH connection attempt may take."
    )
    keep_alive_interval: int = Field(
        30,
        alias="keepAliveInterval",
        ge=0,
        le=600,
        description="Seconds between SSH keep-alives while a command is quiet (0 turns them off).",
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not _HOSTNAME.match(value):
            raise ValueError("must be a DNS name or an IP address (letters, digits, '.', ':', '-')")
        return value

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        if not _USER.match(value):
            raise ValueError("must be a POSIX user name (lower-case letters, digits, '_', '-')")
        return value

    @field_validator("host_key")
    @classmethod
    def _host_key(cls, value: str) -> str:
        value = value.strip()
        if not _HOST_KEY.match(value):
            raise ValueError(
                "must be one public key line such as 'ssh-ed25519 AAAA...' "
                "(take it from `ssh-keyscan -t ed25519 <host>`, without the host name)"
            )
        return value


class StackConfig(_Section):
    """Everything one stack declares."""

    host: HostConfig
    base_image: str = Field(
        DEFAULT_BASE_IMAGE,
        alias="baseImage",
        description="The Node base image the hub Dockerfiles start FROM; the host checks BuildKit with it.",
    )

    @field_validator("base_image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not _IMAGE.match(value):
            raise ValueError("must be an image reference such as 'node:20-bookworm-slim'")
        return value


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


# Keys the program reads (besides the SSH key), each with the example value used in a fix.
_EXAMPLES = {
    "host.address": "<address>",
    "host.user": "deploy",
    "host.port": "22",
    "host.hostKey": "'ssh-ed25519 AAAA...'",
    "host.dialErrorLimit": "10",
    "host.perDialTimeout": "15",
    "host.keepAliveInterval": "30",
    "baseImage": DEFAULT_BASE_IMAGE,
}
SSH_KEY = "sshPrivateKey"


def _fix_for(path: str, stack: str, unknown: bool) -> str:
    if unknown:
        known = ", ".join([*_EXAMPLES, SSH_KEY])
        return f"remove it (pulumi config rm --stack {stack} --path '{NAMESPACE}:{path}'); known settings: {known}"
    example = _EXAMPLES.get(path, "<value>")
    return f"pulumi config set --stack {stack} --path '{NAMESPACE}:{path}' {example}"


def _problems_from(error: ValidationError, stack: str) -> list[Problem]:
    problems = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            message = "is not a known setting"
        elif item["type"] == "missing":
            message = "is not set"
        else:
            message = item["msg"].removeprefix("Value error, ")
        unknown = item["type"] == "extra_forbidden"
        problems.append(Problem(f"{NAMESPACE}:{path}", message, _fix_for(path, stack, unknown)))
    return problems


def parse_stack_config(raw: Mapping[str, Any], *, stack: str, secret_keys: set[str]) -> StackConfig:
    """Validate the whole `workhub:` config of one stack.

    `raw` maps every key set in the namespace, without the `workhub:` prefix, to its value (objects
    already decoded); `secret_keys` names the keys that are stored as secrets. The SSH key is only
    checked for presence and secrecy: its value never reaches the typed config.
    """
    problems: list[Problem] = []
    values = {k: v for k, v in raw.items() if k != SSH_KEY}
    config: Optional[StackConfig] = None
    try:
        config = StackConfig.model_validate(values)
    except ValidationError as error:
        problems += _problems_from(error, stack)
    key_fix = f"pulumi config set --stack {stack} --secret {NAMESPACE}:{SSH_KEY} < <path to the deploy key>"
    if raw.get(SSH_KEY) in (None, ""):
        problems.append(Problem(f"{NAMESPACE}:{SSH_KEY}", "is not set", key_fix))
    elif SSH_KEY not in secret_keys:
        problems.append(Problem(f"{NAMESPACE}:{SSH_KEY}", "is stored in plain text; it must be a secret", key_fix))
    if problems:
        raise ConfigError(problems)
    assert config is not None
    return config


def namespaced(config: Mapping[str, Any], secret_keys: list[str]) -> tuple[dict[str, Any], set[str]]:
    """Pick the `workhub:` keys out of the engine's config map, decoding object values."""
    prefix = f"{NAMESPACE}:"
    raw: dict[str, Any] = {}
    for key, value in config.items():
        if not key.startswith(prefix):
            continue
        if isinstance(value, str) and value[:1] in ("{", "["):
            value = json.loads(value)
        raw[key[len(prefix):]] = value
    return raw, {k[len(prefix):] for k in secret_keys if k.startswith(prefix)}
