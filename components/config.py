"""Typed stack config: read once, validated in full before any resource is registered.

Every value the program uses comes from the stack config under the `workhub:` namespace. A bad or
missing value stops the program with one message per problem, each naming its key path and the
command that fixes it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import posixpath
import re
import urllib.parse
from dataclasses import dataclass
from typing import Annotated, Any, Mapping, Optional

from docker_image.reference import InvalidReference, Reference
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr, ValidationError, field_validator

from .light import PULUMI_CLI

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

    address: str = Field(description="DNS name or IP address of the host.")
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




def _env_text(value: Any) -> Any:
    """A setting's value as the container sees it: text, with YAML's true/false and numbers spelled
    the way they were written (true, 3, 1.5), never Python's (True)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return value


EnvValue = Annotated[StrictStr, BeforeValidator(_env_text)]
"""A run-time setting's value: text, or a YAML number or boolean (taken as written)."""


def image_reference_problem(value: str) -> Optional[str]:
    """Why Docker would refuse `value` as an image reference, or None. docker-image-py ports the
    grammar of distribution/reference, which Docker itself parses with (a registry with a port,
    a digest, a path of several parts); its patterns end in `$`, which matches before a final
    line break, so a value must also be free of whitespace and control characters."""
    if not value or any(ch.isspace() or not ch.isprintable() for ch in value):
        return "has a space, a line break or a control character"
    try:
        Reference.parse(value)
    except InvalidReference as error:
        return str(error)
    return None


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
    build_args: dict[str, str] = Field(default_factory=dict, alias="buildArgs", json_schema_extra={"keys": "NAME"},
                                       description="Extra build args: NAME -> value (not one workhub sets itself).")
    build_mode: str = Field(
        "remote", alias="buildMode", json_schema_extra={"values": BUILD_MODES},
        description="remote: built on the host over SSH; registry: built where Pulumi runs, pushed to "
                    "workhub:registry, pulled by the host.",
    )
    env: dict[str, EnvValue] = Field(
        default_factory=dict, json_schema_extra={"keys": "NAME"},
        description="Plain run-time settings, the same in every stack: NAME -> value (a stack may not change them).",
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
        description="Named volumes: name -> path in the container; kept across deploys and destroy.",
    )
    port_env: Optional[str] = Field(
        None, alias="portEnv", description="Another variable the app reads its port from (PORT is always set).",
    )
    uid: Optional[Int] = Field(
        None, ge=1, le=MAX_UID,
        description="The user id the hub's container runs as, and that owns the files of its volumes (never 0, "
                    "root). Default: one of its own per stack, above every host account (components.config.run_uid).",
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
                    "and is removed if it does not.",
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
    _repository = field_validator("repository")(_matches(_REPOSITORY, "must be a lower-case repository path such as "
                                                                      "workhub or team/workhub"))
    _username = field_validator("username")(_matches(re.compile(r"^[A-Za-z0-9._@+-]+$"),
                                                     "must be a user name of letters, digits and . _ @ + -"))
    _platform = field_validator("platform")(_matches(_PLATFORM, "must be a Linux platform such as linux/amd64 or "
                                                                "linux/arm64"))


# --- a stack on a Docker Swarm (rules across fields: components/swarm_config.py) ---

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
    address: str = Field(description="DNS name or IP address the other nodes and workhub reach it at.")
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
                    "for each stackEnv name.",
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
                raise ValueError(f"{name}: {image!r} is not an image reference such as "
                                 f"wbsaleshub:production-0123456789ab ({problem})")
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


def _keys(model: type[BaseModel]) -> str:
    return ", ".join(field.alias or name for name, field in model.model_fields.items())


# The settings each section knows, named in the fix of an unknown one.
_KNOWN = {
    "": _keys(StackConfig) + ", " + ", ".join(SECRET_SETTINGS),
    "registry": _keys(RegistryConfig),
    "host": _keys(HostConfig),
    "hubs": _keys(Hub),
    "build": _keys(BuildSettings),
    "deploy": _keys(DeploySettings),
    "sshKeepAlive": _keys(SshKeepAlive),
    "swarm": _keys(SwarmConfig),
}


def _path(loc: tuple) -> str:
    """A pydantic location as a `pulumi config --path` path: hubs[0].port, hostPorts.wbfinhub."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def fix_for(path: str, stack: str, unknown: bool = False) -> str:
    """How to fix the setting at `path` (without namespace) of `stack`."""
    top = re.split(r"[.\[]", path, maxsplit=1)[0]
    if top in PROJECT_KEYS:
        if unknown and path in MOVED:
            return f"move it to {NAMESPACE}:{MOVED[path]} in the config: section of Pulumi.yaml"
        if unknown:
            return (f"remove {NAMESPACE}:{path} from the config: section of Pulumi.yaml; "
                    f"known settings here: {_KNOWN.get(top, '')}")
        return f"correct {NAMESPACE}:{path} in the config: section of Pulumi.yaml (one value for every stack)"
    if unknown:
        section = top if top != path else ""
        return (f"remove it ({PULUMI_CLI} config rm --stack {stack} --path '{NAMESPACE}:{path}'); "
                f"known settings here: {_KNOWN.get(section, '')}")
    example = _EXAMPLES.get(path, "<port>" if path.startswith("hostPorts.") else "<value>")
    return f"{PULUMI_CLI} config set --stack {stack} --path '{NAMESPACE}:{path}' {example}"


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
        problems.append(Problem(f"{NAMESPACE}:{path}", message, fix_for(path, stack, unknown)))
    return problems


def _hub_named_at(raw: Mapping[str, Any], loc: tuple) -> Optional[str]:
    if len(loc) >= 3 and loc[0] == "hubs" and isinstance(loc[1], int):
        hubs = raw.get("hubs")
        if isinstance(hubs, list) and loc[1] < len(hubs) and isinstance(hubs[loc[1]], dict):
            name = hubs[loc[1]].get("name")
            return name if isinstance(name, str) else None
    return None


def cross_checks(config: StackConfig, stack: str) -> list[Problem]:
    """Rules across fields: unique hub names, one host port per hub, no port used twice."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for index, hub in enumerate(config.hubs):
        if hub.name in seen:
            problems.append(Problem(f"{NAMESPACE}:hubs[{index}].name", f"{hub.name} is declared twice (also hubs[{seen[hub.name]}])",
                                    fix_for(f"hubs[{index}].name", stack)))
        seen.setdefault(hub.name, index)
    for hub in config.hubs:
        if hub.name not in config.host_ports:
            problems.append(Problem(f"{NAMESPACE}:hostPorts.{hub.name}", f"is not set: hub {hub.name} needs a host port in this stack",
                                    f"{PULUMI_CLI} config set --stack {stack} --path '{NAMESPACE}:hostPorts.{hub.name}' <port>"))
    for name in config.host_ports:
        if name not in seen:
            problems.append(Problem(f"{NAMESPACE}:hostPorts.{name}", "names no hub in workhub:hubs",
                                    f"{PULUMI_CLI} config rm --stack {stack} --path '{NAMESPACE}:hostPorts.{name}'"))
    for name in config.pinned_images:
        if name not in seen:
            problems.append(Problem(f"{NAMESPACE}:pinnedImages.{name}", "names no hub in workhub:hubs",
                                    f"{PULUMI_CLI} config rm --stack {stack} --path '{NAMESPACE}:pinnedImages.{name}'"))
    if config.promote_from == stack:
        problems.append(Problem(f"{NAMESPACE}:promoteFrom", "names this stack itself",
                                f"{PULUMI_CLI} config set --stack {stack} {NAMESPACE}:promoteFrom staging"))
    by_port: dict[int, str] = {}
    for name, port in config.host_ports.items():
        if port in by_port:
            problems.append(Problem(f"{NAMESPACE}:hostPorts.{name}", f"port {port} is also the host port of {by_port[port]}",
                                    f"{PULUMI_CLI} config set --stack {stack} --path '{NAMESPACE}:hostPorts.{name}' <a free port>"))
        by_port.setdefault(port, name)
    if config.host.port in by_port:
        name = by_port[config.host.port]
        problems.append(Problem(f"{NAMESPACE}:hostPorts.{name}", f"port {config.host.port} is the host's SSH port",
                                f"{PULUMI_CLI} config set --stack {stack} --path '{NAMESPACE}:hostPorts.{name}' <a free port>"))
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


def parse_stack_config(raw: Mapping[str, Any], *, stack: str, secret_keys: set[str]) -> StackConfig:
    """Validate the whole `workhub:` config of one stack.

    `raw` maps every key set in the namespace, without the `workhub:` prefix, to its value (objects
    already decoded); `secret_keys` names the keys that are stored as secrets. The SSH key is only
    checked for presence and secrecy: its value never reaches the typed config.
    """
    from .swarm_config import derive_host, swarm_problems, without_derived_host

    values, problems = derive_host({k: v for k, v in raw.items() if k not in SECRET_SETTINGS}, stack)
    config: Optional[StackConfig] = None
    try:
        config = StackConfig.model_validate(values)
    except ValidationError as error:
        found = _problems_from(error, values, stack)
        problems += without_derived_host(found) if "swarm" in values else found
    else:
        problems += cross_checks(config, stack) + swarm_problems(config, stack) + digest_problems(config, stack)
    key_fix = secret_fix(SSH_KEY, stack, "< <path to the deploy key>")
    if raw.get(SSH_KEY) in (None, ""):
        problems.append(Problem(f"{NAMESPACE}:{SSH_KEY}", "is not set", key_fix))
    elif SSH_KEY not in secret_keys:
        problems.append(stored_in_plain_text(SSH_KEY, key_fix))
    hook_fix = secret_fix(NOTIFY_WEBHOOK, stack, "< <file holding the https URL>")
    if NOTIFY_WEBHOOK in raw:
        if NOTIFY_WEBHOOK not in secret_keys:
            problems.append(stored_in_plain_text(NOTIFY_WEBHOOK, hook_fix))
        else:
            wrong = webhook_problem(str(raw[NOTIFY_WEBHOOK]))
            if wrong:
                problems.append(Problem(f"{NAMESPACE}:{NOTIFY_WEBHOOK}", wrong, hook_fix))
    if config is not None:
        problems += registry_problems(config, stack, raw, secret_keys)
        problems += runtime_problems(config, stack)
        problems += secret_problems(config, stack, raw.get(HUB_SECRETS), HUB_SECRETS in secret_keys)
    if problems:
        raise ConfigError(problems)
    assert config is not None
    return config


def webhook_problem(url: str) -> Optional[str]:
    """What is wrong with the failure webhook's URL, in words that never repeat it (it is a secret
    and may carry a token); None when it is https, or plain http to a loopback address."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        host = parts.hostname or ""
    except ValueError:
        return "is not a URL; it must be an https URL"
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
        elif config.registry is None or config.registry.username is None:
            problems.append(Problem(f"{NAMESPACE}:{REGISTRY_PASSWORD}", "is set, but workhub:registry.username is not",
                                    fix_for("registry.username", stack)))
    elif config.registry is not None and config.registry.username is not None:
        problems.append(Problem(f"{NAMESPACE}:{REGISTRY_PASSWORD}",
                                f"is not set, but workhub:registry.username ({config.registry.username}) is", fix))
    return problems


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


# --- run-time settings, secrets and volumes ------------------------------------------------------

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VOLUME_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,47}")
# Set by workhub itself in every hub's container.
RESERVED_ENV = ("PORT",)
FILE_SUFFIX = "_FILE"
"""A secret with a line break reaches the container as a file, named by <NAME>_FILE."""


def _project(path: str) -> str:
    return f"correct {NAMESPACE}:{path} in the config: section of Pulumi.yaml (one value for every stack)"


def hub_names(hub: Hub) -> list[tuple[str, str]]:
    """Every variable a hub declares, with the key it is declared at: env, stackEnv, secrets, portEnv."""
    names = [(f"env.{name}", name) for name in hub.env]
    names += [(f"stackEnv[{i}]", name) for i, name in enumerate(hub.stack_env)]
    names += [(f"secrets[{i}]", name) for i, name in enumerate(hub.secrets)]
    if hub.port_env:
        names.append(("portEnv", hub.port_env))
    return names


def name_problems(hub: Hub, at: str) -> list[tuple[str, Optional[Problem]]]:
    """Each variable a hub declares (by its key: env.X, stackEnv[0], secrets[1], portEnv) with its
    problem: not an environment variable name, workhub's own (PORT, the port variable), or declared
    already; None for the ones that are fine."""
    found: list[tuple[str, Optional[Problem]]] = []
    seen: dict[str, str] = {}
    for key, name in hub_names(hub):
        path = f"{at}.{key}"
        problem = None
        if not _ENV_NAME.fullmatch(name):
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
                path = f"{at}.env.{key}"
                problems.append(Problem(f"{NAMESPACE}:{path}", f"{message} (hub {hub.name})", _project(path)))
        targets: dict[str, str] = {}
        for name, target in hub.volumes.items():
            path = f"{at}.volumes.{name}"
            if not _VOLUME_NAME.fullmatch(name):
                problems.append(Problem(f"{NAMESPACE}:{path}", f"{name!r} is not a volume name (lower-case "
                                        f"letters, digits, '_', '.', '-', at most 48; hub {hub.name})",
                                        _project(path)))
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
            problems.append(Problem(f"{NAMESPACE}:env.{name}", "names no hub in workhub:hubs",
                                    f"{PULUMI_CLI} config rm --stack {stack} --path '{NAMESPACE}:env.{name}'"))
            continue
        index = config.hubs.index(hub)
        for key, value in values.items():
            path = f"env.{name}.{key}"
            if key in hub.env:
                problems.append(Problem(f"{NAMESPACE}:{path}", f"{key} is pinned in Pulumi.yaml "
                                        f"(workhub:hubs[{index}].env.{key}), the same in every stack",
                                        f"{PULUMI_CLI} config rm --stack {stack} --path '{NAMESPACE}:{path}'; to let "
                                        f"stacks differ, move {key} from env to stackEnv of the hub in Pulumi.yaml"))
            elif key not in hub.stack_env:
                problems.append(Problem(f"{NAMESPACE}:{path}", f"{key} is not declared in workhub:hubs[{index}]."
                                        f"stackEnv (hub {name})", f"add {key} to stackEnv of the hub in Pulumi.yaml, "
                                        f"or {PULUMI_CLI} config rm --stack {stack} --path '{NAMESPACE}:{path}'"))
            elif _text_problem(value):
                problems.append(Problem(f"{NAMESPACE}:{path}", f"{_text_problem(value)} (hub {name})",
                                        f"{PULUMI_CLI} config set --stack {stack} --path '{NAMESPACE}:{path}' <value>"))
    for hub in config.hubs:
        for i, key in enumerate(hub.stack_env):
            if key not in config.env.get(hub.name, {}) and f"stackEnv[{i}]" in usable_declarations(hub):
                path = f"env.{hub.name}.{key}"
                problems.append(Problem(f"{NAMESPACE}:{path}", f"is not set: hub {hub.name} declares {key} in "
                                        "stackEnv, so each stack gives it a value",
                                        f"{PULUMI_CLI} config set --stack {stack} --path '{NAMESPACE}:{path}' <value>"))
    return problems


def secret_fix_for(stack: str, hub: str, name: str) -> str:
    """The command that sets one hub secret (from a file, so a value with line breaks stays whole)."""
    return (f"{PULUMI_CLI} config set --stack {stack} --secret --path '{NAMESPACE}:{HUB_SECRETS}.{hub}.{name}' "
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
            problems.append(Problem(f"{NAMESPACE}:{HUB_SECRETS}.{name}", "names no hub in workhub:hubs",
                                    f"{PULUMI_CLI} config rm --stack {stack} --path '{NAMESPACE}:{HUB_SECRETS}.{name}'"))
            continue
        if not isinstance(found, Mapping):
            problems.append(Problem(f"{NAMESPACE}:{HUB_SECRETS}.{name}", "must map secret names to their values",
                                    secret_fix_for(stack, name, "<NAME>")))
            continue
        index = config.hubs.index(hub)
        for key, secret in found.items():
            path = f"{HUB_SECRETS}.{name}.{key}"
            if key not in hub.secrets:
                problems.append(Problem(f"{NAMESPACE}:{path}", f"{key} is not declared in workhub:hubs[{index}]."
                                        f"secrets (hub {name})", f"add {key} to secrets of the hub in Pulumi.yaml, "
                                        f"or {PULUMI_CLI} config rm --stack {stack} --path '{NAMESPACE}:{path}'"))
            elif not isinstance(secret, str):
                problems.append(Problem(f"{NAMESPACE}:{path}", "must be text", secret_fix_for(stack, name, key)))
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


def hub_secret_values(raw: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """The secret values by hub and name, from a config parse_stack_config accepted."""
    found = raw.get(HUB_SECRETS) or {}
    return {hub: dict(values) for hub, values in found.items()}
