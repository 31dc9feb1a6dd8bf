"""BuildHost: the SSH connection to the build host, and the facts it reports about itself."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

import pulumi

from .config import HostConfig
from .remote import Connection, RemoteCommand
from .scripts import host_facts_script


@dataclass(frozen=True)
class BuildHostArgs:
    host: HostConfig
    """Where the host is and how to trust it."""
    private_key: pulumi.Input[str]
    """The deploy user's SSH private key; only ever a Pulumi secret."""
    base_image: str
    """The Node base image; the host proves a BuildKit build with a cache mount works FROM it."""


def connection_for(host: HostConfig) -> Connection:
    return Connection(
        host=host.address,
        port=host.port,
        user=host.user,
        host_key=host.host_key,
        dial_error_limit=host.dial_error_limit,
        per_dial_timeout=host.per_dial_timeout,
        keep_alive_interval=host.keep_alive_interval,
    )


def parse_facts(stdout: str) -> dict[str, Any]:
    """The JSON object the facts script prints on its last line."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the host facts script printed nothing on stdout")
    return json.loads(lines[-1])


class BuildHost(pulumi.ComponentResource):
    """The build host, reached over SSH with a pinned host key."""

    connection: Connection
    facts_command: RemoteCommand
    facts: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: BuildHostArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("workhub:host:BuildHost", name, None, opts)
        self.connection = connection_for(args.host)
        self.private_key = args.private_key
        self.facts_command = RemoteCommand(
            f"{name}-facts",
            connection=self.connection,
            private_key=args.private_key,
            create=host_facts_script(args.base_image),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.facts = self.facts_command.stdout.apply(parse_facts)
        self.register_outputs({"facts": self.facts})
