"""HubImage: one hub's image put on the host (built there, or pulled from the stack's registry),
then run and health-checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pulumi

from components.resources.host.build_host import BuildHost, parse_last_json
from components.config.models import BuildSettings, RegistryConfig
from components.plan.hubs import HubPlan
from components.resources.host.registry_image import Push, Pusher, push_with_docker
from components.render.host.deploy import Serving, check_script, run_script, stop_script
from components.resources.host.promotion import PROMOTED_HUB_PATH, run_alias
from components.resources.command import RemoteCommand, Upload
from components.config.runtime import Runtime
from components.render.host.build import build_script, context_dir, image_check_script, pull_script, remove_image_script


@dataclass(frozen=True)
class HubImageArgs:
    plan: HubPlan
    """The hub, its context, host port and the content hashes that identify its build."""
    host: BuildHost
    build: BuildSettings
    npm_registry: Optional[str]
    """The registry npm uses inside the build; None keeps the Dockerfile's (npm's) default."""
    serving: Serving
    """Where the hub's proxy publishes its host port, and how a new container takes over."""
    runtime: Runtime
    """The container's settings, secrets and volumes in this stack."""
    after: Sequence[pulumi.Resource] = ()
    """What this hub's build (or pull) waits for: the host's preflight, or the previous hub's."""
    notify_url: Optional[pulumi.Input[str]] = None
    """A webhook (a secret) told of each build's success or failure."""
    registry: Optional[RegistryConfig] = None
    """Where a registry-mode hub is pushed and pulled from."""
    registry_password: Optional[pulumi.Input[str]] = None
    """The registry's password (a secret), when it takes a login."""
    pusher: Pusher = push_with_docker
    """How a registry-mode image is built and pushed (pulumi-docker; tests stand in for CI)."""


def host_build(name: str, plan: HubPlan, host: BuildHost, build: BuildSettings, npm_registry: Optional[str],
               after: Sequence[pulumi.Resource], notify_url: Optional[pulumi.Input[str]],
               parent: pulumi.Resource) -> RemoteCommand:
    """The build of a hub's image on the build host (`<name>-build`): its context uploaded, BuildKit
    run detached under the host's build lock (one build at a time), the image left on the host."""
    return RemoteCommand(
        f"{name}-build",
        connection=host.connection,
        private_key=host.private_key,
        create=build_script(plan.hub, plan.stack, plan.image, plan.build_id, build, npm_registry),
        delete=remove_image_script(plan.hub, plan.stack, plan.image),
        triggers=plan.triggers,
        upload=Upload(str(plan.context), context_dir(plan.stack, plan.hub.name), plan.triggers["source"],
                      plan.build_files),
        notify_url=notify_url,
        check=image_check_script(plan.image),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=list(after)),
    )


class HubImage(pulumi.ComponentResource):
    """Puts `<hub>:<stack>-<id>` on the host and (re)starts the hub's container from it.

    In remote mode (the default) BuildKit builds it on the host. In registry mode it is built
    where Pulumi runs, pushed, and pulled by the host. Nothing runs on the host when the context,
    the Dockerfile and the build settings are unchanged."""

    build: RemoteCommand
    """The host step that makes the image: its build, or its pull (the next hub waits for it)."""
    run: RemoteCommand
    image: str
    pushed: Optional[str]
    """The registry image the host pulls, in registry mode."""
    url: pulumi.Output[str]
    build_result: pulumi.Output[dict]
    """What the build (or pull) reported: its image, attempts, and log path or registry digest."""

    def __init__(self, name: str, args: HubImageArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("workhub:hub:HubImage", name, None, opts)
        plan, host = args.plan, args.host
        self.image = plan.image
        self.pushed = None

        def command(role: str, create: str, delete: str, after: Sequence[pulumi.Resource],
                    aliases: Optional[list[pulumi.Alias]] = None, **kwargs: Any):
            return RemoteCommand(
                f"{name}-{role}",
                connection=host.connection,
                private_key=host.private_key,
                create=create,
                delete=delete,
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(after), aliases=aliases),
                **kwargs,
            )

        if plan.hub.build_mode == "registry":
            if args.registry is None:
                raise ValueError(f"hub {plan.hub.name} builds in registry mode but the stack has no workhub:registry")
            push = Push(plan, args.registry, args.build, args.npm_registry, args.registry_password)
            pushed = args.pusher(push, pulumi.ResourceOptions(parent=self))
            self.pushed = push.remote
            secrets = {"registry_password": args.registry_password} if args.registry.username else None
            self.build = command(
                "pull",
                pull_script(plan.hub, plan.stack, plan.image, plan.build_id, push.remote, args.registry.server,
                            args.registry.username, args.build),
                remove_image_script(plan.hub, plan.stack, plan.image),
                [*args.after, *pushed],
                triggers=plan.triggers,
                notify_url=args.notify_url,
                secret_values=secrets,
                check=image_check_script(plan.image),
            )
        else:
            self.build = host_build(name, plan, host, args.build, args.npm_registry, args.after, args.notify_url, self)
        self.run = command(
            "run",
            run_script(plan.hub, plan.stack, plan.image, plan.host_port, args.runtime, args.serving),
            stop_script(plan.hub, plan.stack, args.serving.publish_address),
            [self.build],
            aliases=[run_alias(PROMOTED_HUB_PATH, plan.hub.name)],
            triggers=args.runtime.triggers,
            secret_values=args.runtime.secret_values or None,
            check=check_script(plan.hub, plan.stack, plan.image, plan.host_port, args.runtime, args.serving),
        )
        self.result = self.run.stdout.apply(parse_last_json)
        self.url = self.result.apply(lambda out: out["url"])
        self.build_result = self.build.stdout.apply(parse_last_json)
        self.register_outputs({"image": self.image, "url": self.url})
