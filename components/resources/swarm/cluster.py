"""SwarmCluster: the stack's Swarm as Pulumi resources. The first manager creates the Swarm (or finds
it), every other node joins it (SwarmMember: the join token never leaves the provider), and the
nodes' workhub.* labels are set from the config; the deploy of the stack's hubs (SwarmStack) waits
for `ready`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi

from components.resources.host.build_host import connection_for
from components.config.models import HostConfig, StackConfig, SwarmNode
from components.ssh import Connection
from components.resources.command import RemoteCommand
from components.resources.swarm.member import SwarmMember
from components.render.swarm.scripts import init_script, join_script, labels_script


def node_connection(config: StackConfig, node: SwarmNode) -> Connection:
    """How to reach a node over SSH: its address, port and pinned host key, the Swarm's user, and the
    stack's dial and keep-alive settings."""
    assert config.swarm is not None
    return connection_for(HostConfig(address=node.address, port=node.port, user=config.swarm.user,
                                     hostKey=node.host_key, dialErrorLimit=config.host.dial_error_limit,
                                     perDialTimeout=config.host.per_dial_timeout,
                                     keepAliveInterval=config.host.keep_alive_interval))


@dataclass(frozen=True)
class SwarmClusterArgs:
    config: StackConfig
    """The stack, with its workhub:swarm section."""
    private_key: pulumi.Input[str]
    """The deploy user's SSH private key (the same on every node); only ever a Pulumi secret."""


class SwarmCluster(pulumi.ComponentResource):
    """The Swarm of a stack: created on the first manager, joined by the others, labelled."""

    ready: list[pulumi.Resource]

    def __init__(self, name: str, args: SwarmClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("workhub:swarm:SwarmCluster", name, None, opts)
        swarm = args.config.swarm
        assert swarm is not None
        first = swarm.node(swarm.managers[0])
        first_connection = node_connection(args.config, first)
        init = RemoteCommand(f"{name}-init", connection=first_connection, private_key=args.private_key,
                             create=init_script(first), opts=pulumi.ResourceOptions(parent=self))
        members: list[pulumi.Resource] = []
        # Managers first, in config order (Raft grows one at a time), then the workers.
        others = [swarm.node(name) for name in swarm.managers[1:]] + \
            [node for node in swarm.nodes if node.name not in swarm.managers]
        for node in others:
            role = "manager" if node.name in swarm.managers else "worker"
            members.append(SwarmMember(
                f"{name}-join-{node.name}", connection=node_connection(args.config, node), manager=first_connection,
                role=role, private_key=args.private_key, create=join_script(node, first, role),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[init, *members[-1:]])))
        labels = RemoteCommand(f"{name}-labels", connection=first_connection, private_key=args.private_key,
                               create=labels_script(args.config),
                               opts=pulumi.ResourceOptions(parent=self, depends_on=[init, *members]))
        self.ready = [init, *members, labels]
        self.register_outputs({})
