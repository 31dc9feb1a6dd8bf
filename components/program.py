"""The workhub Pulumi program: validate the stack config, then declare the resources."""

from __future__ import annotations

import pulumi
from pulumi.runtime import config as runtime_config

from .build_host import BuildHost, BuildHostArgs
from .config import NAMESPACE, SSH_KEY, ConfigError, StackConfig, namespaced, parse_stack_config


def read_stack_config() -> StackConfig:
    """The whole `workhub:` config of the running stack, validated; raises ConfigError."""
    engine = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = set(runtime_config.get_config_secret_keys_env()) | runtime_config._SECRET_KEYS.get()
    raw, secrets = namespaced(engine, sorted(secret_keys))
    return parse_stack_config(raw, stack=pulumi.get_stack(), secret_keys=secrets)


def program() -> BuildHost:
    try:
        config = read_stack_config()
    except ConfigError as error:
        # A RunError is shown without a Python traceback: the message says all there is to say.
        raise pulumi.RunError(str(error)) from None
    private_key = pulumi.Config(NAMESPACE).require_secret(SSH_KEY)
    host = BuildHost("build-host", BuildHostArgs(config.host, private_key, config.base_image))
    pulumi.export("host", host.connection.describe())
    pulumi.export("hostFacts", host.facts)
    return host
