"""What a hub's container gets at run time in one stack: its settings, its secrets, its volumes.

Worked out once from the validated config, before any resource exists. Secret values stay out of
everything this module returns except `Runtime.secret_values`, which only ever reaches a command
as a Pulumi secret; what the preview may show of a secret is its name and a keyed fingerprint.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Mapping

from components.config.models import FILE_SUFFIX, Hub, StackConfig, hub_names

SECRETS_DIR = "/run/secrets"
"""Where a secret with a line break is put in the container, as `<dir>/<NAME>`."""
HOME_DIR = "/tmp"
"""The container's HOME, unless the hub sets one: its uid has no account in the image, so no home of
its own (Docker would give it `/`, which it cannot write to); npm and the like write there."""


@dataclass(frozen=True)
class Volume:
    """A named volume of a hub in one stack: its Docker name on the host and its path in the container."""

    name: str
    docker_name: str
    target: str


@dataclass(frozen=True)
class Runtime:
    """A hub's run-time settings in one stack."""

    env: dict[str, str]
    """Plain variables, in the order the container gets them: PORT (and the port variable), HOME
    (unless the hub sets it), the settings pinned in Pulumi.yaml, then the stack's own."""
    secret_env: tuple[str, ...] = ()
    """Secrets that reach the container as environment variables (one line each)."""
    secret_files: tuple[str, ...] = ()
    """Secrets with a line break: each reaches the container as the file SECRETS_DIR/<NAME>, named
    by <NAME>_FILE in its environment."""
    secret_values: dict[str, str] = field(default_factory=dict, repr=False)
    """The secret values by shell variable (secret_0, secret_1, ... in the order secret_env then
    secret_files): only ever passed to a command as a Pulumi secret."""
    fingerprints: dict[str, str] = field(default_factory=dict)
    """A keyed digest of each secret's value by name, so a preview can say which secret changed
    without anything to guess the value from."""
    volumes: tuple[Volume, ...] = ()

    @property
    def secret_names(self) -> tuple[str, ...]:
        """Every secret, in the order of its shell variable."""
        return self.secret_env + self.secret_files

    @property
    def triggers(self) -> dict[str, dict[str, str]]:
        """What restarts the hub when it changes, as the preview shows it: every plain setting by
        value, every secret by fingerprint, every volume by path."""
        return {"env": dict(self.env), "secrets": dict(self.fingerprints),
                "volumes": {volume.name: volume.target for volume in self.volumes}}


def volume_name(stack: str, hub: str, name: str) -> str:
    """The Docker volume that keeps a hub's data in one stack."""
    return f"workhub-{stack}-{hub}-{name}"


def fingerprint(key: str, hub: str, name: str, value: str) -> str:
    """A digest of a secret's value keyed with `key` (the stack's own key, components/resources/host/stack_key.py,
    itself a secret), so one who reads the state cannot test guesses of the value against it."""
    derived = hashlib.sha256(b"workhub secret fingerprint\0" + key.encode()).digest()
    return hmac.new(derived, f"{hub}\0{name}\0{value}".encode(), hashlib.sha256).hexdigest()[:16]


def hub_runtime(hub: Hub, config: StackConfig, stack: str, secrets: Mapping[str, str], key: str) -> Runtime:
    """The run-time settings of `hub` in `stack`, with the values of its secrets in `secrets` and
    their fingerprints keyed with the stack's key `key`."""
    env = {"PORT": str(hub.port)}
    if hub.port_env:
        env[hub.port_env] = str(hub.port)
    if "HOME" not in {name for _, name in hub_names(hub)}:
        env["HOME"] = HOME_DIR
    env.update(hub.env)
    stack_values = config.env.get(hub.name, {})
    env.update({name: stack_values[name] for name in hub.stack_env})
    on_one_line = tuple(name for name in hub.secrets if "\n" not in secrets[name] and "\r" not in secrets[name])
    as_files = tuple(name for name in hub.secrets if name not in on_one_line)
    ordered = on_one_line + as_files
    env.update({name + FILE_SUFFIX: f"{SECRETS_DIR}/{name}" for name in as_files})
    return Runtime(
        env=env,
        secret_env=on_one_line,
        secret_files=as_files,
        secret_values={f"secret_{i}": secrets[name] for i, name in enumerate(ordered)},
        fingerprints={name: fingerprint(key, hub.name, name, secrets[name]) for name in hub.secrets},
        volumes=tuple(Volume(name, volume_name(stack, hub.name, name), target.rstrip("/"))
                      for name, target in hub.volumes.items()),
    )
