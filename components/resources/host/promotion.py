"""Promotion: a stack (production) that runs exactly the images another stack (staging) built and
verified, instead of building its own; and pinned images, the one-line rollback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import pulumi

from components.resources.host.build_host import BuildHost, parse_last_json
from components.config.models import Hub
from components.render.host.deploy import Serving, check_script, run_script, stop_script
from components.resources.command import RemoteCommand
from components.config.runtime import Runtime
from components.render.host.build import image_check_script, not_promoted_script, promote_script, untag_script


@dataclass(frozen=True)
class Candidate:
    """What a hub of this stack will run instead of a build of its own."""

    hub: Hub
    stack: str
    host_port: int
    source_image: Optional[str]
    """The image to run, as the source stack (or the pin) names it; None when there is none."""
    image_id: Optional[str]
    """The image ID the source stack verified (None for a pinned image)."""
    origin: str
    """Where it comes from, for the preview: `stack staging, verified <time>` or `pinned`."""
    reason: str = ""
    """Why there is nothing to promote, when there is not."""

    @property
    def image(self) -> Optional[str]:
        """The tag this stack runs: `<hub>:<stack>-<the source's build id>`, or the pinned tag."""
        if self.source_image is None or self.image_id is None:
            return self.source_image
        return f"{self.hub.name}:{self.stack}-{self.source_image.rsplit('-', 1)[-1]}"


def candidates(
    hubs: list[Hub], stack: str, host_ports: Mapping[str, int], source_stack: Optional[str],
    source_hubs: Mapping[str, Any], pinned: Mapping[str, str],
) -> list[Candidate]:
    """Each hub's candidate: a pinned image wins; otherwise what the source stack verified."""
    found = []
    for hub in hubs:
        port = host_ports[hub.name]
        if hub.name in pinned:
            found.append(Candidate(hub, stack, port, pinned[hub.name], None, "pinned in workhub:pinnedImages"))
            continue
        verified = (source_hubs.get(hub.name) or {}).get("verified") or {}
        if verified.get("image") and verified.get("image_id"):
            found.append(Candidate(hub, stack, port, verified["image"], verified["image_id"],
                                   f"stack {source_stack}, verified healthy at {verified.get('verified_at')}"))
        else:
            reason = (f"stack {source_stack} has not verified {hub.name}: its last update did not bring it "
                      "up healthy" if hub.name in source_hubs else f"stack {source_stack} has no {hub.name}")
            found.append(Candidate(hub, stack, port, None, None, "", reason))
    return found


# A hub's run command moves between a HubImage (it builds) and a PromotedHub (it runs a promoted or
# pinned image) when promotion or a pin is set or removed. Each names the other's run as an alias,
# so the engine updates the one run (a switch behind the proxy) instead of creating a new run and
# then deleting the old one, whose delete would stop the hub.
HUB_IMAGE_PATH = "workhub:hub:BuildChain$workhub:hub:HubImage"
PROMOTED_HUB_PATH = "workhub:hub:PromotedHub"


def run_alias(component_path: str, hub: str) -> pulumi.Alias:
    """An alias naming the run of `hub` under the component at `component_path` (its type chain)."""
    return pulumi.Alias(parent=f"urn:pulumi:{pulumi.get_stack()}::{pulumi.get_project()}::{component_path}::{hub}")


class PromotedHub(pulumi.ComponentResource):
    """Tags the verified (or pinned) image for this stack on the host and runs it, health-gated.

    A hub with nothing to promote keeps what it runs: its commands ignore changes until there is."""

    url: pulumi.Output[Optional[str]]

    def __init__(self, name: str, candidate: Candidate, host: BuildHost, serving: Serving, runtime: Runtime,
                 after: list[pulumi.Resource], opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("workhub:hub:PromotedHub", name, None, opts)
        self.candidate = candidate
        hub, stack, image = candidate.hub, candidate.stack, candidate.image
        hold = [] if image else ["create", "delete", "triggers"]
        if image:
            promote = promote_script(hub, candidate.source_image, image, candidate.image_id)
            # A pinned image is run under its own tag, which belongs to whoever made it: keep it.
            untag = untag_script(image) if image != candidate.source_image else None
            run = run_script(hub, stack, image, candidate.host_port, runtime, serving)
            pulumi.log.info(f"{hub.name}: runs {image} from {candidate.source_image} ({candidate.origin})", self)
        else:
            promote = untag = run = not_promoted_script(hub)
            pulumi.log.warn(f"{hub.name}: not promoted: {candidate.reason}; it keeps what it runs", self)

        def command(role: str, create: str, delete: Optional[str], deps: list[pulumi.Resource],
                    aliases: Optional[list[pulumi.Alias]] = None, **kwargs: Any) -> RemoteCommand:
            return RemoteCommand(
                f"{name}-{role}", connection=host.connection, private_key=host.private_key,
                create=create, delete=delete,
                opts=pulumi.ResourceOptions(parent=self, depends_on=deps, ignore_changes=hold, aliases=aliases),
                **kwargs,
            )

        self.promote = command("promote", promote, untag, after, check=image_check_script(image) if image else None)
        settings = {"triggers": runtime.triggers, "secret_values": runtime.secret_values or None,
                    "check": check_script(hub, stack, image, candidate.host_port, runtime, serving)} if image else {}
        self.run = command("run", run, stop_script(hub, stack, serving.publish_address) if image else run,
                           [self.promote], aliases=[run_alias(HUB_IMAGE_PATH, hub.name)], **settings)
        self.result = self.run.stdout.apply(parse_last_json)
        self.url = self.result.apply(lambda out: out.get("url"))
        self.register_outputs({"url": self.url})


def swarm_sources(hubs: list[Hub], source_stack: Optional[str], source_hubs: Mapping[str, Any],
                  pinned: Mapping[str, str]) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """On a Swarm, what each hub this stack does not build runs, as (image, origin): a pin, or the
    image the source stack's Swarm deployed and saw converge, by digest (its `hubs.<hub>.image`
    output, which only a deploy that converged sets). A hub with neither is a problem: a service
    needs an image, and its digest is what makes the promoted image the verified one."""
    found, problems = {}, []
    for hub in hubs:
        if hub.name in pinned:
            found[hub.name] = (pinned[hub.name], "pinned in workhub:pinnedImages")
            continue
        image = (source_hubs.get(hub.name) or {}).get("image") or ""
        if "@sha256:" in image:
            found[hub.name] = (image, f"stack {source_stack}, converged on its Swarm")
        elif hub.name in source_hubs:
            problems.append(f"{hub.name}: stack {source_stack} names no image by digest for it ({image or 'none'}); "
                            f"deploy it on stack {source_stack}'s Swarm first, or pin an image in workhub:pinnedImages")
        else:
            problems.append(f"{hub.name}: stack {source_stack} has no {hub.name}; deploy it there first, or pin an "
                            "image in workhub:pinnedImages")
    return found, problems
