"""HubImage: one hub built on the host from its uploaded context, then run and health-checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pulumi

from .build_host import BuildHost, parse_last_json
from .config import BuildSettings
from .plan import HubPlan
from .remote import RemoteCommand, Upload
from .scripts import build_script, context_dir, remove_image_script, run_script, stop_script


@dataclass(frozen=True)
class HubImageArgs:
    plan: HubPlan
    """The hub, its context, host port and the content hashes that identify its build."""
    host: BuildHost
    build: BuildSettings
    npm_registry: Optional[str]
    """The registry npm uses inside the build; None keeps the Dockerfile's (npm's) default."""
    publish_address: str
    """The host address the container's port is published on."""
    after: Sequence[pulumi.Resource] = ()
    """What this hub's build waits for: the host's preflight, or the previous hub's build."""
    notify_url: Optional[pulumi.Input[str]] = None
    """A webhook (a secret) told of each build's success or failure."""


class HubImage(pulumi.ComponentResource):
    """Builds `<hub>:<stack>-<id>` with BuildKit and (re)starts the hub's container from it.

    Nothing runs on the host when the context, the Dockerfile and the build settings are unchanged."""

    build: RemoteCommand
    run: RemoteCommand
    image: str
    url: pulumi.Output[str]
    build_result: pulumi.Output[dict]
    """What the build reported: its image, attempts and log path on the host."""

    def __init__(self, name: str, args: HubImageArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("workhub:hub:HubImage", name, None, opts)
        plan, host = args.plan, args.host
        self.image = plan.image

        def command(role: str, create: str, delete: str, after: Sequence[pulumi.Resource], **kwargs: Any):
            return RemoteCommand(
                f"{name}-{role}",
                connection=host.connection,
                private_key=host.private_key,
                create=create,
                delete=delete,
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(after)),
                **kwargs,
            )

        self.build = command(
            "build",
            build_script(plan.hub, plan.stack, plan.image, plan.build_id, args.build, args.npm_registry),
            remove_image_script(plan.image),
            args.after,
            triggers=plan.triggers,
            upload=Upload(str(plan.context), context_dir(plan.stack, plan.hub.name), plan.triggers["source"]),
            notify_url=args.notify_url,
        )
        self.run = command(
            "run",
            run_script(plan.hub, plan.stack, plan.image, plan.host_port, args.publish_address,
                       args.build.health_timeout_seconds),
            stop_script(plan.hub, plan.stack, plan.host_port, args.publish_address),
            [self.build],
        )
        self.result = self.run.stdout.apply(parse_last_json)
        self.url = self.result.apply(lambda out: out["url"])
        self.build_result = self.build.stdout.apply(parse_last_json)
        self.register_outputs({"image": self.image, "url": self.url})
