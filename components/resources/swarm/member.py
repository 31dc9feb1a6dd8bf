"""SwarmMember: a node's place in the stack's Swarm, as a Pulumi resource. Creating it joins the node
to the Swarm of the first manager (as a manager or a worker); nothing happens on a node that is in
the Swarm already.

Joining needs the Swarm's join token, which only a manager can give and which lets any machine
join: it is a secret that must reach neither a log, nor the state, nor another resource's inputs
(the policy pack refuses remote commands whose inputs come from another command's output). So one
provider operation does both steps over SSH: it asks the manager for the token (its stdout read as
data, never logged), then runs the join script on the node with the token as a shell variable put
in front of the script on the session's stdin; the script hands it to the node's engine in the body
of an Engine API request, on curl's stdin (`docker swarm join` would take it only as an argument,
in the process list). The token lives in the provider's memory for those two steps only.
"""

from __future__ import annotations

import io
import uuid
from typing import Any, Callable, Mapping, Optional

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from components.ssh import Connection, RemoteCommandError, run_script, with_secrets
from components.resources.command import _log_to_engine
from components.render.swarm.scripts import join_token_script

# The inputs that, when they change, make the node join again (the join script is a no-op on a node
# already in the Swarm, so running it again is safe).
_JOIN_INPUTS = ("connection", "manager", "role", "create")


def join(props: Mapping[str, Any], log: Optional[Callable[[str], None]] = None) -> str:
    """Runs the join of `props` (see SwarmMember) and returns what the join script printed."""
    log = log or _log_to_engine
    label = props["label"]
    token = io.BytesIO()
    run_script(Connection.from_props(props["manager"]), props["privateKey"], join_token_script(props["role"]),
               f"{label} (join token)", log, data_out=token)
    value = token.getvalue().decode().strip()
    if not value:
        raise RemoteCommandError(f"{label}: the manager gave no {props['role']} join token")
    return run_script(Connection.from_props(props["connection"]), props["privateKey"],
                      with_secrets(props["create"], {"join_token": value}), label, log)


class SwarmMemberProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=uuid.uuid4().hex, outs={**props, "stdout": join(props)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [key for key in (*_JOIN_INPUTS, "privateKey", "label") if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        if all(olds.get(key) == news.get(key) for key in _JOIN_INPUTS):
            return UpdateResult(outs={**news, "stdout": olds.get("stdout", "")})
        return UpdateResult(outs={**news, "stdout": join(news)})


class SwarmMember(pulumi.dynamic.Resource):
    """A node joined to the Swarm of `manager` as `role`, by the script `create` (swarm_scripts.join_script)."""

    stdout: pulumi.Output[str]

    def __init__(self, name: str, *, connection: Connection, manager: Connection, role: str,
                 private_key: pulumi.Input[str], create: str, opts: Optional[pulumi.ResourceOptions] = None):
        props = {
            "label": name,
            "connection": connection.to_props(),
            "manager": manager.to_props(),
            "role": role,
            "privateKey": pulumi.Output.secret(private_key),
            "create": create,
            "stdout": None,
        }
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["privateKey"]))
        super().__init__(SwarmMemberProvider(), name, props, opts)
