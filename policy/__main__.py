"""workhub-guardrails: the policy pack every workhub preview and update runs (workhub/policy.py).

Every policy is mandatory: a violation fails the preview, or stops the update before the resource
is created or changed. The checks themselves are in guardrails.py.
"""

import os
import sys
from pathlib import Path

# The pack reads the hub Dockerfiles with components.plan.dockerfile, from the repository it lives in.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pulumi_policy import (  # noqa: E402
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

import guardrails as g  # noqa: E402
from components.resources.plugin_lifetime import end_with_the_engine  # noqa: E402

g.keep_secrets_marked()
end_with_the_engine()


def _command(args: ResourceValidationArgs):
    """The command's label when the resource is one of workhub's RemoteCommands, else None."""
    if not g.is_remote_command(args.resource_type, args.props):
        return None
    return str(g.plain(args.props["label"]))


def _report(report: ReportViolation, problems: list[str]) -> None:
    for problem in problems:
        report(problem)


def build_cache_and_heap(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == g.DOCKER_IMAGE:
        try:
            _report(report, g.image_build_problems(args.name, g.known(args.props, "build")))
        except g.UnknownValueError:
            pass  # not known before the update; the engine runs the pack again then
        return
    label = _command(args)
    create = g.known_text(args.props, "create")
    if label is not None and label.endswith("-build") and create is not None:
        _report(report, g.build_problems(label, create, g.known(args.props, "upload")))


def port_same_in_every_stack(args: ResourceValidationArgs, report: ReportViolation) -> None:
    label = _command(args)
    create = g.known_text(args.props, "create")
    if label is not None and label.endswith("-run") and create is not None:
        # The engine starts the pack in the program's directory, where Pulumi.yaml and the stack files are.
        _report(report, g.run_port_problems(label, create, Path(os.getcwd())))


def no_plaintext_secrets(args: ResourceValidationArgs, report: ReportViolation) -> None:
    label = _command(args)
    _report(report, g.secret_problems(label or args.name, args.props, command=label is not None))


def no_output_feedback(args: ResourceValidationArgs, report: ReportViolation) -> None:
    label = _command(args)
    if label is not None:
        _report(report, g.feedback_problems(label, args.props))


def no_output_feedback_between_commands(args: StackValidationArgs, report: ReportViolation) -> None:
    commands, labels = [], {}
    for resource in args.resources:
        if g.is_remote_command(resource.resource_type, resource.props):
            label = str(g.plain(resource.props["label"]))
            labels[resource.urn] = label
            dependencies = {key: [r.urn for r in found] for key, found in resource.property_dependencies.items()}
            commands.append((resource.urn, label, resource.props, dependencies))
    for urn, problem in g.graph_feedback_problems(commands, lambda urn: labels.get(urn, urn)):
        report(problem, urn)


FEEDBACK = (
    "Remote commands don't feed previous output back into what they run: a command's create, delete and "
    "triggers come from the stack config alone, and it has no environment input. A script built from another "
    "command's stdout would run whatever the host printed last time, and change (so run again) on every update."
)

PolicyPack(
    name="workhub-guardrails",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        ResourceValidationPolicy(
            name="hub-build-npm-cache-and-heap",
            description="Every hub build (on the host, or by pulumi-docker in registry mode) passes "
                        "NODE_OPTIONS=--max-old-space-size=<MB> and its Dockerfile runs every npm install under the "
                        "locked npm cache mount (the pattern that fixed the out-of-memory, re-download-everything "
                        "builds); registry-mode builds also take a registry cache.",
            validate=build_cache_and_heap,
        ),
        ResourceValidationPolicy(
            name="hub-port-same-in-every-stack",
            description="A hub's container PORT is the one in Pulumi.yaml's workhub:hubs catalog, and no stack "
                        "file overrides that catalog, so the hub listens on the same port in every stack.",
            validate=port_same_in_every_stack,
        ),
        ResourceValidationPolicy(
            name="no-plaintext-secrets",
            description="No secret reaches a resource input in plain text: a remote command's privateKey, "
                        "notifyUrl and secretValues are secrets, and no other input holds a private key, a webhook-like URL or "
                        "a secret input's value.",
            validate=no_plaintext_secrets,
        ),
        ResourceValidationPolicy(
            name="no-output-feedback",
            description=FEEDBACK + " Checked on each command before it runs.",
            validate=no_output_feedback,
        ),
        StackValidationPolicy(
            name="no-output-feedback-between-commands",
            description=FEEDBACK + " Checked on the whole stack: no command input depends on, or "
                                   "contains, another command's stdout.",
            validate=no_output_feedback_between_commands,
        ),
    ],
)
