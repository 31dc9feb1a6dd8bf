"""The stack config as Pulumi holds it -> one validated StackConfig, or every problem at once.

Every value the program uses comes from the stack config under the `workhub:` namespace. A bad or
missing value stops the program with one message per problem, each naming its key path and the
command that fixes it.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from pydantic import ValidationError

from components.config.checks import (ConfigError, Problem, _problems_from, cross_checks, digest_problems,
                                      registry_problems, runtime_problems, secret_fix, secret_problems,
                                      stored_in_plain_text, webhook_problem)
from components.config.models import HUB_SECRETS, NAMESPACE, NOTIFY_WEBHOOK, SECRET_SETTINGS, SSH_KEY, StackConfig
from components.config.swarm import derive_host, swarm_problems, without_derived_host


def parse_stack_config(raw: Mapping[str, Any], *, stack: str, secret_keys: set[str]) -> StackConfig:
    """Validate the whole `workhub:` config of one stack.

    `raw` maps every key set in the namespace, without the `workhub:` prefix, to its value (objects
    already decoded); `secret_keys` names the keys that are stored as secrets. The SSH key is only
    checked for presence and secrecy: its value never reaches the typed config.
    """
    values, problems = derive_host({k: v for k, v in raw.items() if k not in SECRET_SETTINGS}, stack)
    config: Optional[StackConfig] = None
    try:
        config = StackConfig.model_validate(values)
    except ValidationError as error:
        found = _problems_from(error, values, stack)
        problems += without_derived_host(found) if "swarm" in values else found
    else:
        problems += cross_checks(config, stack) + swarm_problems(config, stack) + digest_problems(config, stack)
    key_fix = secret_fix(SSH_KEY, stack, "< <path to the deploy key>")
    if raw.get(SSH_KEY) in (None, ""):
        problems.append(Problem(f"{NAMESPACE}:{SSH_KEY}", "is not set", key_fix))
    elif SSH_KEY not in secret_keys:
        problems.append(stored_in_plain_text(SSH_KEY, key_fix))
    hook_fix = secret_fix(NOTIFY_WEBHOOK, stack, "< <file holding the https URL>")
    if NOTIFY_WEBHOOK in raw:
        if NOTIFY_WEBHOOK not in secret_keys:
            problems.append(stored_in_plain_text(NOTIFY_WEBHOOK, hook_fix))
        else:
            wrong = webhook_problem(str(raw[NOTIFY_WEBHOOK]))
            if wrong:
                problems.append(Problem(f"{NAMESPACE}:{NOTIFY_WEBHOOK}", wrong, hook_fix))
    if config is not None:
        problems += registry_problems(config, stack, raw, secret_keys)
        problems += runtime_problems(config, stack)
        problems += secret_problems(config, stack, raw.get(HUB_SECRETS), HUB_SECRETS in secret_keys)
    if problems:
        raise ConfigError(problems)
    assert config is not None
    return config


def namespaced(config: Mapping[str, Any], secret_keys: list[str]) -> tuple[dict[str, Any], set[str]]:
    """Pick the `workhub:` keys out of the engine's config map, decoding object values."""
    prefix = f"{NAMESPACE}:"
    raw: dict[str, Any] = {}
    for key, value in config.items():
        if not key.startswith(prefix):
            continue
        if isinstance(value, str) and value[:1] in ("{", "["):
            value = json.loads(value)
        raw[key[len(prefix):]] = value
    return raw, {k[len(prefix):] for k in secret_keys if k.startswith(prefix)}


def hub_secret_values(raw: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """The secret values by hub and name, from a config parse_stack_config accepted."""
    found = raw.get(HUB_SECRETS) or {}
    return {hub: dict(values) for hub, values in found.items()}
