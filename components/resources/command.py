"""RemoteCommand: run a rendered script on the build host over SSH, as a Pulumi resource.

This is a Pulumi dynamic provider, so it runs inside the real engine like any provider plugin.
It keeps the input shape of pulumi-command's `remote.Command` (connection with a pinned host key,
dial error limit and per-dial timeout; create/delete scripts; triggers) and adds what the build
host needs: SSH keep-alives, every output line streamed to the Pulumi log as it arrives, a
heartbeat while a command is quiet, and only a bounded tail of stdout kept in state. The SSH
session itself is components.ssh.
"""

from __future__ import annotations

import json
import sys
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from components.constants import DRIFT_MARK
from components.plan.context import archive, content_hash, context_files
from components.resources.plugin_lifetime import end_with_the_engine
from components.ssh import Connection, RemoteCommandError, run_script, with_secrets


@dataclass(frozen=True)
class Upload:
    """A local directory (its .dockerignore honoured) to place at `remote_dir` under the user's
    home before the script runs; `content_hash` is what the program planned with."""

    local_dir: str
    remote_dir: str
    content_hash: str
    build_files: tuple[str, ...] = ()
    """Files the engine reads besides the context (a Dockerfile .dockerignore leaves out)."""

    def to_props(self) -> dict[str, Any]:
        props: dict[str, Any] = {"localDir": self.local_dir, "remoteDir": self.remote_dir, "hash": self.content_hash}
        if self.build_files:
            # Only then: the props of every other upload stay as they were, so nothing runs again.
            props["buildFiles"] = list(self.build_files)
        return props


def _log_to_engine(message: str) -> None:
    # A dynamic provider's stderr reaches the Pulumi log line by line.
    print(message, file=sys.stderr, flush=True)


def _runs(props: Mapping[str, Any]) -> tuple[Any, ...]:
    return (props.get("create"), props.get("triggers"), props.get("upload"))


def _notify(props: Mapping[str, Any], result: str, detail: str) -> None:
    """POST the outcome to the stack's webhook, if it has one; a webhook that fails is only logged."""
    url = props.get("notifyUrl")
    if not url:
        return
    body = json.dumps({"command": props["label"], "result": result, "detail": detail}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
    except (OSError, ValueError) as error:
        _log_to_engine(f"{props['label']}: the notification webhook did not take the {result} notice ({error})")


def _pack(upload: Mapping[str, Any]) -> tuple[bytes, str]:
    """The archive of a local directory, checked against the content hash the program planned with."""
    root = Path(upload["localDir"])
    files = context_files(root)
    if content_hash(root, files) != upload["hash"]:
        raise RemoteCommandError(
            f"{root} changed after this update was planned; run `scripts/workhub up` again to build what is there now"
        )
    return archive(root, sorted([*files, *upload.get("buildFiles", [])])), upload["remoteDir"]


class RemoteCommandProvider(ResourceProvider):
    """Runs `create` when the resource is created and whenever `create` or `triggers` change;
    runs `delete`, if given, when it is deleted; on refresh, runs `check`, if given, and records
    the drift it finds, so the next update runs `create` again."""

    def _run(self, props: Mapping[str, Any], script: str, deploying: bool = True) -> str:
        """Run a script for `props`; when deploying (create, update), upload first and notify after."""
        upload = props.get("upload") if deploying else None
        try:
            stdout = run_script(
                Connection.from_props(props["connection"]),
                props["privateKey"],
                with_secrets(script, props.get("secretValues") or {}),
                props["label"],
                _log_to_engine,
                upload=_pack(upload) if upload else None,
            )
        except Exception as error:
            if deploying:
                lines = str(error).splitlines()
                _notify(props, "failed", "\n".join(lines[:1] + lines[1:][-20:]))
            raise
        if deploying:
            _notify(props, "succeeded", stdout.strip().splitlines()[-1] if stdout.strip() else "")
        return stdout

    def create(self, props: dict[str, Any]) -> CreateResult:
        stdout = self._run(props, props["create"])
        return CreateResult(id_=uuid.uuid4().hex, outs={**props, "stdout": stdout})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in ("create", "triggers", "upload", "connection", "privateKey", "delete", "label",
                               "secretValues", "check")
                   if olds.get(k) != news.get(k)]
        # Drift a refresh found: the update runs `create` again (never a replace, whose delete would
        # stop what still runs).
        changed += ["drift"] if olds.get("drift") else []
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        if _runs(olds) == _runs(news) and not olds.get("drift"):
            return UpdateResult(outs={**news, "stdout": olds.get("stdout", "")})
        return UpdateResult(outs={**news, "stdout": self._run(news, news["create"])})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        if props.get("delete"):
            self._run(props, props["delete"], deploying=False)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """On refresh, a command with a `check` script runs it on the host (with no secret values:
        it only looks); each `drift: ...` line it prints is a way the host differs from what the
        command's last run left there. They are kept as `drift`, in the outputs and in the inputs
        the next diff compares, so the refresh shows them and the next update runs `create` again;
        a refresh that finds none clears them. A command without a check keeps its state as it is."""
        check = props.get("check")
        if not check:
            return ReadResult(id_, props)
        stdout = run_script(Connection.from_props(props["connection"]), props["privateKey"], check, props["label"],
                            _log_to_engine)
        found = [line[len(DRIFT_MARK):] for line in stdout.splitlines() if line.startswith(DRIFT_MARK)]
        outs = {key: value for key, value in props.items() if key != "drift"}
        if found:
            outs["drift"] = found
        if not found and not props.get("drift"):
            return ReadResult(id_, outs)
        # The inputs are the outputs but for what the command printed (an output only).
        return ReadResult(id_, outs, inputs={**outs, "stdout": None})


class RemoteCommand(pulumi.dynamic.Resource):
    """A script run on the build host over SSH; `stdout` holds the tail of what it printed."""

    stdout: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        connection: Connection,
        private_key: pulumi.Input[str],
        create: pulumi.Input[str],
        delete: Optional[pulumi.Input[str]] = None,
        triggers: Optional[pulumi.Input[Any]] = None,
        upload: Optional[Upload] = None,
        notify_url: Optional[pulumi.Input[str]] = None,
        secret_values: Optional[Mapping[str, pulumi.Input[str]]] = None,
        check: Optional[pulumi.Input[str]] = None,
        opts: Optional[pulumi.ResourceOptions] = None,
    ):
        """`secret_values` are shell variables the scripts read (a registry password): always stored
        and passed as secrets, and set in front of the script only when it runs. `check` is a script
        a refresh runs to find drift: it prints a `drift: <what differs>` line for each way the host
        differs from what `create` left, and changes nothing."""
        props = {
            "label": name,
            "connection": connection.to_props(),
            "privateKey": pulumi.Output.secret(private_key),
            "create": create,
            "delete": delete,
            "triggers": triggers if triggers is not None else [],
            "upload": upload.to_props() if upload else None,
            "notifyUrl": pulumi.Output.secret(notify_url) if notify_url is not None else None,
            "secretValues": pulumi.Output.secret(dict(secret_values)) if secret_values else None,
            "check": check,
            "stdout": None,
        }
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["privateKey", "notifyUrl", "secretValues"])
        )
        super().__init__(RemoteCommandProvider(), name, props, opts)


def _in_the_provider_process() -> bool:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is not None and spec.name == "pulumi.dynamic.__main__"


if _in_the_provider_process():
    end_with_the_engine()
