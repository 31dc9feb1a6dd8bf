"""`pulumi preview --json` of a stack whose program runs inline, parsed.

`Stack.preview(json=True)` is the Automation API's own path for this: it starts the language
server with the workspace's program in this process, hands the CLI `--client=127.0.0.1:<port>`
and runs it through the workspace's command runner with the workspace's environment, so the CLI
needs no Python language host. With `--json` the CLI prints one JSON document on stdout: the
stack's `config` (secrets as "[secret]"), one entry per resource in `steps` (`op`, `urn`,
`oldState`/`newState` with their `inputs`, `diffReasons`/`detailedDiff` where the provider gives
them), `changeSummary`, and `diagnostics` when something went wrong.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping, Optional

if TYPE_CHECKING:
    from pulumi import automation as auto
# The Automation API (seconds to import) is imported when a preview runs: the summary of a saved
# preview (workhub.summary --json) reads this module's error_messages without it.


class PreviewFailed(Exception):
    """The preview stopped with errors; `preview` is the CLI's JSON document when it printed one."""

    def __init__(self, message: str, preview: Optional[dict[str, Any]] = None):
        super().__init__(message)
        self.preview = preview


def preview_json(stack: auto.Stack) -> dict[str, Any]:
    """`pulumi preview --json --diff` of `stack`, run with its inline program; raises PreviewFailed."""
    from pulumi import automation as auto

    lines: list[str] = []
    try:
        stack.preview(json=True, diff=True, color="never", on_output=lines.append)
    except auto.errors.CommandError as error:
        try:
            document = json.loads("\n".join(lines))
        except ValueError:
            raise PreviewFailed(str(error)) from error
        messages = error_messages(document) or [str(error)]
        raise PreviewFailed("\n".join(messages), document) from error
    return json.loads("\n".join(lines))


def error_messages(preview: Mapping[str, Any]) -> list[str]:
    """The preview's error diagnostics, each once (the engine repeats a program's error)."""
    seen: list[str] = []
    for diagnostic in preview.get("diagnostics") or []:
        if diagnostic.get("severity") != "error":
            continue
        message = diagnostic.get("message", "").strip()
        message = message.removeprefix("error: ").removeprefix("an unhandled error occurred: ")
        if message and message not in seen:
            seen.append(message)
    return seen
