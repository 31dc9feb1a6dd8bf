"""The workhub Pulumi program: validate the stack config, plan the builds, declare the resources."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable

import pulumi
from pulumi.runtime import config as runtime_config

from pulumi.runtime.sync_await import _sync_await

from components.resources.build_chain import BuildChain, BuildChainArgs
from components.resources.host.build_host import BuildHost, BuildHostArgs
from components.config.models import NAMESPACE, NOTIFY_WEBHOOK, REGISTRY_PASSWORD, SSH_KEY, StackConfig, built_hubs
from components.config.checks import ConfigError
from components.config.parse import hub_secret_values, namespaced, parse_stack_config
from components.render.host.deploy import Serving
from components.resources.host.hub_data import HubData, HubDataArgs
from components.plan.hubs import (HubPlan, dockerfile_warnings, host_only_warnings, plan_stack, private_file_warnings,
                                  volume_warnings)
from components.resources.host.promotion import PromotedHub, candidates, swarm_sources
from components.resources.host.registry_image import Pusher, push_with_docker
from components.config.runtime import Runtime, hub_runtime
from components.resources.host.stack_key import read_key
from components.render.swarm.stack import namespace
from components.resources.swarm.cluster import SwarmCluster, SwarmClusterArgs, node_connection
from components.resources.swarm.stack import SwarmStack, SwarmStackArgs, urls


def read_stack_config() -> tuple[StackConfig, dict[str, Any]]:
    """The whole `workhub:` config of the running stack, validated (raises ConfigError), and the raw
    values it came from (the secrets among them)."""
    engine = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = set(runtime_config.get_config_secret_keys_env()) | runtime_config._SECRET_KEYS.get()
    raw, secrets = namespaced(engine, sorted(secret_keys))
    return parse_stack_config(raw, stack=pulumi.get_stack(), secret_keys=secrets), raw


def checked_plan(project_dir: Path) -> tuple[StackConfig, list[HubPlan], dict[str, dict[str, str]]]:
    """The config, the builds to run and every hub's secret values; every problem found stops the
    program, none is registered.

    A stack that promotes from another builds nothing, and neither does a pinned hub."""
    stack = pulumi.get_stack()
    try:
        config, raw = read_stack_config()
        plans, problems = plan_stack(config.model_copy(update={"hubs": built_hubs(config)}), stack, project_dir)
        if problems:
            raise ConfigError(problems)
    except ConfigError as error:
        # A RunError is shown without a Python traceback: the message says all there is to say.
        raise pulumi.RunError(str(error)) from None
    return config, plans, hub_secret_values(raw)


def hub_runtimes(config: StackConfig, secrets: dict[str, dict[str, str]]) -> dict[str, Runtime]:
    """Every hub's run-time settings. The fingerprints of its secrets are keyed with the stack's own
    key, made (a resource, after every check passed) the first time a hub of the stack has a secret
    and kept from then on: never a login credential, whose rotation would restart every such hub."""
    key = read_key() if any(hub.secrets for hub in config.hubs) else ""
    return {hub.name: hub_runtime(hub, config, pulumi.get_stack(), secrets.get(hub.name, {}), key)
            for hub in config.hubs}


def source_stack_hubs(name: str) -> dict[str, Any]:
    """The `hubs` output of the stack this one promotes from, read now so the preview can say
    which hub gets which image."""
    qualified = name if "/" in name else f"{pulumi.get_organization()}/{pulumi.get_project()}/{name}"
    details = _sync_await(pulumi.StackReference(f"promote-from-{name.replace('/', '-')}", qualified)
                          .get_output_details("hubs"))
    return details.value or details.secret_value or {}


def _build_host_and_chain(project_dir: Path, config: StackConfig, plans: list[HubPlan], runtimes: dict[str, Runtime],
                          pusher: Pusher) -> tuple[BuildHost, BuildChain]:
    """The build host (on a Swarm: its build node) and the chain of builds on it, after the
    warnings the plan gives."""
    built = config.model_copy(update={"hubs": built_hubs(config)})
    warnings = (host_only_warnings(config) + dockerfile_warnings(built, project_dir)
                + volume_warnings(built, project_dir) + private_file_warnings(built, project_dir))
    for warning in warnings:
        pulumi.log.warn(warning)
    serving = Serving(config.publish_address, config.deploy, config.proxy_image, config.helper)
    settings = pulumi.Config(NAMESPACE)
    builds_here = any(plan.hub.build_mode == "remote" for plan in plans)
    host = BuildHost(
        "build-host",
        BuildHostArgs(config.host, settings.require_secret(SSH_KEY), config.base_image, config.build,
                      config.ssh_keep_alive, tuple(plan.image for plan in plans), builds_here=builds_here,
                      # One host runs its hubs (its disk is checked in any case); a Swarm's build node
                      # only builds.
                      checked=builds_here or config.swarm is None),
    )
    chain = BuildChain(
        "hubs",
        BuildChainArgs(plans, host, config.build, config.npm_registry, serving, runtimes,
                       settings.get_secret(NOTIFY_WEBHOOK), config.registry, settings.get_secret(REGISTRY_PASSWORD),
                       pusher, swarm=config.swarm is not None),
    )
    return host, chain


def _runtime_of(runtimes: dict[str, Runtime], hub: str) -> dict[str, Any]:
    """What the hub's container gets, by name only: its settings, secrets and volumes."""
    found = runtimes[hub]
    return {"settings": sorted(found.env), "secrets": list(found.secret_names),
            "volumes": {volume.name: volume.docker_name for volume in found.volumes}}


def program(project_dir: Path, pusher: Pusher = push_with_docker) -> tuple[BuildHost, BuildChain, Any]:
    """The whole stack: on one host, or (with workhub:swarm) on a Docker Swarm. `pusher` builds and
    pushes registry-mode images (pulumi-docker, unless a test stands in for CI). Returns the build
    host, the build chain, and the promoted hubs (one host) or the SwarmStack."""
    config, plans, secrets = checked_plan(project_dir)
    built = {plan.hub.name for plan in plans}
    source_hubs = source_stack_hubs(config.promote_from) if config.promote_from else {}
    if config.swarm is not None:
        sources, problems = swarm_sources([hub for hub in config.hubs if hub.name not in built], config.promote_from,
                                          source_hubs, config.pinned_images)
        if problems:
            raise pulumi.RunError("nothing to deploy for some hubs:\n" + "\n".join(f"  {line}" for line in problems))
        runtimes = hub_runtimes(config, secrets)
        host, chain = _build_host_and_chain(project_dir, config, plans, runtimes, pusher)
        return host, chain, swarm_program(config, host, chain, runtimes, sources)
    runtimes = hub_runtimes(config, secrets)
    host, chain = _build_host_and_chain(project_dir, config, plans, runtimes, pusher)
    stack = pulumi.get_stack()
    serving = Serving(config.publish_address, config.deploy, config.proxy_image, config.helper)
    promoted = [
        PromotedHub(candidate.hub.name, candidate, host, serving, runtimes[candidate.hub.name], list(host.ready))
        for candidate in candidates([h for h in config.hubs if h.name not in built], stack, config.host_ports,
                                    config.promote_from, source_hubs, config.pinned_images)
    ]
    outputs: dict[str, Any] = {}
    runtime_of = partial(_runtime_of, runtimes)
    for image, plan in zip(chain.images, plans):
        outputs[plan.hub.name] = {"image": image.image, "url": image.url, "port": plan.hub.port,
                                  "hostPort": plan.host_port, "mode": plan.hub.build_mode, "build": image.build_result,
                                  "verified": image.result, **runtime_of(plan.hub.name)}
        if image.pushed:
            outputs[plan.hub.name]["pushed"] = image.pushed
    for hub in promoted:
        candidate = hub.candidate
        outputs[candidate.hub.name] = {"image": candidate.image, "url": hub.url, "port": candidate.hub.port,
                                       "hostPort": candidate.host_port, "from": candidate.source_image,
                                       "origin": candidate.origin or candidate.reason, "verified": hub.result,
                                       **runtime_of(candidate.hub.name)}
    runs = {**{plan.hub.name: image.run for image, plan in zip(chain.images, plans)},
            **{hub.candidate.hub.name: hub.run for hub in promoted}}
    protect = config.protects_data(stack)
    for hub in config.hubs:
        if hub.volumes:
            HubData(hub.name, HubDataArgs(hub, stack, host.connection, host.private_key, [runs[hub.name]], protect))
    pulumi.export("host", host.connection.describe())
    pulumi.export("hostFacts", host.facts)
    pulumi.export("hubs", outputs)
    return host, chain, promoted


def swarm_program(config: StackConfig, host: BuildHost, chain: BuildChain, runtimes: dict[str, Runtime],
                  sources: dict[str, tuple[str, str]]) -> SwarmStack:
    """The stack on its Swarm: the Swarm formed (or found) and labelled, every hub's image in the
    stack's registry (built ones pushed; the others, `sources`, promoted by digest or pinned), then
    one deploy of all services on the first manager. Outputs per hub: the image its service runs (by
    digest), its tasks running/desired and its URLs (one per serving node)."""
    assert config.swarm is not None
    stack = pulumi.get_stack()
    settings = pulumi.Config(NAMESPACE)
    private_key = settings.require_secret(SSH_KEY)
    built = {image.plan.hub.name: image for image in chain.images}
    images = {**{name: image.image for name, image in built.items()},
              **{name: image for name, (image, _) in sources.items()}}
    cluster = SwarmCluster("swarm", SwarmClusterArgs(config, private_key))
    deployed = SwarmStack("swarm", SwarmStackArgs(
        config, stack, images, runtimes, private_key, settings.get_secret(REGISTRY_PASSWORD),
        after=[*cluster.ready, *(step for image in built.values() for step in image.ready)]))
    for hub in config.hubs:
        node = config.swarm.data_node(hub.name)
        if hub.volumes and node is not None:
            HubData(hub.name, HubDataArgs(hub, stack, node_connection(config, node), private_key, [deployed.deploy],
                                          config.protects_data(stack), namespace(stack)))
    outputs = partial(swarm_outputs, config, {name: image.image for name, image in built.items()}, sources, runtimes)
    pulumi.export("host", host.connection.describe())
    if host.facts is not None:
        pulumi.export("hostFacts", host.facts)
    pulumi.export("swarm", {"stack": namespace(stack), "managers": config.swarm.managers,
                            "nodes": [node.name for node in config.swarm.nodes]})
    pulumi.export("hubs", deployed.result.apply(outputs))
    return deployed


def swarm_outputs(config: StackConfig, pushed: dict[str, str], sources: dict[str, tuple[str, str]],
                  runtimes: dict[str, Runtime], result: dict[str, Any]) -> dict[str, Any]:
    """The `hubs` output of a Swarm stack, from what its deploy reported (`result`): each hub's image
    by digest (what a promotion from this stack runs), the image it ran before its last image change
    (what a rollback pins; empty for a new service), its tasks running/desired, its URL on each
    serving node; the registry tag pushed for a built hub, where a promoted or pinned one came from."""
    found = urls(config)
    outputs = {}
    for hub in config.hubs:
        service = result["hubs"][hub.name]
        outputs[hub.name] = {"image": service["image"], "previousImage": service.get("previous") or "",
                             "replicas": service["replicas"], "url": found[hub.name][0],
                             "urls": found[hub.name], "port": hub.port, "hostPort": config.host_ports[hub.name],
                             **_runtime_of(runtimes, hub.name)}
        if hub.name in pushed:
            outputs[hub.name].update(mode=hub.build_mode, pushed=pushed[hub.name])
        else:
            outputs[hub.name].update({"from": sources[hub.name][0], "origin": sources[hub.name][1]})
    return outputs


def program_for(project_dir: Path, pusher: Pusher = push_with_docker) -> Callable[[], None]:
    """The program as the Automation API runs it: inline, for the project in `project_dir`."""
    return lambda: program(project_dir, pusher)
