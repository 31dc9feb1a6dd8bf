"""SwarmStack: the stack's hubs and proxy as one `docker stack deploy` on the Swarm's first manager,
waiting until every service runs its new version (components/render/swarm/scripts.py's deploy script). A
service Swarm rolled back fails the deploy, its reason said once, at the end of `up`.

The hubs' secret values and the registry password reach the script only as secret shell variables
put in front of it when it runs (`RemoteCommand.secret_values`): each secret is made from stdin as a
Docker secret, in no command line, log or plaintext state. Destroying the stack takes it off the
Swarm; the hubs' volumes stay on their nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import pulumi

from components.resources.host.build_host import parse_last_json
from components.config.models import StackConfig
from components.resources.command import RemoteCommand
from components.config.runtime import Runtime
from components.render.swarm.stack import proxy_config, proxy_config_name, stack_file
from components.resources.swarm.cluster import node_connection
from components.config.swarm import publish_address, reach_address
from components.render.swarm.data import owners_script
from components.render.swarm.scripts import deploy_script, deploy_secret_values, remove_script


def deploy_timeout(config: StackConfig) -> int:
    """How long the deploy waits for one service: each task of its rollout (and of a rollback) has its
    start period, monitor window and the old task's grace period."""
    assert config.swarm is not None
    swarm, deploy = config.swarm, config.deploy
    replicas = max([swarm.hub(hub.name).replicas for hub in config.hubs] + [1])
    per_task = deploy.health_timeout_seconds + swarm.monitor_seconds + deploy.stop_grace_seconds
    return 120 + 2 * replicas * per_task


def urls(config: StackConfig) -> dict[str, list[str]]:
    """Each hub's URLs: its host port on every serving node's publish address (a loopback one, which
    only the node itself reaches, as it is)."""
    assert config.swarm is not None
    serving = [reach_address(config, node) or publish_address(config, node)
               for node in config.swarm.nodes if node.labels.serve]
    hosts = [f"[{address}]" if ":" in str(address) else address for address in serving]
    return {hub.name: [f"http://{host}:{config.host_ports[hub.name]}" for host in hosts] for hub in config.hubs}


@dataclass(frozen=True)
class SwarmStackArgs:
    config: StackConfig
    """The stack, with its workhub:swarm section."""
    stack: str
    images: Mapping[str, str]
    """The image each hub's service runs, by hub name: a registry reference (tag or digest)."""
    runtimes: Mapping[str, Runtime]
    """Each hub's run-time settings in this stack."""
    private_key: pulumi.Input[str]
    registry_password: Optional[pulumi.Input[str]] = None
    after: Sequence[pulumi.Resource] = ()
    """What the deploy waits for: the Swarm formed and labelled, every image pushed."""


class SwarmStack(pulumi.ComponentResource):
    """The stack's services on its Swarm, deployed and converged (or rolled back, and failed)."""

    owners: list[RemoteCommand]
    """On each node that holds hubs' data, before the deploy: their volumes, owned by their uids."""
    deploy: RemoteCommand
    result: pulumi.Output[dict[str, Any]]
    """What the deploy reported last: each hub's image by digest and its tasks running/desired."""

    def __init__(self, name: str, args: SwarmStackArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("workhub:swarm:SwarmStack", name, None, opts)
        config, stack, runtimes = args.config, args.stack, args.runtimes
        assert config.swarm is not None
        proxy = proxy_config(config, stack)
        text = stack_file(config, stack, args.images, runtimes, proxy)
        secrets: dict[str, pulumi.Input[str]] = dict(deploy_secret_values(config, runtimes))
        if config.registry is not None and config.registry.username:
            secrets["registry_password"] = args.registry_password
        first = config.swarm.node(config.swarm.managers[0])
        login = {"registry_password": args.registry_password} if "registry_password" in secrets else None
        # Before the deploy, on each node that holds hubs' data: their volumes, owned by their uids.
        self.owners = [
            RemoteCommand(f"{name}-owners-{node.name}", connection=node_connection(config, node),
                          private_key=args.private_key, create=owners_script(config, stack, node.name, args.images),
                          secret_values=login, opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after)))
            for node in config.swarm.nodes
            if any(hub.volumes and hub.name in node.labels.data for hub in config.hubs)]
        self.deploy = RemoteCommand(
            f"{name}-deploy", connection=node_connection(config, first), private_key=args.private_key,
            create=deploy_script(config, stack, runtimes, text, proxy, proxy_config_name(stack, proxy),
                                 config.registry, deploy_timeout(config)),
            delete=remove_script(stack), secret_values=secrets or None,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*args.after, *self.owners]))
        self.result = self.deploy.stdout.apply(parse_last_json)
        self.register_outputs({})
