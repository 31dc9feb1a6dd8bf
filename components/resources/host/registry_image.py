"""Registry mode: a hub's image built where Pulumi runs (CI) with pulumi-docker and BuildKit, and
pushed to the stack's registry; the host then pulls it (components.resources.host.hub_image) and runs it with the
same run, health and promotion steps as an image built on the host.

The image's tag comes from the same content hashes as a host build's (`<stack>-<build id>`), so
the host's pull script is known from the stack config alone. Each stack's newest image is also
pushed as `<hub>:<stack>`: the next build's BuildKit registry cache (an inline cache, kept in the
image's config), so a CI runner that starts empty still reuses every unchanged layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import pulumi

from components.config.models import BuildSettings, RegistryConfig
from components.plan.hubs import HubPlan
from components.render.host.build import build_arg_values


@dataclass(frozen=True)
class Push:
    """One registry-mode hub to build and push: what, where to, and with which build args."""

    plan: HubPlan
    registry: RegistryConfig
    build: BuildSettings
    npm_registry: Optional[str]
    password: Optional[pulumi.Input[str]] = None
    """The registry password (a secret), when workhub:registry.username is set."""

    @property
    def repository(self) -> str:
        return f"{self.registry.server}/{self.registry.repository}/{self.plan.hub.name}"

    @property
    def remote(self) -> str:
        """The pushed image, tagged like the host's build of the same content."""
        return f"{self.repository}:{self.plan.stack}-{self.plan.build_id}"

    @property
    def cache(self) -> str:
        """The stack's newest image: what the next build takes its layer cache from."""
        return f"{self.repository}:{self.plan.stack}"

    @property
    def network(self) -> str:
        """What the build's RUN steps reach (`docker build --network`): the hub's buildNetwork."""
        return self.plan.hub.build_network

    @property
    def args(self) -> dict[str, str]:
        """The build args of a host build (NODE_OPTIONS, npm's settings, the hub's own), plus an
        inline cache so the pushed image can serve as the next build's cache."""
        return {**build_arg_values(self.plan.hub, self.build, self.npm_registry), "BUILDKIT_INLINE_CACHE": "1"}


Pusher = Callable[[Push, pulumi.ResourceOptions], list[pulumi.Resource]]
"""Builds and pushes one hub's image; returns the resources the host's pull must wait for."""


def push_with_docker(push: Push, opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
    """docker.Image builds with BuildKit (cache from the stack's newest image) and pushes; then the
    new image is tagged and pushed as the stack's newest, for the next build's cache."""
    import pulumi_docker as docker

    plan, registry = push.plan, push.registry
    name = plan.hub.name
    login = None
    provider_opts = opts
    if registry.username:
        login = docker.RegistryArgs(server=registry.server, username=registry.username,
                                    password=pulumi.Output.secret(push.password))
        provider = docker.Provider(f"{name}-registry", registry_auth=[docker.ProviderRegistryAuthArgs(
            address=registry.server, username=registry.username, password=pulumi.Output.secret(push.password))],
            opts=opts)
        provider_opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(provider=provider))
    image = docker.Image(
        f"{name}-image",
        image_name=push.remote,
        build=docker.DockerBuildArgs(
            context=str(plan.context),
            dockerfile=str(plan.context / plan.hub.dockerfile),
            args=push.args,
            builder_version=docker.BuilderVersion.BUILDER_BUILD_KIT,
            cache_from=docker.CacheFromArgs(images=[push.cache]),
            # As on the host: RUN steps use Docker's bridge network unless the hub asks for the
            # builder's own (buildNetwork: host, to reach an npm registry cache on its loopback).
            network=push.network,
            platform=registry.platform,
        ),
        registry=login,
        opts=opts,
    )
    # Each new image replaces the tag; the old one must go first, or its removal would untag the new.
    tag = docker.Tag(f"{name}-newest-tag", source_image=image.image_name, target_image=push.cache,
                     opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[image],
                                                                                    delete_before_replace=True)))
    newest = docker.RegistryImage(f"{name}-newest", name=tag.target_image, keep_remotely=True,
                                  triggers={"digest": image.repo_digest}, opts=provider_opts)
    return [image, tag, newest]
