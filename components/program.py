"""The workhub Pulumi program: validate the stack config, plan the builds, declare the resources."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pulumi
from pulumi.runtime import config as runtime_config

from .build_chain import BuildChain, BuildChainArgs
from .build_host import BuildHost, BuildHostArgs
from .config import NAMESPACE, NOTIFY_WEBHOOK, SSH_KEY, ConfigError, StackConfig, namespaced, parse_stack_config
from .plan import HubPlan, plan_stack


def read_stack_config() -> StackConfig:
    """The whole `workhub:` config of the running stack, validated; raises ConfigError."""
    engine = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = set(runtime_config.get_config_secret_keys_env()) | runtime_config._SECRET_KEYS.get()
    raw, secrets = namespaced(engine, sorted(secret_keys))
    return parse_stack_config(raw, stack=pulumi.get_stack(), secret_keys=secrets)


def checked_plan(project_dir: Path) -> tuple[StackConfig, list[HubPlan]]:
    """The config and the build plan; every problem found stops the program, none is registered."""
    try:
        config = read_stack_config()
        plans, problems = plan_stack(config, pulumi.get_stack(), project_dir)
        if problems:
            raise ConfigError(problems)
    except ConfigError as error:
        # A RunError is shown without a Python traceback: the message says all there is to say.
        raise pulumi.RunError(str(error)) from None
    return config, plans


def program(project_dir: Path) -> tuple[BuildHost, BuildChain]:
    config, plans = checked_plan(project_dir)
    private_key = pulumi.Config(NAMESPACE).require_secret(SSH_KEY)
    notify_url = pulumi.Config(NAMESPACE).get_secret(NOTIFY_WEBHOOK)
    host = BuildHost(
        "build-host",
        BuildHostArgs(config.host, private_key, config.base_image, config.build, config.ssh_keep_alive,
                      tuple(plan.image for plan in plans)),
    )
    chain = BuildChain(
        "hubs",
        BuildChainArgs(plans, host, config.build, config.npm_registry, config.publish_address, notify_url),
    )
    pulumi.export("host", host.connection.describe())
    pulumi.export("hostFacts", host.facts)
    pulumi.export("hubs", {
        plan.hub.name: {"image": image.image, "url": image.url, "port": plan.hub.port, "hostPort": plan.host_port,
                        "build": image.build_result}
        for image, plan in zip(chain.images, plans)
    })
    return host, chain


def program_for(project_dir: Path) -> Callable[[], None]:
    """The program as the Automation API runs it: inline, for the project in `project_dir`."""
    return lambda: program(project_dir)
