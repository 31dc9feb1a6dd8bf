"""python -m workhub.summary --stack NAME [--json FILE]

A pull request's view of a preview: which hubs rebuild or restart and why, as Markdown. With
`--json FILE` (`-` for stdin) it reads a saved `pulumi preview --json` (what CI has, with a
standard Pulumi install); without it, it previews the stack now (`local`: on the test host, as
`python -m workhub` does).

Only what workhub itself puts in a resource is read: hub and step names from the URNs, the names
of the build triggers that changed, and the `image=` and `host_port=` lines at the top of the run
and build scripts. No input is ever printed whole, so no secret can reach the comment.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from .preview import PreviewFailed, error_messages, preview_json

HUB_IMAGE = "workhub:hub:HubImage"
BUILD_HOST = "workhub:host:BuildHost"
COMMAND = "pulumi-python:dynamic:Resource"
UNCHANGED = {"same", "read"}
TRIGGER_REASONS = {
    "source": "source changed",
    "dockerfile": "Dockerfile changed",
    "settings": "build settings changed",
}
SUMMARY_WORDS = [("create", "to create"), ("update", "to update"), ("replace", "to replace"),
                 ("delete", "to delete"), ("same", "unchanged")]
# What a command's provider compares to decide whether its script runs again (components/resources/command.py).
# Drift a refresh found (components.resources.command) makes the command run again too.
RUN_INPUTS = ("create", "triggers", "upload", "drift")
ASSIGNMENT = re.compile(r"^([a-z_][a-z0-9_]*)=(.*)$")
# The stack's own key for the secrets' fingerprints (components.resources.host.stack_key.NAME): made once.
STACK_KEY = "fingerprint-key"


@dataclass(frozen=True)
class Step:
    """One resource's change in a preview."""

    op: str
    name: str
    type: str
    parent_type: str
    parent_name: str
    old: Mapping[str, Any]
    new: Mapping[str, Any]

    @property
    def kind(self) -> str:
        """create, delete or update (an update or a replacement: both an old and a new state)."""
        if self.op in ("create", "import") or not self.old:
            return "create"
        if self.op in ("delete", "discard") or not self.new:
            return "delete"
        return "update"

    def changed(self) -> list[str]:
        """The input names whose visible values differ (a secret shows as "[secret]" both sides)."""
        return sorted(key for key in set(self.old) | set(self.new) if self.old.get(key) != self.new.get(key))

    @property
    def runs(self) -> bool:
        """Whether the command's script runs on the host in this change."""
        return self.kind != "update" or any(key in RUN_INPUTS for key in self.changed())


@dataclass
class HubChange:
    hub: str
    build: Optional[Step] = None
    run: Optional[Step] = None

    @property
    def steps(self) -> list[Step]:
        return [step for step in (self.build, self.run) if step]

    @property
    def action(self) -> str:
        kinds = {step.kind for step in self.steps}
        if kinds == {"create"}:
            return "create"
        if kinds == {"delete"}:
            return "delete"
        build = bool(self.build and self.build.runs)
        run = bool(self.run and self.run.runs)
        if build and run:
            return "build + restart"
        if build:
            return "build only"
        if run:
            return "restart only"
        return "update (nothing runs on the host)"

    @property
    def why(self) -> list[str]:
        if self.action == "create":
            return ["new hub"]
        if self.action == "delete":
            return ["hub removed"]
        reasons = build_reasons(self.build) if self.build else []
        if self.run:
            reasons += run_reasons(self.run, rebuilt=bool(self.build and self.build.runs))
        return _unique(reasons)

    @property
    def image(self) -> Optional[str]:
        for step in (self.run, self.build):
            state = step and (step.old if step.kind == "delete" else step.new)
            image = state and script_values(state.get("create")).get("image")
            if image:
                return image
        return None


@dataclass
class Changes:
    hubs: dict[str, HubChange] = field(default_factory=dict)
    host: list[Step] = field(default_factory=list)
    other: list[Step] = field(default_factory=list)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _urn_parts(urn: str) -> tuple[str, str, str]:
    """(type, parent type, name) of `urn:pulumi:<stack>::<project>::<parent types$type>::<name>`."""
    parts = urn.split("::", 3)
    if len(parts) < 4:
        return "", "", urn
    types = parts[2].split("$")
    return types[-1], types[-2] if len(types) > 1 else "", parts[3]


def _inputs(state: Optional[Mapping[str, Any]]) -> Mapping[str, Any]:
    inputs = (state or {}).get("inputs")
    return inputs if isinstance(inputs, Mapping) else {}


def _parent_name(step: Mapping[str, Any]) -> str:
    parent = (step.get("newState") or step.get("oldState") or {}).get("parent") or ""
    return _urn_parts(parent)[2] if parent else ""


def steps_of(preview: Mapping[str, Any]) -> list[Step]:
    """Every resource that changes, once (a replacement's three steps are one change)."""
    found: dict[str, Step] = {}
    for raw in preview.get("steps") or []:
        op = raw.get("op", "")
        if op in UNCHANGED or not raw.get("urn"):
            continue
        urn = raw["urn"]
        if urn in found and op not in ("replace", "update"):
            continue
        kind, parent_type, name = _urn_parts(urn)
        found[urn] = Step(op, name, kind, parent_type, _parent_name(raw),
                          _inputs(raw.get("oldState")), _inputs(raw.get("newState")))
    return list(found.values())


HOST_ORDER = ["facts", "preflight", "setup"]


def hub_order(preview: Mapping[str, Any]) -> list[str]:
    """The hubs in build order, from the stack config the preview shows; [] if it does not."""
    try:
        hubs = json.loads((preview.get("config") or {}).get("workhub:hubs") or "[]")
        return [hub["name"] for hub in hubs]
    except (TypeError, ValueError, KeyError):
        return []


def classify(preview: Mapping[str, Any]) -> Changes:
    """The changing commands by hub (in build order), on the host, and any others."""
    changes = Changes()
    for step in steps_of(preview):
        if step.type != COMMAND:
            continue  # the stack and the components: their commands say what happens
        if step.parent_type == HUB_IMAGE and step.name.endswith(("-build", "-pull", "-run")):
            hub, role = step.name.rsplit("-", 1)
            change = changes.hubs.setdefault(hub, HubChange(hub))
            # A registry-mode hub's pull stands where a host build would.
            setattr(change, "run" if role == "run" else "build", step)
        elif step.parent_type == BUILD_HOST:
            changes.host.append(step)
        else:
            changes.other.append(step)
    order = hub_order(preview)
    changes.hubs = dict(sorted(changes.hubs.items(),
                               key=lambda item: (order.index(item[0]) if item[0] in order else len(order), item[0])))
    changes.host.sort(key=lambda step: (HOST_ORDER.index(_role(step)) if _role(step) in HOST_ORDER else len(HOST_ORDER), step.name))
    changes.other.sort(key=lambda step: step.name)
    return changes


def script_values(script: Any) -> dict[str, str]:
    """The plain `name=value` assignments a workhub script starts with (config enters a script
    only there, shell-quoted); empty for anything else, a secret included."""
    values: dict[str, str] = {}
    if not isinstance(script, str):
        return values
    for line in script.splitlines():
        if line == "set -eu":
            continue
        match = ASSIGNMENT.match(line)
        if not match:
            break
        try:
            words = shlex.split(match.group(2))
        except ValueError:
            continue
        if len(words) == 1:
            values[match.group(1)] = words[0]
    return values


def _fallback(step: Step) -> list[str]:
    """Why a command changes when neither its triggers nor its script do."""
    changed = [key for key in step.changed() if key not in RUN_INPUTS]
    if not changed:
        return ["a secret input changed"]
    return [f"{', '.join(changed)} changed"]


def drift_reasons(step: Step) -> list[str]:
    """What a refresh found on the host that differs from what the command left there."""
    drift = step.old.get("drift")
    return [f"drift: {what}" for what in drift] if isinstance(drift, list) else []


def build_reasons(step: Step) -> list[str]:
    if step.kind != "update":
        return [f"build {step.kind}d"]
    if drift_reasons(step):
        return drift_reasons(step)
    old, new = step.old.get("triggers"), step.new.get("triggers")
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        keys = [key for key in TRIGGER_REASONS if old.get(key) != new.get(key)]
        keys += sorted(key for key in set(old) | set(new) if key not in TRIGGER_REASONS and old.get(key) != new.get(key))
        if keys:
            return [TRIGGER_REASONS.get(key, f"build trigger {key} changed") for key in keys]
    elif old != new:
        return ["build triggers changed"]
    if step.old.get("create") != step.new.get("create"):
        return ["build script changed"]
    return _fallback(step)


# The run script's values that only restate its triggers (settings, secrets, volumes) or its
# image and port, in the documents it writes.
RUN_DOCUMENTS = {"env_plain", "compose_blue", "compose_green", "proxy_blue", "proxy_green", "proxy_file", "secret_env",
                 "secret_files", "volumes", "volume_keys", "volume_targets"}
SETTING_NOUNS = (("env", "setting"), ("secrets", "secret"), ("volumes", "volume"))


def setting_reasons(old: Any, new: Any) -> list[str]:
    """Which run-time setting, secret (by name: its trigger is a fingerprint) or volume changed."""
    old, new = (old if isinstance(old, Mapping) else {}), (new if isinstance(new, Mapping) else {})
    reasons = []
    for section, noun in SETTING_NOUNS:
        before, after = old.get(section) or {}, new.get(section) or {}
        for key in sorted(set(before) | set(after)):
            if key not in before:
                reasons.append(f"{noun} {key} added")
            elif key not in after:
                reasons.append(f"{noun} {key} removed")
            elif before[key] != after[key]:
                reasons.append(f"{noun} {key} changed")
    return reasons


def run_reasons(step: Step, rebuilt: bool) -> list[str]:
    if step.kind != "update":
        return [f"container {step.kind}d"]
    reasons = drift_reasons(step) + setting_reasons(step.old.get("triggers"), step.new.get("triggers"))
    if step.old.get("create") == step.new.get("create"):
        return reasons or ([] if rebuilt else _fallback(step))
    old, new = script_values(step.old.get("create")), script_values(step.new.get("create"))
    if old.get("host_port") != new.get("host_port"):
        reasons.append(f"host port {old.get('host_port', '?')} -> {new.get('host_port', '?')}")
    if old.get("image") != new.get("image") and not rebuilt:
        reasons.append(f"image {old.get('image', '?')} -> {new.get('image', '?')}")
    others = sorted(key for key in set(old) | set(new)
                    if key not in ("host_port", "image", *RUN_DOCUMENTS) and old.get(key) != new.get(key))
    if others:
        reasons.append(f"container changed ({', '.join(others)})")
    if not reasons and not rebuilt:
        reasons.append("container changed (run script)")
    return reasons


def host_reason(step: Step) -> str:
    if step.kind != "update":
        return step.kind
    changed = step.changed()
    if "triggers" in changed:
        why = "hub images changed" if step.name.endswith("-preflight") else "triggers changed"
    elif "create" in changed:
        why = "script changed"
    else:
        why = _fallback(step)[0]
    action = "runs again" if step.runs else "update, nothing runs"
    return f"{action} ({why})"


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _role(step: Step) -> str:
    prefix = f"{step.parent_name}-"
    return step.name[len(prefix):] if step.parent_name and step.name.startswith(prefix) else step.name


def change_summary(preview: Mapping[str, Any]) -> str:
    counts = {key: value for key, value in (preview.get("changeSummary") or {}).items() if value}
    words = [f"{counts.pop(key)} {word}" for key, word in SUMMARY_WORDS if key in counts]
    words += [f"{value} {key}" for key, value in sorted(counts.items())]
    return ", ".join(words) or "nothing to do"


def summarize(preview: Mapping[str, Any], stack: str) -> str:
    """The Markdown PR comment for `preview` (the JSON of `pulumi preview --json`) of `stack`."""
    lines = [f"### workhub preview of `{stack}`: {change_summary(preview)}", ""]
    errors = error_messages(preview)
    if errors:
        lines += ["**The preview failed:**", "", "```", *"\n".join(errors).splitlines(), "```", ""]
    changes = classify(preview)
    if changes.hubs:
        lines += ["| hub | action | why | image |", "| --- | --- | --- | --- |"]
        for change in changes.hubs.values():
            image = f"`{change.image}`" if change.image else "-"
            lines.append(f"| {_cell(change.hub)} | {change.action} | {_cell('; '.join(change.why))} | {_cell(image)} |")
        lines.append("")
    if changes.host:
        lines.append("**Host:** " + "; ".join(f"{_role(step)}: {host_reason(step)}" for step in changes.host))
        lines.append("")
    key_made = [step for step in changes.other if step.name == STACK_KEY and step.kind == "create"]
    others = [step for step in changes.other if step not in key_made]
    if key_made and any(change.run and change.run.kind == "update" for change in changes.hubs.values()):
        lines.append("**Stack key:** made now. From this update on the fingerprints of the hubs' secrets are keyed "
                     "with it, no longer with the SSH key, so each hub with secrets reads `secret ... changed` and "
                     "restarts this once, as any deploy does (health-gated, no request dropped); rotating the SSH "
                     "key later restarts nothing.")
        lines.append("")
    if others:
        lines.append("**Other:** " + "; ".join(f"{step.name}: {step.kind}" for step in others))
        lines.append("")
    if not (changes.hubs or changes.host or others or errors):
        counted = any(value for key, value in (preview.get("changeSummary") or {}).items() if key != "same")
        # Only the stack or a component changes (an output, say): nothing runs on the host.
        lines += ["No hub or host changes; nothing runs on the host." if counted else "No changes.", ""]
    return "\n".join(lines)


def _stack(name: str):
    """The stack as `python -m workhub` sets it up: `local` on the test host, others as they are."""
    from . import engine as eng

    eng.ensure_toolchain()
    if name != eng.LOCAL_STACK:
        return eng.existing_stack(eng.Engine(), name)
    engine = eng.local_engine()
    eng.existing_stack(engine, name)  # a preview creates no stack: `up` creates the local one
    host = eng.testhost_up()
    eng.registry_up()
    return eng.local_stack(engine, name, host, eng.local_config(host, eng.registry_for_builds()), create=False)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workhub.summary", description=__doc__.split("\n\n")[1])
    parser.add_argument("--stack", required=True, help="the stack the preview is of")
    parser.add_argument("--json", metavar="FILE", help="a saved `pulumi preview --json` (- for stdin)")
    args = parser.parse_args(argv)

    failed = False
    if args.json:
        text = sys.stdin.read() if args.json == "-" else Path(args.json).read_text()
        try:
            preview = json.loads(text)
        except ValueError as error:
            print(f"workhub.summary: {args.json} is not the JSON of `pulumi preview --json` ({error})", file=sys.stderr)
            return 2
    else:
        from . import engine as eng

        os.umask(0o077)  # what the CLI writes here (state, Pulumi.<stack>.yaml) is the user's alone
        try:
            preview = preview_json(_stack(args.stack))
        except (eng.NoSuchStack, eng.PassphraseError) as error:
            print(f"workhub.summary: the preview of {args.stack!r} did not run: {error}", file=sys.stderr)
            return 1
        except PreviewFailed as error:
            if error.preview is None:
                print(f"workhub.summary: the preview of {args.stack!r} failed:\n{error}", file=sys.stderr)
                return 1
            preview, failed = error.preview, True
    print(summarize(preview, args.stack), end="")
    return 1 if failed or error_messages(preview) else 0


if __name__ == "__main__":
    sys.exit(main())
