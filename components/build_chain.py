"""BuildChain: a stack's hubs built one at a time, in config order, on one host."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import pulumi

from .build_host import BuildHost
from .config import BuildSettings, RegistryConfig
from .deploy import Serving
from .hub_image import HubImage, HubImageArgs
from .runtime import Runtime
from .plan import HubPlan
from .registry_image import Pusher, push_with_docker


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


class BuildChain(pulumi.ComponentResource):
    """Each hub's build (or pull, in registry mode) depends on the previous hub's (on the command
    resources themselves), so no two overlap on the host and the first failure stops the ones after
    it. Registry-mode images are built and pushed where Pulumi runs, each before its pull."""

    images: list[HubImage]

    def __init__(self, name: str, args: BuildChainArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("workhub:hub:BuildChain", name, None, opts)
        self.images = []
        after: list[pulumi.Resource] = list(args.host.ready)
        for plan in args.plans:
            image = HubImage(
                plan.hub.name,
                HubImageArgs(plan, args.host, args.build, args.npm_registry, args.serving,
                             args.runtimes[plan.hub.name], after, args.notify_url, args.registry, args.registry_password, args.pusher),
                pulumi.ResourceOptions(parent=self),
            )
            self.images.append(image)
            after = [image.build]
        self.register_outputs({})
