"""BuildChain: a stack's hubs built one at a time, in config order, on one host (on a Swarm: on its
build node, each pushed to the stack's registry after its build)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

import pulumi

from components.resources.host.build_host import BuildHost
from components.config.models import BuildSettings, RegistryConfig
from components.render.host.deploy import Serving
from components.resources.host.hub_image import HubImage, HubImageArgs
from components.config.runtime import Runtime
from components.plan.hubs import HubPlan
from components.resources.host.registry_image import Pusher, push_with_docker
from components.resources.swarm.image import SwarmImage, SwarmImageArgs


@dataclass(frozen=True)
class BuildChainArgs:
    plans: Sequence[HubPlan]
    """The hubs in config order: the order they are built in."""
    host: BuildHost
    build: BuildSettings
    npm_registry: Optional[str]
    serving: Serving
    runtimes: Mapping[str, Runtime]
    """Each hub's run-time settings in this stack, by hub name."""
    notify_url: Optional[pulumi.Input[str]] = None
    registry: Optional[RegistryConfig] = None
    registry_password: Optional[pulumi.Input[str]] = None
    pusher: Pusher = push_with_docker
    swarm: bool = False
    """The stack runs on a Swarm: each image goes to the registry for the nodes (SwarmImage), and the
    host (the build node) runs no hub."""


class BuildChain(pulumi.ComponentResource):
    """Each hub's build (or pull, in registry mode) depends on the previous hub's (on the command
    resources themselves), so no two overlap on the host and the first failure stops the ones after
    it. Registry-mode images are built and pushed where Pulumi runs, each before its pull (on a Swarm,
    before the deploy: the nodes pull)."""

    images: list[Union[HubImage, SwarmImage]]

    def __init__(self, name: str, args: BuildChainArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("workhub:hub:BuildChain", name, None, opts)
        self.images = []
        after: list[pulumi.Resource] = list(args.host.ready)
        for plan in args.plans:
            image: Union[HubImage, SwarmImage]
            options = pulumi.ResourceOptions(parent=self)
            if args.swarm:
                assert args.registry is not None, "a Swarm stack has a registry (components.config.swarm)"
                image = SwarmImage(plan.hub.name, SwarmImageArgs(
                    plan, args.host, args.build, args.npm_registry, args.registry, args.registry_password, after,
                    args.notify_url, args.pusher), options)
            else:
                image = HubImage(plan.hub.name, HubImageArgs(
                    plan, args.host, args.build, args.npm_registry, args.serving, args.runtimes[plan.hub.name], after,
                    args.notify_url, args.registry, args.registry_password, args.pusher), options)
            self.images.append(image)
            # A registry-mode image on a Swarm has no step on the build node: the next build waits for
            # the same as this one would have.
            after = [image.build] if image.build is not None else after
        self.register_outputs({})
