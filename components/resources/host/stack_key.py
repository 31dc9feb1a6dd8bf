"""StackKey: 32 random bytes a stack makes once and keeps, as a secret, for as long as it lives.

The secret fingerprints (components/config/runtime.py) are keyed with it, so a reader of the state cannot
test guesses of a hub's secret against its fingerprint, and rotating a login credential (the SSH
key) changes no fingerprint. Pulumi's random provider would do this, but its plugin can be neither
downloaded nor built where workhub is developed (docs/toolchain.md, "Toolchain notes"); so it is a dynamic
resource of workhub's own, and a small one.

The program needs the key as a value while it declares the stack, since the fingerprints are
plain text in triggers and Swarm secret names. It is read from the stack's state before anything is
declared (`stored_key`, on an export made through the Automation API: the SDK has no public way to
wait for a resource's output while the program runs), and goes into the resource as its input:
the stored one, or at the first run a new one (`declare_key`). A preview thus knows the key even
before the resource exists; once it exists, every run gets the stored one.
"""

from __future__ import annotations

import json
import secrets
from typing import Any, Mapping, Optional

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from components.constants import PULUMI_CLI

KEY_BYTES = 32
DYNAMIC = "pulumi-python:dynamic:Resource"
NAME = "fingerprint-key"
"""The resource's name: one per stack, at its root (workhub.summary knows it by this name too)."""


class StackKeyProvider(ResourceProvider):
    """Keeps the key it was created with: it never differs, never updates, never replaces."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_="stack-key", outs={"key": props["key"]})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return DiffResult(changes=False, replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs={"key": olds["key"]})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)


class StackKey(pulumi.dynamic.Resource):
    """The stack's own key (hex), a secret in the state and in every output."""

    key: pulumi.Output[str]

    def __init__(self, name: str, key: str, opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
            # The first run's key stays, whatever a later run gives.
            ignore_changes=["key"], additional_secret_outputs=["key"]))
        super().__init__(StackKeyProvider(), name, {"key": pulumi.Output.secret(key)}, opts)


def stored_key(deployment: Optional[Mapping[str, Any]], name: str = NAME) -> Optional[str]:
    """The key in a stack's state (`deployment`: an export with its secrets shown), "" if its
    resource holds none, None if the stack has no key yet."""
    for resource in (deployment or {}).get("resources") or []:
        if resource.get("type") == DYNAMIC and str(resource.get("urn", "")).endswith(f"::{name}"):
            key = (resource.get("outputs") or {}).get("key")
            if isinstance(key, Mapping):  # a secret, shown: {<signature>, "plaintext": <its JSON>}
                key = json.loads(key.get("plaintext") or '""')
            return key if isinstance(key, str) else ""
    return None


def declare_key(stored: Optional[str], name: str = NAME) -> str:
    """The stack's key, its resource declared: `stored` (what the state holds), or at its first run
    a new one."""
    if stored == "":
        # Only a state edited by hand gets here; a new key restarts each hub with secrets once.
        raise pulumi.RunError(f"the stack's key ({name}) has no value in the state; take it out with "
                              f"`{PULUMI_CLI} state delete --stack {pulumi.get_stack()} <its URN>`, and the next `up` "
                              "makes a new one (each hub with secrets restarts once)")
    key = stored or secrets.token_hex(KEY_BYTES)
    StackKey(name, key)
    return key
