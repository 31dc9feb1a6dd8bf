"""SwarmImage: one hub's image in the stack's registry, where every node of the Swarm pulls it from
(with the registry login `docker stack deploy --with-registry-auth` passes, never left on a node's
disk). A registry-mode hub is built and pushed where Pulumi runs (CI), as for one host; a host-built
hub is built on the build node by the same build step as one host's (its context uploaded, one build
at a time under the node's build lock, its warm npm cache), then pushed from there.

Either way the image is `<server>/<repository>/<hub>:<stack>-<build id>`, known from the config alone,
so the deploy's stack file names it without reading any command's output; the deploy resolves the
tag to its digest (`--resolve-image always`), which is what the services run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi

from components.resources.host.build_host import BuildHost
from components.config.models import BuildSettings, RegistryConfig
from components.resources.host.hub_image import host_build
from components.plan.hubs import HubPlan
from components.resources.host.registry_image import Push, Pusher, push_with_docker
from components.resources.command import RemoteCommand
from components.render.swarm.scripts import push_script


@dataclass(frozen=True)
class SwarmImageArgs:
    plan: HubPlan
    """The hub, its context and the content hashes that identify its build."""
    host: BuildHost
    """The build node."""
    build: BuildSettings
    npm_registry: Optional[str]
    registry: RegistryConfig
    """The stack's image registry, which every node reaches."""
    registry_password: Optional[pulumi.Input[str]] = None
    """Its password (a secret), when it takes a login."""
    after: Sequence[pulumi.Resource] = ()
    """What a host build waits for: the build node's preflight, or the previous hub's build."""
    notify_url: Optional[pulumi.Input[str]] = None
    pusher: Pusher = push_with_docker


class SwarmImage(pulumi.ComponentResource):
    """Puts a hub's image in the stack's registry: pushed from CI, or built on the build node and
    pushed from there after its build."""

    plan: HubPlan
    image: str
    """The registry image the hub's service runs (by tag; the deploy pins its digest)."""
    build: Optional[RemoteCommand]
    """The build on the build node (None in registry mode): the next hub's build waits for it."""
    ready: list[pulumi.Resource]
    """What the deploy waits for: the push."""

    def __init__(self, name: str, args: SwarmImageArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("workhub:swarm:SwarmImage", name, None, opts)
        plan, host = args.plan, args.host
        self.plan = plan
        push = Push(plan, args.registry, args.build, args.npm_registry, args.registry_password)
        self.image = push.remote
        self.build = None
        if plan.hub.build_mode == "registry":
            self.ready = args.pusher(push, pulumi.ResourceOptions(parent=self))
        else:
            self.build = host_build(name, plan, host, args.build, args.npm_registry, args.after, args.notify_url, self)
            self.ready = [RemoteCommand(
                f"{name}-push", connection=host.connection, private_key=host.private_key,
                create=push_script(plan.image, push.remote, args.registry, args.build),
                triggers=plan.triggers, notify_url=args.notify_url,
                secret_values={"registry_password": args.registry_password} if args.registry.username else None,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.build]))]
        self.register_outputs({"image": self.image})
