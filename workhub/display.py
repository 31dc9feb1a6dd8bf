"""What `scripts/workhub up|refresh|destroy` prints: the engine's events as they come (each step,
each line a host script prints, each warning), and a failure once, last, in workhub's own words.

The Pulumi CLI's own display prints a failure twice (where it happened, then again in its
"Diagnostics:" summary, after every line the scripts printed), and a dynamic provider's error as
the Python traceback of the provider process. So the runner does not show the CLI's text: it reads
the engine's structured events (the Automation API's `on_event`) and prints them itself.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Callable, Optional

from pulumi.automation import events

TRACEBACK = "Traceback (most recent call last):"
# What the engine adds to every failed operation, after the error that made it fail.
ENGINE_ECHOES = re.compile(r"^(update|preview|refresh|destroy) failed$|^Resource monitor has terminated")
PROGRAM_PREFIXES = ("an unhandled error occurred: ", "Program failed with an unhandled exception:")
# A host script's `<step>: FAILED: <reason>` line, after the label the provider puts in front: the
# failure message at the end says it, so it is not printed as it streams by too.
_FAILED_LINE = re.compile(r"^[\w.-]+: (?:[\w-]+: )?FAILED: ")
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*): ")
# The exceptions whose message says all there is to say: only the message is shown.
OWN_ERRORS = {"RemoteCommandError", "ConnectionDropped", "RunError", "ConfigError"}
DEBUG_HINT = "(the Python traceback: run again with --debug)"
SYMBOLS = {"create": "+", "update": "~", "delete": "-", "replace": "+-", "create-replacement": "+",
           "delete-replaced": "-", "import": "=", "refresh": "~"}
VERBS = {"create": ("creating", "created"), "update": ("updating", "updated"), "delete": ("deleting", "deleted"),
         "replace": ("replacing", "replaced"), "create-replacement": ("creating", "created"),
         "delete-replaced": ("deleting", "deleted"), "import": ("importing", "imported"),
         "refresh": ("refreshing", "refreshed")}


def _last_exception(text: str) -> tuple[Optional[str], str]:
    """The type (None when `text` shows no traceback) and message of the last exception a Python
    traceback in `text` shows; text with no traceback is all message."""
    text = text.strip()
    for prefix in PROGRAM_PREFIXES:
        text = text.removeprefix(prefix).strip()
    if TRACEBACK not in text:
        return None, text
    after = text.rsplit(TRACEBACK, 1)[1].splitlines()
    # The frames are indented; the exception's line is the first that is not, and its message
    # goes on to the end.
    start = next((i for i, line in enumerate(after) if line and not line[0].isspace()), None)
    if start is None:
        return None, text
    message = "\n".join(after[start:]).strip()
    found = _EXCEPTION.match(message)
    return (found.group(1), message[found.end():]) if found else ("", message)


def exception_message(text: str) -> str:
    """The message of the last exception a Python traceback in `text` shows (its type named unless
    it is one of workhub's own); text with no traceback, as it is."""
    kind, message = _last_exception(text)
    return f"{kind}: {message}" if kind and kind not in OWN_ERRORS else message


def resource_name(urn: Optional[str]) -> str:
    """The name at the end of a URN (`urn:pulumi:<stack>::<project>::<types>::<name>`); "" for none."""
    return urn.split("::")[-1] if urn and urn.count("::") >= 3 else ""


@dataclass
class Failure:
    resource: str
    """The resource whose step failed ("" when the program or the engine failed)."""
    text: str
    """The error as the engine reported it (a provider's includes its Python traceback)."""


def failure_report(operation: str, stack: str, failures: list[Failure], debug: bool = False) -> str:
    """The failure, once: what failed, where, why and its last log lines (as the host script said),
    each error once; the engine's own echoes of it left out."""
    own = [failure for failure in failures if not ENGINE_ECHOES.search(failure.text.strip())] or failures
    lines = [f"workhub: {operation} of stack {stack!r} failed"]
    seen: set[str] = set()
    tracebacks = False
    for failure in own:
        message = failure.text.strip() if debug else exception_message(failure.text)
        if message in seen:
            continue
        seen.add(message)
        # Only an error workhub did not foresee (a bug) has a traceback worth reading.
        kind, _ = _last_exception(failure.text)
        tracebacks = tracebacks or (kind is not None and kind not in OWN_ERRORS)
        if failure.resource and not message.startswith(("hub:", "step:")):
            lines.append(f"  step: {failure.resource}")
            message = message if debug else f"reason: {message}"
        lines += [f"  {line}" if line else "" for line in message.splitlines()]
    if tracebacks and not debug:
        lines.append(f"  {DEBUG_HINT}")
    return "\n".join(lines)


@dataclass
class Display:
    """Prints an operation's events through `say` as they come; keeps its errors for the end."""

    say: Callable[[str], None]
    failures: list[Failure] = field(default_factory=list)
    summary: Optional[events.SummaryEvent] = None
    _started: dict[str, int] = field(default_factory=dict)

    def __call__(self, event: events.EngineEvent) -> None:
        if event.diagnostic_event:
            self._diagnostic(event.diagnostic_event)
        elif event.resource_pre_event:
            self._step(event.resource_pre_event.metadata, event.timestamp, done=False)
        elif event.res_outputs_event:
            self._step(event.res_outputs_event.metadata, event.timestamp, done=True)
        elif event.policy_event:
            self._policy(event.policy_event)
        elif event.summary_event:
            self.summary = event.summary_event

    def _diagnostic(self, diagnostic: events.DiagnosticEvent) -> None:
        severity = diagnostic.severity or ""
        if severity == "debug":
            return
        name = resource_name(diagnostic.urn)
        if severity == "error":
            self.failures.append(Failure(name, diagnostic.message))
            return
        for line in diagnostic.message.rstrip("\n").splitlines():
            if _FAILED_LINE.match(line):
                continue
            prefix = f"{name}: " if name and "::pulumi:pulumi:Stack::" not in (diagnostic.urn or "") else ""
            self.say(f"warning: {prefix}{line}" if severity == "warning" else f"{prefix}{line}")

    def _step(self, metadata: events.StepEventMetadata, timestamp: int, done: bool) -> None:
        op = metadata.op.value if hasattr(metadata.op, "value") else str(metadata.op)
        # The resources that do something: the commands (the stack, components and providers only group them).
        if op not in VERBS or not metadata.provider or metadata.type.startswith("pulumi:providers:"):
            return
        name = resource_name(metadata.urn)
        doing, did = VERBS[op]
        if not done:
            self._started[metadata.urn] = timestamp
            self.say(f"{SYMBOLS[op]} {name}: {doing}")
            return
        took = timestamp - self._started.get(metadata.urn, timestamp)
        self.say(f"{SYMBOLS[op]} {name}: {did} ({took} s)")

    def _policy(self, policy: events.PolicyEvent) -> None:
        name = resource_name(policy.resource_urn)
        text = f"policy {policy.policy_pack_name}/{policy.policy_name}: {policy.message.strip()}"
        if policy.enforcement_level == "mandatory":
            self.failures.append(Failure(name, text))
        else:
            self.say(f"warning: {name + ': ' if name else ''}{text}")


def command_stderr(error: Exception) -> str:
    """What the Pulumi CLI printed on stderr when it failed before the engine said why."""
    text = str(error)
    return text.split("stderr:", 1)[1].strip() if "stderr:" in text else text.strip()


def print_err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
