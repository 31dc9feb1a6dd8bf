"""The workhub Pulumi program: validate the stack config, plan the builds, declare the resources."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pulumi
from pulumi.runtime import config as runtime_config

from pulumi.runtime.sync_await import _sync_await

from .build_chain import BuildChain, BuildChainArgs
from .build_host import BuildHost, BuildHostArgs
from .config import (NAMESPACE, NOTIFY_WEBHOOK, REGISTRY_PASSWORD, SSH_KEY, ConfigError, StackConfig, built_hubs,
                     hub_secret_values, namespaced, parse_stack_config)
from .deploy import Serving
from .plan import HubPlan, dockerfile_warnings, host_only_warnings, plan_stack, volume_warnings
from .promotion import PromotedHub, candidates
from .registry_image import Pusher, push_with_docker
from .runtime import Runtime, hub_runtime


def read_stack_config() -> tuple[StackConfig, dict[str, Any]]:
    """The whole `workhub:` config of the running stack, validated (raises ConfigError), and the raw
    values it came from (the secrets among them)."""
    engine = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = set(runtime_config.get_config_secret_keys_env()) | runtime_config._SECRET_KEYS.get()
    raw, secrets = namespaced(engine, sorted(secret_keys))
    return parse_stack_config(raw, stack=pulumi.get_stack(), secret_keys=secrets), raw


def checked_plan(project_dir: Path) -> tuple[StackConfig, list[HubPlan], dict[str, Runtime]]:
    """The config, the builds to run and every hub's run-time settings; every problem found stops
    the program, none is registered.

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
    secrets = hub_secret_values(raw)
    runtimes = {hub.name: hub_runtime(hub, config, stack, secrets.get(hub.name, {}), raw[SSH_KEY])
                for hub in config.hubs}
    return config, plans, runtimes


def source_stack_hubs(name: str) -> dict[str, Any]:
    """The `hubs` output of the stack this one promotes from, read now so the preview can say
    which hub gets which image."""
    qualified = name if "/" in name else f"{pulumi.get_organization()}/{pulumi.get_project()}/{name}"
    details = _sync_await(pulumi.StackReference(f"promote-from-{name.replace('/', '-')}", qualified)
                          .get_output_details("hubs"))
    return details.value or details.secret_value or {}


def program(project_dir: Path, pusher: Pusher = push_with_docker) -> tuple[BuildHost, BuildChain, list[PromotedHub]]:
    """The whole stack. `pusher` builds and pushes registry-mode images (pulumi-docker, unless a
    test stands in for CI)."""
    config, plans, runtimes = checked_plan(project_dir)
    stack = pulumi.get_stack()
    built = config.model_copy(update={"hubs": built_hubs(config)})
    warnings = host_only_warnings(config) + dockerfile_warnings(built, project_dir) + volume_warnings(built, project_dir)
    for warning in warnings:
        pulumi.log.warn(warning)
    serving = Serving(config.publish_address, config.deploy, config.proxy_image)
    settings = pulumi.Config(NAMESPACE)
    private_key = settings.require_secret(SSH_KEY)
    notify_url = settings.get_secret(NOTIFY_WEBHOOK)
    host = BuildHost(
        "build-host",
        BuildHostArgs(config.host, private_key, config.base_image, config.build, config.ssh_keep_alive,
                      tuple(plan.image for plan in plans),
                      builds_here=any(plan.hub.build_mode == "remote" for plan in plans)),
    )
    chain = BuildChain(
        "hubs",
        BuildChainArgs(plans, host, config.build, config.npm_registry, serving, runtimes, notify_url,
                       config.registry, settings.get_secret(REGISTRY_PASSWORD), pusher),
    )
    built = {plan.hub.name for plan in plans}
    source_hubs = source_stack_hubs(config.promote_from) if config.promote_from else {}
    promoted = [
        PromotedHub(candidate.hub.name, candidate, host, serving, runtimes[candidate.hub.name], list(host.ready))
        for candidate in candidates([h for h in config.hubs if h.name not in built], stack, config.host_ports,
                                    config.promote_from, source_hubs, config.pinned_images)
    ]
    outputs: dict[str, Any] = {}

    def runtime_of(hub: str) -> dict[str, Any]:
        """What the hub's container gets, by name only: its settings, secrets and volumes."""
        found = runtimes[hub]
        return {"settings": sorted(found.env), "secrets": list(found.secret_names),
                "volumes": {volume.name: volume.docker_name for volume in found.volumes}}

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
    pulumi.export("host", host.connection.describe())
    pulumi.export("hostFacts", host.facts)
    pulumi.export("hubs", outputs)
    return host, chain, promoted


def program_for(project_dir: Path, pusher: Pusher = push_with_docker) -> Callable[[], None]:
    """The program as the Automation API runs it: inline, for the project in `project_dir`."""
    return lambda: program(project_dir, pusher)
