"""StackKey: 32 random bytes a stack makes once and keeps, as a secret, for as long as it lives.

The secret fingerprints (components/config/runtime.py) are keyed with it, so a reader of the state cannot
test guesses of a hub's secret against its fingerprint, and rotating a login credential (the SSH
key) changes no fingerprint. Pulumi's random provider would do this, but its plugin can be neither
downloaded nor built where workhub is developed (README, "Toolchain notes"); so it is a dynamic
resource of workhub's own, and a small one.

The program reads the key while it declares the stack (`read_key`), since the fingerprints are
plain text in triggers and Swarm secret names: the key is therefore an input, made by the program
at each run and ignored after the first (`ignore_changes`). A preview sees an input, not an output,
so it knows the key even before the resource exists; once it exists, every run gets the stored one.
"""

from __future__ import annotations

import secrets
from typing import Any, Optional

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult
from pulumi.runtime.sync_await import _sync_await

from components.constants import PULUMI_CLI

KEY_BYTES = 32
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

    def __init__(self, name: str, opts: Optional[pulumi.ResourceOptions] = None):
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
            # The first run's key stays: later runs' fresh ones are ignored.
            ignore_changes=["key"], additional_secret_outputs=["key"]))
        super().__init__(StackKeyProvider(), name, {"key": pulumi.Output.secret(secrets.token_hex(KEY_BYTES))}, opts)


def read_key(name: str = NAME) -> str:
    """The stack's key: its resource declared, and its value read now (what the state holds, or at
    its creation the one this run made)."""
    key = _sync_await(StackKey(name).key.future())
    if not key:
        # Only a state edited by hand gets here; a new key restarts each hub with secrets once.
        raise pulumi.RunError(f"the stack's key ({name}) has no value in the state; take it out with "
                              f"`{PULUMI_CLI} state delete --stack {pulumi.get_stack()} <its URN>`, and the next `up` "
                              "makes a new one (each hub with secrets restarts once)")
    return key
