"""HubData: a hub's named volumes as resources of the stack, so that a stack that must not lose them
(production: workhub:protectData) protects them, and no destroy removes the stack until someone
unprotects them on purpose. Each volume's command makes the volume when the host lacks it and adopts
it, untouched, when it is there; its delete removes nothing (the data goes only with `destroy
--purge-data`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi

from components.config.models import Hub
from components.render.host.deploy import volume_check_script, volume_script
from components.ssh import Connection
from components.resources.command import RemoteCommand


@dataclass(frozen=True)
class HubDataArgs:
    hub: Hub
    stack: str
    connection: Connection
    """The host that holds the volumes (on a Swarm: the hub's data node)."""
    private_key: pulumi.Input[str]
    after: Sequence[pulumi.Resource]
    """What made the volumes first: the hub's deploy (which moves a pre-proxy container's data into
    a volume it makes), or the Swarm deploy (whose tasks make them)."""
    protect: bool
    namespace: str = ""
    """The Swarm stack's namespace, labelled on a volume made on a Swarm node."""


class HubData(pulumi.ComponentResource):
    """One `<hub>-volume-<name>` command per volume of the hub, protected when the stack protects data."""

    volumes: list[RemoteCommand]

    def __init__(self, name: str, args: HubDataArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("workhub:hub:HubData", name, None, opts)
        hub, stack = args.hub, args.stack
        self.volumes = [
            RemoteCommand(
                f"{hub.name}-volume-{key}",
                connection=args.connection,
                private_key=args.private_key,
                create=volume_script(hub, stack, key, args.namespace),
                check=volume_check_script(hub, stack, key),
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after), protect=args.protect),
            )
            for key in hub.volumes
        ]
        self.register_outputs({})
