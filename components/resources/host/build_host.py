"""BuildHost: the SSH connection to the build host, what it reports about itself, and the checks
and settings every build on it depends on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

import pulumi

from components.config.models import BuildSettings, HostConfig, SshKeepAlive
from components.ssh import Connection
from components.resources.command import RemoteCommand
from components.render.host.build import host_facts_script, host_setup_script, preflight_script


@dataclass(frozen=True)
class BuildHostArgs:
    host: HostConfig
    """Where the host is and how to trust it."""
    private_key: pulumi.Input[str]
    """The deploy user's SSH private key; only ever a Pulumi secret."""
    base_image: str
    """The Node base image; the host proves a BuildKit build with a cache mount works FROM it."""
    build: BuildSettings
    """The preflight checks the host can hold the Node heap and has the disk the builds need."""
    keep_alive: SshKeepAlive
    """Written into the host's SSH settings so quiet builds keep their sessions."""
    builds: tuple[str, ...] = ()
    """The ids of the builds planned now: the preflight runs again whenever they change."""
    builds_here: bool = True
    """Whether any of them builds on the host (not all pulled from the registry): only then does
    the preflight check the Node heap and BuildKit."""
    checked: bool = True
    """Whether the host's facts, preflight and setup run at all: a Swarm's build node has nothing to
    check when no hub builds there (its hubs run on the nodes, which pull their images)."""


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


def parse_last_json(stdout: str) -> dict[str, Any]:
    """The JSON object a script prints on its last stdout line."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the script printed nothing on stdout")
    return json.loads(lines[-1])


def facts_now(facts: str, preflight: Optional[str]) -> dict[str, Any]:
    """The host's facts (read once, when the host was first checked) with the free disk the
    preflight measured last: it runs again on each `up` that builds or changes an image, so the
    figure is that up's, not the first one's. (A preflight from before it printed its figure adds
    nothing.)"""
    found = parse_last_json(facts)
    try:
        measured = parse_last_json(preflight or "")
    except ValueError:
        return found
    if isinstance(measured, dict) and isinstance(measured.get("disk_free_mb"), int):
        found["disk_free_mb"] = measured["disk_free_mb"]
    return found


class BuildHost(pulumi.ComponentResource):
    """The build host, reached over SSH with a pinned host key.

    `ready` lists what the first build must wait for: the preflight, then the host's SSH setup
    (nothing, and no facts, when the host is not `checked`)."""

    connection: Connection
    facts_command: Optional[RemoteCommand]
    facts: Optional[pulumi.Output[dict[str, Any]]]
    ready: list[pulumi.Resource]

    def __init__(self, name: str, args: BuildHostArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("workhub:host:BuildHost", name, None, opts)
        self.connection = connection_for(args.host)
        self.private_key = args.private_key

        def command(role: str, create: str, after: list[pulumi.Resource], **kwargs: Any) -> RemoteCommand:
            return RemoteCommand(
                f"{name}-{role}",
                connection=self.connection,
                private_key=args.private_key,
                create=create,
                opts=pulumi.ResourceOptions(parent=self, depends_on=after),
                **kwargs,
            )

        if not args.checked:
            self.facts_command, self.facts, self.ready = None, None, []
            self.register_outputs({})
            return
        self.facts_command = command("facts", host_facts_script(args.base_image), [])
        preflight = command("preflight", preflight_script(args.base_image, args.build, args.builds_here), [],
                            triggers=list(args.builds))
        self.facts = pulumi.Output.all(self.facts_command.stdout, preflight.stdout).apply(
            lambda out: facts_now(out[0], out[1]))
        setup = command("setup", host_setup_script(args.keep_alive), [preflight])
        self.ready = [preflight, setup]
        self.register_outputs({"facts": self.facts})
