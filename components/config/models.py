"""Typed stack config: the pydantic models of every `workhub:` setting, each field with its own rule
and description, their defaults, and the few values derived from a model alone (a hub's uid, which
hubs are built). The rules across fields are in components.config.checks.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import urllib.parse
from typing import Annotated, Any, Optional

from docker_image.reference import InvalidReference, Reference
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, field_validator

from components.constants import PULUMI_CLI

NAMESPACE = "workhub"
DEFAULT_BASE_IMAGE = "node:24-bookworm-slim"
DEFAULT_PROXY_IMAGE = "haproxy:2.6"
# The short-lived helper containers' image: a shell, tar, find, sha256sum and chown, nothing more.
DEFAULT_HELPER_IMAGE = "busybox:1.37"
# The stack whose hubs' data is protected unless its config says otherwise (workhub:protectData).
PRODUCTION_STACK = "production"

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_HOST_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+=*$")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _split_port(address: str) -> tuple[str, str]:
    """`host:5000` -> (host, 5000); without a port (an IPv6 address too) -> (address, "")."""
    head, colon, tail = address.rpartition(":")
    return (head, tail) if colon and tail.isdigit() and not head.endswith(":") else (address, "")


def endpoint_problem(address: str) -> Optional[str]:
    """Why `address` (host, or host:port) reaches nothing although its form passes: a port outside
    1 to 65535, or digits and dots that are no IPv4 address (a resolver reads 10.5 as 10.0.0.5 and
    looks 10.0.0.300 up as a name); None when neither."""
    host, port = _split_port(address)
    if port and not 1 <= int(port) <= 65535:
        return f"its port {port} is outside 1 to 65535"
    if re.fullmatch(r"[0-9.]+", host) and not _is_ip(host):
        return f"{host} is not an IPv4 address (four numbers from 0 to 255)"
    return None


def _no_bool(value: Any) -> Any:
    """YAML's true/false are not numbers (pydantic would take true for 1)."""
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not true or false")
    return value


Int = Annotated[int, BeforeValidator(_no_bool)]
"""A whole number: written as a number or as its digits (`pulumi config set --path` gives text)."""
Port = Annotated[Int, Field(ge=1, le=65535)]
# A size in MB no disk has (16 TiB), so the host's shell can still compare it.
MAX_MB = 16 * 1024 * 1024
# The highest user id a hub may run as: a tar archive of its volume (backup, restore) keeps file
# owners up to 7 octal digits in every tar format.
MAX_UID = 0o7777777


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class HostConfig(_Section):
    """The build host: where images are built and hubs run, reached over SSH."""

    address: str = Field(description="DNS name or IP address of the host (without the port: that is port).")
    user: str = Field(description="SSH user; it must be allowed to use Docker.")
    port: Int = Field(22, ge=1, le=65535, description="SSH port.")
    host_key: str = Field(
        alias="hostKey",
        description="The host's public key, `<type> <base64>` as in ssh-keyscan output without the name (e.g. "
                    "`ssh-ed25519 AAAA...`); a host that offers any other key is refused.",
    )
    dial_error_limit: Int = Field(
        10, alias="dialErrorLimit", ge=1, le=100,
        description="SSH connection attempts before giving up (network errors only; a wrong host key or a refused "
                    "key fails at once).",
    )
    per_dial_timeout: Int = Field(
        15, alias="perDialTimeout", ge=1, le=300, description="Seconds one SSH connection attempt may take."
    )
    keep_alive_interval: Int = Field(
        30,
        alias="keepAliveInterval",
        ge=0,
        le=600,
        description="Seconds between SSH keep-alives while a command is quiet, so a quiet build never looks like a "
                    "dead session (0 turns them off).",
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not _HOSTNAME.fullmatch(value):
            raise ValueError("must be a DNS name or an IP address (letters, digits, '.', ':', '-')")
        if ":" in value and not _is_ip(value):
            raise ValueError(f"holds ':', which only an IPv6 address has: SSH would look up {value!r} as a host "
                             "name; the SSH port is a setting of its own (address: 10.0.0.5, port: 2222)")
        problem = endpoint_problem(value)
        if problem:
            raise ValueError(f"must be a DNS name or an IP address; {problem}")
        return value

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        if not _USER.fullmatch(value):
            raise ValueError("must be a POSIX user name (lower-case letters, digits, '_', '-')")
        return value

    @field_validator("host_key")
    @classmethod
    def _host_key(cls, value: str) -> str:
        value = value.strip()
        if not _HOST_KEY.fullmatch(value):
            raise ValueError(
                "must be one public key line such as 'ssh-ed25519 AAAA...' "
                "(take it from `ssh-keyscan -t ed25519 <host>`, without the host name)"
            )
        from cryptography.hazmat.primitives.serialization import load_ssh_public_key

        try:
            load_ssh_public_key(value.encode())  # the key's own format, its length and curve point
        except (ValueError, TypeError) as error:
            raise ValueError(f"is not a valid {value.split()[0]} public key ({error}); take it again from "
                             "`ssh-keyscan -t ed25519 <host>`") from None
        return value


_HUB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
# Any path Docker takes (the scripts quote every value), but for control characters.
_PATH = re.compile(r"[^\x00-\x1f\x7f]+")
_HTTP_PATH = re.compile(r"^/[A-Za-z0-9._~/-]*$")
_ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_URL = re.compile(r"^https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~/-]*)?$")
_SERVER = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$")
_REPOSITORY = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_PLATFORM = re.compile(r"^linux/(amd64|arm64|arm/v7|arm/v6|386|ppc64le|s390x|riscv64)$")
BUILD_MODES = ("remote", "registry")
# BuildKit progress outputs (`--progress`); plain streams every step's log.
PROGRESS_MODES = ("plain", "auto", "tty", "quiet")
# What a build's RUN steps may reach (`docker build --network`, the values BuildKit takes): `default`
# is Docker's default bridge network (no access to the host's loopback), `host` the host's own
# network (its loopback too), `none` no network at all.
BUILD_NETWORKS = ("default", "host", "none")
# Every capability Linux knows (linux/capability.h, 0 to 40), as Docker names them without `CAP_`.
# Docker takes each with or without `CAP_`, in any case; one the host's kernel lacks is refused
# when the container starts.
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)
# The processes (threads count) a hub's container may run at once unless it says otherwise: a
# Node app uses a few dozen; a fork bomb is stopped well before it starves the host.
DEFAULT_PIDS_LIMIT = 512
# The kernel's highest pid (PID_MAX_LIMIT on 64-bit).
MAX_PIDS = 4 * 1024 * 1024
# Build args workhub sets itself; a hub's own buildArgs may not override them.
RESERVED_BUILD_ARGS = (
    "NODE_OPTIONS",
    "NPM_CONFIG_REGISTRY",
    "NPM_CONFIG_FETCH_RETRIES",
    "NPM_CONFIG_FETCH_TIMEOUT",
    "NPM_CONFIG_FETCH_RETRY_MINTIMEOUT",
    "NPM_CONFIG_FETCH_RETRY_MAXTIMEOUT",
    "NPM_CONFIG_PREFER_OFFLINE",
    "WORKHUB_RETRY",
)


# The largest whole number a config value carries exactly: Pulumi passes config on as JSON numbers
# (64-bit floats), so a longer one arrives with other digits.
EXACT_INT = 2 ** 53


def _env_text(value: Any) -> Any:
    """A setting's value as the container sees it: text, with YAML's true/false and whole numbers
    spelled as YAML reads them (true, 3), never Python's (True). A YAML number with a fraction or
    an exponent is refused: it reaches the container as YAML reads it (1.10 as 1.1), not as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        raise ValueError(f"is a YAML number, read as {json.dumps(value)} whatever digits were written (1.10 "
                         "reads as 1.1); put the value in quotes, such as '1.10'")
    if isinstance(value, int) and abs(value) > EXACT_INT:
        raise ValueError(f"is a YAML number too long to arrive exactly (it is read as {value}); put the value in "
                         "quotes")
    if isinstance(value, int):
        return str(value)
    return value


EnvValue = Annotated[StrictStr, BeforeValidator(_env_text)]
"""A run-time setting's value: text, a whole YAML number or a YAML boolean (as YAML reads them); a
number with a fraction is refused (it would not reach the container as written)."""


def image_reference_problem(value: str) -> Optional[str]:
    """Why Docker would refuse `value` as an image reference, or None. docker-image-py ports the
    grammar of distribution/reference, which Docker itself parses with (a registry with a port,
    a digest, a path of several parts); its patterns end in `$`, which matches before a final
    line break, so a value must also be free of whitespace and control characters."""
    if not value or any(ch.isspace() or not ch.isprintable() for ch in value):
        return "has a space, a line break or a control character"
    try:
        registry, _ = Reference.parse(value).split_hostname()
    except InvalidReference as error:
        return str(error)
    problem = endpoint_problem(registry) if registry else None
    return f"registry {registry}: {problem}" if problem else None


def _image(rule: str) -> Any:
    """A field validator: the value is an image reference Docker accepts."""

    def check(cls, value: str) -> str:
        problem = image_reference_problem(value)
        if problem:
            raise ValueError(f"{rule} ({problem})")
        return value

    return classmethod(check)


def _matches(pattern: re.Pattern, rule: str, allow_parent: bool = False) -> Any:
    """A field validator: the value matches `pattern` (and, unless allowed, has no '..' step)."""

    def check(cls, value: str) -> str:
        if not pattern.fullmatch(value) or (not allow_parent and ".." in value.split("/")):
            raise ValueError(rule)
        return value

    return classmethod(check)


class Hub(_Section):
    """One hub: where its source is, how it is built, and what it listens on in its container."""

    name: str = Field(description="Lower-case name; the image is `<name>:<stack>-<hash>`.")
    context: str = Field(description="Build context directory, relative to workhub:sourceRoot.")
    dockerfile: str = Field("Dockerfile", description="Dockerfile path, relative to the context.")
    port: Int = Field(ge=1, le=65535, description="The container's PORT: the same in every stack.")
    health_path: str = Field("/health", alias="healthPath", description="Answers 200 when the hub is up.")
    build_args: dict[str, EnvValue] = Field(default_factory=dict, alias="buildArgs", json_schema_extra={"keys": "NAME"},
                                       description="Extra build args: NAME -> value (not one workhub sets itself).")
    build_mode: str = Field(
        "remote", alias="buildMode", json_schema_extra={"values": BUILD_MODES},
        description="remote: built on the host over SSH; registry: built where Pulumi runs, pushed to "
                    "workhub:registry, pulled by the host.",
    )
    env: dict[str, EnvValue] = Field(
        default_factory=dict, json_schema_extra={"keys": "NAME"},
        description="Plain run-time settings, the same in every stack: NAME -> value (a stack may not change them). "
                    "Quote a value YAML would read as a number other than as written: '1.10', not 1.10 (1.1).",
    )
    stack_env: list[str] = Field(
        default_factory=list, alias="stackEnv",
        description="Plain run-time settings whose value each stack sets: workhub:env.<hub>.<NAME>.",
    )
    secrets: list[str] = Field(
        default_factory=list,
        description="Secret run-time settings each stack sets with "
                    f"`{PULUMI_CLI} config set --secret --path workhub:secrets.<hub>.<NAME>`.",
    )
    volumes: dict[str, str] = Field(
        default_factory=dict, json_schema_extra={"keys": "name"},
        description="Named volumes: name -> path in the container, mounted read-write (a mode such as :ro is "
                    "refused); kept across deploys and destroy.",
    )
    port_env: Optional[str] = Field(
        None, alias="portEnv", description="Another variable the app reads its port from (PORT is always set).",
    )
    uid: Optional[Int] = Field(
        None, ge=1, le=MAX_UID,
        description="The user id the hub's container runs as, and that owns the files of its volumes (never 0, "
                    "root). Default: one of its own per stack, above every host account (components.config.models.run_uid).",
    )
    cap_add: list[str] = Field(
        default_factory=list, alias="capAdd",
        description="Capabilities the hub's container gets back (it drops all of them): Docker's names, such "
                    "as NET_BIND_SERVICE (or CAP_NET_BIND_SERVICE).",
    )
    pids_limit: Int = Field(
        DEFAULT_PIDS_LIMIT, alias="pidsLimit", ge=1, le=MAX_PIDS,
        description="Processes and threads the hub's container may run at once.",
    )
    memory_mb: Optional[Int] = Field(
        None, alias="memoryMb", ge=6, le=1024 * 1024,
        description="Memory limit of the hub's container (Docker's least is 6 MB); none by default.",
    )
    build_network: str = Field(
        "default", alias="buildNetwork", json_schema_extra={"values": BUILD_NETWORKS},
        description="What the build's RUN steps reach: default (Docker's bridge network), host (the host's "
                    "network, its loopback services too) or none.",
    )

    _name = field_validator("name")(_matches(_HUB_NAME, "must be lower-case letters, digits and '-', starting with a letter, at most 31 characters"))
    _context = field_validator("context", "dockerfile")(
        _matches(_PATH, "must be a relative path without '..' or control characters")
    )
    _health = field_validator("health_path")(_matches(_HTTP_PATH, "must be a URL path such as /health"))

    @field_validator("build_mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in BUILD_MODES:
            raise ValueError("must be remote (build on the host) or registry (build where Pulumi runs, then pull)")
        return value

    @field_validator("build_network")
    @classmethod
    def _build_network(cls, value: str) -> str:
        if value not in BUILD_NETWORKS:
            raise ValueError("must be default (Docker's bridge network), host (the host's network, for a build that "
                             "must reach a service on the host's loopback) or none")
        return value

    @field_validator("cap_add")
    @classmethod
    def _capabilities(cls, value: list[str]) -> list[str]:
        names: list[str] = []
        for given in value:
            name = given.upper().removeprefix("CAP_")
            if name == "ALL":
                raise ValueError("ALL would give the hub back every capability; name the ones it needs, such as "
                                 "NET_BIND_SERVICE")
            if name not in CAPABILITIES:
                raise ValueError(f"{given!r} is not a capability Docker knows (such as NET_BIND_SERVICE or "
                                 "CAP_NET_BIND_SERVICE)")
            if name not in names:
                names.append(name)
        return names

    @field_validator("context", "dockerfile")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/"):
            raise ValueError("must be relative (contexts are relative to workhub:sourceRoot)")
        return value

    @field_validator("build_args")
    @classmethod
    def _args(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ARG_NAME.fullmatch(key):
                raise ValueError(f"{key!r} is not a build arg name (letters, digits, '_')")
            if key in RESERVED_BUILD_ARGS:
                raise ValueError(f"{key} is set by workhub from workhub:build; set it there")
            if "\n" in value[key] or "\r" in value[key]:
                raise ValueError(f"the value of {key} holds a line break; build args are one line")
        return value


class BuildSettings(_Section):
    """How every hub is built: Node heap, npm's network settings, progress output."""

    node_heap_mb: Int = Field(4096, alias="nodeHeapMb", ge=256, le=65536,
                              description="NODE_OPTIONS=--max-old-space-size for the build; the preflight checks the host "
                                          "can hold it.")
    npm_fetch_retries: Int = Field(5, alias="npmFetchRetries", ge=0, le=20,
                                   description="npm's retries of a request that failed inside the build (a reset, "
                                               "a 5xx); npm never retries a download cut short.")
    # Measured (docs/benchmarks.md, "new defaults"): a stalled request costs one fetch-timeout of
    # silence, a reset one retry pause; npm's fetch-retry-factor of 10 makes its second pause the
    # maximum, so the maximum is kept short.
    npm_fetch_timeout_ms: Int = Field(5000, alias="npmFetchTimeoutMs", ge=1000, le=600000,
                                      description="How long npm waits for a byte from the registry: a stalled "
                                                  "request costs this much silence (raise it for a registry "
                                                  "that is slow to answer).")
    npm_fetch_retry_min_timeout_ms: Int = Field(1000, alias="npmFetchRetryMinTimeoutMs", ge=100, le=600000,
                                                description="npm's pause before its first retry of a request.")
    npm_fetch_retry_max_timeout_ms: Int = Field(4000, alias="npmFetchRetryMaxTimeoutMs", ge=100, le=600000,
                                                description="npm's longest pause between retries (its retry "
                                                            "factor of 10 makes the second pause this maximum).")
    npm_prefer_offline: bool = Field(
        True, alias="npmPreferOffline",
        description="Use the cache mount's packages without asking the registry first; only what is missing is fetched.",
    )
    install_tries: Int = Field(
        3, alias="installTries", ge=1, le=10,
        description="An install written `eval \"$WORKHUB_RETRY\" npm ci` is tried again inside its cache-mounted "
                    "step when it fails from the network: a try that stored new packages in the npm cache is "
                    "free, this many tries that stored none end it (the first again at once, then after "
                    "retryBackoffSeconds x n).",
    )
    install_max_tries: Int = Field(10, alias="installMaxTries", ge=1, le=50,
                                   description="Tries of one npm install in all, free ones included: they end it "
                                               "in any case.")
    # Measured (docs/benchmarks.md, "cut downloads"): npm retries no cut body, and a failed `npm ci`
    # extracts everything else before it fails, then removes it; so a cut cost a whole install.
    install_fill_cache: bool = Field(
        True, alias="installFillCache",
        description="In an install run by `eval \"$WORKHUB_RETRY\" npm ci` (where the image has node): a try "
                    "stops at its first download cut short (npm would extract everything else first, then remove "
                    "it all), the lockfile's packages are then fetched into the npm cache by npm's own fetcher, "
                    "each download tried again on its own, and the next try installs from the cache; so a cut "
                    "costs one more extract, not another whole install.",
    )
    progress: str = Field("plain", json_schema_extra={"values": PROGRESS_MODES},
                          description="BuildKit progress output; plain streams every step's log.")
    attempts: Int = Field(5, ge=1, le=10, description="Tries of a build that fails from the network (npm's "
                                                      "ECONNRESET, ETIMEDOUT, cut downloads, a registry's 5xx...); "
                                                      "docs/benchmarks.md has the measurements.")
    attempt_timeout_seconds: Int = Field(
        1800, alias="attemptTimeoutSeconds", ge=60, le=86400,
        description="A try still running after this long is stopped and counts as a network failure "
                    "(it is tried again).",
    )
    retry_backoff_seconds: Int = Field(10, alias="retryBackoffSeconds", ge=0, le=600,
                                       description="Pause before try n+1: n times this.")
    cache_keep_storage_mb: Int = Field(
        4096, alias="cacheKeepStorageMb", ge=0, le=MAX_MB,
        description="Build cache kept besides the npm cache mounts; older layers are collected before builds.",
    )
    min_free_disk_mb: Int = Field(2048, alias="minFreeDiskMb", ge=0, le=MAX_MB,
                                  description="The preflight's floor of free disk under Docker's root.")

    @field_validator("progress")
    @classmethod
    def _progress(cls, value: str) -> str:
        if value not in PROGRESS_MODES:
            raise ValueError(f"must be one of {', '.join(PROGRESS_MODES)} (plain streams every line)")
        return value


class DeploySettings(_Section):
    """How a new container takes over from the old one behind the hub's proxy."""

    health_timeout_seconds: Int = Field(
        60, alias="healthTimeoutSeconds", ge=1, le=3600,
        description="How long a new container has to answer its health path; it gets no traffic until then, "
                    "and is removed if it does not. More than healthyPasses x healthIntervalMs.",
    )
    healthy_passes: Int = Field(
        3, alias="healthyPasses", ge=1, le=100,
        description="Answers of 200 in a row the new container must give before traffic switches to it.",
    )
    health_interval_ms: Int = Field(500, alias="healthIntervalMs", ge=100, le=10000,
                                    description="Pause between two health probes of the new container.")
    stop_grace_seconds: Int = Field(
        30, alias="stopGraceSeconds", ge=0, le=3600,
        description="How long the old container has to finish its in-flight requests after the switch (then "
                    "SIGTERM, and the same time again before SIGKILL).",
    )


class SshKeepAlive(_Section):
    """Keep-alives written on the host, so a quiet build never drops an SSH session."""

    server_alive_interval: Int = Field(60, alias="serverAliveInterval", ge=0, le=3600,
                                       description="ServerAliveInterval in the host's ~/.ssh/config (seconds).")
    server_alive_count_max: Int = Field(120, alias="serverAliveCountMax", ge=1, le=10000,
                                        description="ServerAliveCountMax in the host's ~/.ssh/config.")
    client_alive_interval: Int = Field(60, alias="clientAliveInterval", ge=0, le=3600,
                                       description="sshd's ClientAliveInterval (seconds), through a drop-in where the "
                                                   "deploy user may use sudo.")
    client_alive_count_max: Int = Field(120, alias="clientAliveCountMax", ge=1, le=10000,
                                        description="sshd's ClientAliveCountMax, through the same drop-in.")


class RegistryConfig(_Section):
    """Where registry-mode hubs are pushed (from where Pulumi runs) and pulled (by the host)."""

    server: str = Field(description="The registry's host[:port], as both CI and the host reach it (no scheme).")
    repository: str = Field("workhub", description="Path under the server: images are <server>/<repository>/<hub>.")
    username: Optional[str] = Field(None, description="Login user (none: no login); its password is the secret "
                                                          "workhub:registryPassword.")
    platform: Optional[str] = Field(
        None, description="Build for this platform (e.g. linux/arm64 for an Ampere VM built on an amd64 runner) when "
                          "CI's differs from the host's; default: the CI runner's.",
    )

    _server = field_validator("server")(_matches(_SERVER, "must be a registry host[:port] such as registry.example.com "
                                                          "or 127.0.0.1:5000 (no scheme, no path)"))

    @field_validator("server")
    @classmethod
    def _server_endpoint(cls, value: str) -> str:
        problem = endpoint_problem(value)
        if problem:
            raise ValueError(f"must be a registry host[:port] that can be reached; {problem}")
        return value
    _repository = field_validator("repository")(_matches(_REPOSITORY, "must be a lower-case repository path such as "
                                                                      "workhub or team/workhub"))
    _username = field_validator("username")(_matches(re.compile(r"^[A-Za-z0-9._@+-]+$"),
                                                     "must be a user name of letters, digits and . _ @ + -"))
    _platform = field_validator("platform")(_matches(_PLATFORM, "must be a Linux platform such as linux/amd64 or "
                                                                "linux/arm64"))


# --- a stack on a Docker Swarm (rules across fields: components/config/swarm.py) ---

_NODE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?$")


class NodeLabels(_Section):
    """What a node is for; workhub sets them as the node's `workhub.*` labels."""

    serve: bool = Field(False, description="Runs the proxy, which publishes every hub's host port here.")
    build: bool = Field(False, description="Builds the host-built hubs (one node only) and pushes them.")
    data: list[str] = Field(default_factory=list, description="Hubs whose volumes live on this node.")


def _ip_address(cls, value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("must be an IP address such as 127.0.0.1 or 0.0.0.0") from None
    return value


class SwarmNode(_Section):
    """One node of the Swarm, reached over SSH with a pinned host key."""

    name: str = Field(description="The node's host name, as `docker node ls` shows it.")
    address: str = Field(description="DNS name or IP address the other nodes and workhub reach it at; one node's "
                                     "alone.")
    port: Int = Field(22, ge=1, le=65535, description="SSH port.")
    host_key: str = Field(alias="hostKey", description="The node's SSH host key, `<type> <base64>`.")
    labels: NodeLabels = Field(default_factory=NodeLabels, description="What the node is for: serve, build, data.")
    publish_address: Optional[str] = Field(
        None, alias="publishAddress",
        description="The address of this node its proxy publishes the hubs' host ports on (a serving node); "
                    "default: workhub:publishAddress when the stack sets it, else the node's address.",
    )

    _publish = field_validator("publish_address")(classmethod(_ip_address))

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NODE_NAME.fullmatch(value):
            raise ValueError("must be a host name (letters, digits, '.', '-'), as `docker node ls` shows it")
        return value

    _address = field_validator("address")(lambda cls, value: HostConfig._address(value))
    _host_key = field_validator("host_key")(lambda cls, value: HostConfig._host_key(value))


class SwarmHub(_Section):
    """How one hub runs in the Swarm of this stack."""

    replicas: Int = Field(1, ge=0, le=100, description="Tasks of the hub the Swarm keeps running.")
    memory_mb: Optional[Int] = Field(None, alias="memoryMb", ge=6, le=1024 * 1024,
                                     description="Memory limit of each task in this stack (Docker's least is 6 MB); "
                                                 "default: the hub's own memoryMb (workhub:hubs).")


class SwarmConfig(_Section):
    """The Swarm a stack deploys to."""

    user: str = Field(description="The SSH user on every node; it must be allowed to use Docker.")
    managers: list[str] = Field(description="Names of the manager nodes (1, 3 or 5 Raft managers); the Swarm "
                                                "is created on the first.")
    nodes: list[SwarmNode] = Field(description="Every node of the Swarm, managers included.")
    hubs: dict[str, SwarmHub] = Field(default_factory=dict, json_schema_extra={"keys": "hub"},
                                      description="Replicas and memory per hub.")
    monitor_seconds: Int = Field(
        30, alias="monitorSeconds", ge=1, le=3600,
        description="How long a new task must stay healthy after an update before Swarm moves on (or rolls back).",
    )
    health_interval_seconds: Int = Field(
        2, alias="healthIntervalSeconds", ge=1, le=300,
        description="Seconds between two runs of a task's own health check (Docker's; the proxy checks more often).",
    )

    _user = field_validator("user")(lambda cls, value: HostConfig._user(value))

    def node(self, name: str) -> SwarmNode:
        return next(node for node in self.nodes if node.name == name)

    def hub(self, name: str) -> SwarmHub:
        return self.hubs.get(name, SwarmHub())

    def build_node(self) -> Optional[SwarmNode]:
        return next((node for node in self.nodes if node.labels.build), None)

    def data_node(self, hub: str) -> Optional[SwarmNode]:
        """The node that holds the hub's volumes."""
        return next((node for node in self.nodes if hub in node.labels.data), None)


class StackConfig(_Section):
    """Everything one stack declares (project-level values included)."""

    host: HostConfig = Field(description="Required, but for a Swarm stack (workhub:swarm), whose build node (or "
                                         "first manager) is its host.")
    base_image: str = Field(
        DEFAULT_BASE_IMAGE,
        alias="baseImage",
        description="The Node base image the hub Dockerfiles start FROM (any reference Docker accepts: a registry "
                    "with a port, a digest); the host checks BuildKit with it. Node.js 24 is supported until "
                    "2028-04-30.",
    )
    hubs: list[Hub] = Field(default_factory=list, description="The hubs, in build order.")
    host_ports: dict[str, Port] = Field(
        default_factory=dict, alias="hostPorts", json_schema_extra={"keys": "hub"},
        description="The host port this stack publishes each hub on; required for every hub. No two hubs of a stack "
                    "share one, nor two stacks on the same host (stacks whose address is unknown count as sharing it).",
    )
    source_root: str = Field("..", alias="sourceRoot",
                             description="Where the hub repositories are checked out, relative to this project.")
    npm_registry: Optional[str] = Field(None, alias="npmRegistry",
                                        description="The registry npm uses inside builds (NPM_CONFIG_REGISTRY); "
                                                    "default: npm's own.")
    publish_address: str = Field(
        "127.0.0.1", alias="publishAddress",
        description="The host address the hubs' proxies publish their host ports on (an outer web server fronts "
                    "them). On a Swarm, a serving node's swarm.nodes[].publishAddress wins, and without either a "
                    "node publishes on its own address.",
    )
    promote_from: Optional[str] = Field(
        None, alias="promoteFrom",
        description="Run the images this stack (e.g. staging) built and verified, instead of building; "
                    "Pulumi.production.yaml sets staging.",
    )
    pinned_images: dict[str, str] = Field(
        default_factory=dict, alias="pinnedImages", json_schema_extra={"keys": "hub"},
        description="Run exactly this image for a hub, the one-line rollback: hub name -> image tag on the host "
                    "(on a Swarm, by digest).",
    )
    registry: Optional[RegistryConfig] = Field(
        None, description="The image registry of the hubs whose buildMode is registry; required when a hub builds "
                          "in registry mode, and in a Swarm stack.",
    )
    env: dict[str, dict[str, EnvValue]] = Field(
        default_factory=dict, json_schema_extra={"keys": "hub.NAME"},
        description="This stack's values of the settings a hub lists in stackEnv: hub -> NAME -> value; required "
                    "for each stackEnv name. Quoted as in hubs[].env.",
    )
    proxy_image: str = Field(
        DEFAULT_PROXY_IMAGE, alias="proxyImage",
        description="The HAProxy image of the proxy that owns each hub's host port on the host (the official "
                    "HAProxy image).",
    )
    helper_image: str = Field(
        DEFAULT_HELPER_IMAGE, alias="helperImage",
        description="The image of the short-lived helper containers that copy, check or re-own a hub's volume "
                    "(backup, restore, moving a pre-proxy host's data, giving files to the hub's uid); it needs "
                    "sh, tar, find, sha256sum and chown (busybox has them). They run with no network and as little power as "
                    "each needs (docs/security.md).",
    )
    swarm: Optional[SwarmConfig] = Field(None, description="The Docker Swarm this stack runs on, instead of one host.")
    protect_data: Optional[bool] = Field(
        None, alias="protectData",
        description="Whether the hubs' volumes are protected resources, which no destroy removes until unprotected "
                    "(default: true for the stack named production, set in Pulumi.production.yaml; false for "
                    "any other).",
    )
    build: BuildSettings = Field(default_factory=BuildSettings)
    deploy: DeploySettings = Field(default_factory=DeploySettings)
    ssh_keep_alive: SshKeepAlive = Field(default_factory=SshKeepAlive, alias="sshKeepAlive")

    _image = field_validator("base_image", "proxy_image", "helper_image")(
        _image("must be an image reference Docker accepts, such as 'node:24-bookworm-slim' or "
               "'registry.example:5000/team/node:24'"))
    _root = field_validator("source_root")(
        _matches(_PATH, "must be a path without control characters", allow_parent=True)
    )
    _registry = field_validator("npm_registry")(_matches(_URL, "must be an http(s) URL such as http://127.0.0.1:4873/"))

    @field_validator("npm_registry")
    @classmethod
    def _registry_endpoint(cls, value: Optional[str]) -> Optional[str]:
        problem = endpoint_problem(urllib.parse.urlsplit(value).netloc) if value else None
        if problem:
            raise ValueError(f"must be an http(s) URL that can be reached; {problem}")
        return value
    _publish = field_validator("publish_address")(classmethod(_ip_address))

    _promote = field_validator("promote_from")(
        _matches(re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+){0,2}$"), "must be a stack name such as staging")
    )

    def protects_data(self, stack: str) -> bool:
        """Whether the hubs' volumes are protected in `stack`: workhub:protectData, or by default only
        in the stack named production."""
        return self.protect_data if self.protect_data is not None else stack == PRODUCTION_STACK

    @property
    def helper(self) -> str:
        """The helper containers' image: workhub:helperImage."""
        return self.helper_image

    @field_validator("pinned_images")
    @classmethod
    def _pins(cls, value: dict[str, str]) -> dict[str, str]:
        for name, image in value.items():
            problem = image_reference_problem(image)
            if problem:
                raise ValueError(f"{quoted(name)}: {image!r} is not an image reference such as "
                                 f"wbsaleshub:production-0123456789ab ({problem})")
        return value


SSH_KEY = "sshPrivateKey"
NOTIFY_WEBHOOK = "notifyWebhook"
REGISTRY_PASSWORD = "registryPassword"
HUB_SECRETS = "secrets"
SECRET_SETTINGS = (SSH_KEY, NOTIFY_WEBHOOK, REGISTRY_PASSWORD, HUB_SECRETS)
# What each secret setting holds (they are no fields of StackConfig: their values never reach it).
SECRET_DESCRIPTIONS = {
    SSH_KEY: "The deploy user's private SSH key (ed25519, ECDSA or RSA, no passphrase); required.",
    NOTIFY_WEBHOOK: "An https URL that each build's success or failure is POSTed to as JSON, with its last log "
                    "lines (plain http only to a loopback address: 127.0.0.0/8, ::1, localhost).",
    REGISTRY_PASSWORD: "The password (or token) of workhub:registry.username; required with a username. It reaches "
                       "CI's push and the host's pull only as a secret.",
    HUB_SECRETS: "This stack's value of each secret a hub lists in secrets: hub -> NAME -> value; required for "
                 "each name (set it from a file: --secret --path 'workhub:secrets.<hub>.<NAME>' < <file>).",
}
# Declared once for every stack, in Pulumi.yaml's `config:` section; a stack file may not set them.
PROJECT_KEYS = ("hubs", "build", "deploy", "sshKeepAlive")


# A hub's default user id: within a span no host account uses (system and login accounts stay
# below 65536, and the usual subordinate id ranges of rootless containers start at 100000 with
# 65536 ids per user), chosen by the stack and hub names so it stays the same across deploys.
UID_BASE = 1_200_000
UID_SPAN = MAX_UID - UID_BASE


def run_uid(hub: Hub, stack: str) -> int:
    """The user id `hub`'s containers run as in `stack`: its `uid`, or one of its own."""
    if hub.uid is not None:
        return hub.uid
    digest = hashlib.sha256(f"workhub uid\0{stack}\0{hub.name}".encode()).digest()
    return UID_BASE + int.from_bytes(digest[:8], "big") % UID_SPAN


def built_hubs(config: StackConfig) -> list[Hub]:
    """The hubs this stack builds (on the host or in CI): a promoting stack builds none, and a
    pinned hub runs its pin."""
    if config.promote_from:
        return []
    return [hub for hub in config.hubs if hub.name not in config.pinned_images]


def pulls_from_registry(config: StackConfig) -> list[Hub]:
    """The hubs this stack builds in registry mode."""
    return [hub for hub in built_hubs(config) if hub.build_mode == "registry"]


# --- run-time settings, secrets and volumes ------------------------------------------------------

FILE_SUFFIX = "_FILE"
"""A secret with a line break reaches the container as a file, named by <NAME>_FILE."""


def quoted(name: str) -> str:
    """A name from the config as a message shows it: as it is, or JSON-quoted when it is empty or holds a
    line break, another character that is not printable, or one of . [ ] " (which would break the
    message's shape or its key path)."""
    plain = name.isprintable() and name and not any(char in '.[]"' for char in name)
    return name if plain else json.dumps(name)


def member(name: str) -> str:
    """A name from the config as the next step of a key path: `.name`, or `["name"]` (as `pulumi config
    --path` reads a quoted step) when it needs quotes."""
    shown = quoted(name)
    return f".{name}" if shown == name else f"[{shown}]"


def hub_names(hub: Hub) -> list[tuple[str, str]]:
    """Every variable a hub declares, with the key it is declared at: env, stackEnv, secrets, portEnv."""
    names = [(f"env{member(name)}", name) for name in hub.env]
    names += [(f"stackEnv[{i}]", name) for i, name in enumerate(hub.stack_env)]
    names += [(f"secrets[{i}]", name) for i, name in enumerate(hub.secrets)]
    if hub.port_env is not None:
        names.append(("portEnv", hub.port_env))
    return names
