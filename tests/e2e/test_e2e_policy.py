"""The workhub-guardrails policy pack (policy/), run by the real engine with previews of real stacks.

Each policy fails the preview of a program that breaks it, naming itself; the real program, with
no hub and with one, passes them all. Previews contact no host, so most stacks point at a host
that does not exist, with keys generated for the test; the two tests that need an update use the
test host."""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
from pathlib import Path

import pulumi
import pytest
import yaml
from pulumi import automation as auto

from components.config.models import BuildSettings, Hub
from components.plan.context import content_hash, context_files
from components.ssh import Connection
from components.resources.command import RemoteCommand, RemoteCommandProvider, Upload
from components.config.models import DeploySettings
from components.render.host.deploy import Serving, run_script
from components.config.runtime import Runtime
from components.render.host.build import build_script, context_dir
from tests.e2e_fixtures import new_local_stack, on_the_side_host
from workhub import engine as eng
from workhub.policy import PACK_NAME, policy_packs

pytestmark = pytest.mark.e2e
# Beside the one-host tests, on a test host of its own (tests/e2e_fixtures.py: on_the_side_host).
test_host, host_state, beside_the_one_host = on_the_side_host()

EXAMPLES = eng.REPO / "examples"
CATALOG = {hub["name"]: hub for hub in
           yaml.safe_load((eng.REPO / "Pulumi.yaml").read_text())["config"]["workhub:hubs"]["value"]}
NODE_OPTIONS_ARG = "--build-arg NODE_OPTIONS=--max-old-space-size=4096 "


@pytest.fixture
def offline_host(tmp_path) -> dict:
    """A host as testhost_up describes one, on a port nobody listens on, with keys made here."""
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("client", "host"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(keys / name)], check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {"port": port, "host_public_key": (keys / "host.pub").read_text().strip(),
            "private_key_path": str(keys / "client")}


@pytest.fixture
def stack(tmp_path, toolchain, offline_host) -> auto.Stack:
    """A local stack with the project's whole hub catalog, for the bad programs to run in."""
    return new_local_stack(tmp_path, offline_host)[1]


def failures(stack: auto.Stack, program) -> tuple[set[str], str]:
    """The policies that fail the preview of `program`, and the engine's output."""
    with pytest.raises(auto.errors.CommandError) as caught:
        stack.preview(program=program, color="never", policy_packs=policy_packs())
    output = str(caught.value)
    assert f"{PACK_NAME}@v1.0.0" in output and "runtime error" not in output, output
    return set(re.findall(r"\[mandatory\]\s+(\S+)\s+\(", output)), output


def passes(stack: auto.Stack) -> str:
    """The preview's output, after checking the pack ran and found nothing."""
    result = stack.preview(color="never", policy_packs=policy_packs())
    assert f"{PACK_NAME}@v1.0.0" in result.stdout, result.stdout
    for word in ("[mandatory]", "[advisory]", "can't run policy"):
        assert word not in result.stdout + result.stderr, result.stdout
    return result.stdout


# What the bad programs share: the stack's own host and key, read as workhub reads them (the key
# as a secret).

def connection() -> Connection:
    host = pulumi.Config("workhub").require_object("host")
    return Connection(host["address"], int(host["port"]), host["user"], host["hostKey"], 2, 2, 30)


def private_key() -> pulumi.Output[str]:
    return pulumi.Config("workhub").require_secret("sshPrivateKey")


def command(name: str, create: pulumi.Input[str], **kwargs) -> RemoteCommand:
    return RemoteCommand(name, connection=connection(), private_key=private_key(), create=create, **kwargs)


class LooseCommand(pulumi.dynamic.Resource):
    """A RemoteCommand whose inputs are exactly what the program gives, secret or not."""

    stdout: pulumi.Output[str]

    def __init__(self, name: str, **inputs):
        props = {"label": name, "connection": connection().to_props(), "privateKey": private_key(), "create": "true",
                 "delete": None, "triggers": [], "upload": None, "notifyUrl": None, "stdout": None, **inputs}
        super().__init__(RemoteCommandProvider(), name, props)


def hub_build(stack: auto.Stack, context: Path, script=lambda text: text) -> RemoteCommand:
    """wbhubmanager's build from `context`, as HubImage declares it, its script passed through `script`."""
    hub = Hub.model_validate(CATALOG["wbhubmanager"])
    source = content_hash(context, context_files(context))
    text = build_script(hub, stack.name, f"wbhubmanager:{stack.name}-0123456789ab", "0123456789ab",
                        BuildSettings(), None)
    return command("wbhubmanager-build", script(text),
                   upload=Upload(str(context), context_dir(stack.name, "wbhubmanager"), source))


def hub_run(stack: auto.Stack, hub: Hub) -> RemoteCommand:
    """A hub's run, as HubImage declares it."""
    runtime = Runtime(env={"PORT": str(hub.port)})
    return command(f"{hub.name}-run", run_script(hub, stack.name, f"{hub.name}:{stack.name}-0123456789ab", 24090,
                                                  runtime, Serving("127.0.0.1", DeploySettings(), "haproxy:2.6")))


# --- the real program passes --------------------------------------------------------------------

def test_the_real_program_without_hubs_passes(tmp_path, toolchain, offline_host):
    """The host's commands alone (facts, preflight, setup) break no policy."""
    _, stack = new_local_stack(tmp_path, offline_host, hubs=[])
    passes(stack)


def test_the_real_program_updates_under_the_pack_and_previews_clean_after(local_stack):
    """`up` runs with the pack on the test host; the next preview, with every command's stdout
    known, still passes."""
    up = local_stack.up(color="never", policy_packs=policy_packs())
    assert up.summary.result == "succeeded" and f"{PACK_NAME}@v1.0.0" in up.stdout
    passes(local_stack)


def test_the_real_program_with_a_hub_and_a_webhook_passes(tmp_path, toolchain, offline_host):
    """A hub's build and run, with the notification webhook set, break no policy."""
    engine, stack = new_local_stack(tmp_path, offline_host, hubs=[CATALOG["wbhubmanager"]])
    engine.set_secret(stack.name, "workhub:notifyWebhook", "https://hooks.example.org/services/T0/B0/secret")
    output = passes(stack)
    assert "wbhubmanager-build" in output and "wbhubmanager-run" in output


def test_the_real_program_with_a_registry_mode_hub_passes(tmp_path, toolchain, offline_host):
    """A registry-mode hub's pull (its password a secret value) and run break no policy. (The push
    itself is pulumi-docker's, which cannot run here: its checks are in test_guardrails.py.)"""
    hub = {**CATALOG["wbsaleshub"], "buildMode": "registry"}
    engine, stack = new_local_stack(tmp_path, offline_host, hubs=[hub], overrides={
        "workhub:registry.server": "127.0.0.1:5000", "workhub:registry.username": "ci"})
    engine.set_secret(stack.name, "workhub:registryPassword", "registry-password-for-the-policy-test")
    engine.pusher = lambda push, opts: []
    output = passes(engine.stack(stack.name))
    assert "wbsaleshub-pull" in output and "wbsaleshub-run" in output


# --- each policy fails a program that breaks it --------------------------------------------------

def test_a_build_without_node_options_fails(stack):
    """hub-build-npm-cache-and-heap: a build script that passes no NODE_OPTIONS."""

    def without_heap(text: str) -> str:
        assert NODE_OPTIONS_ARG in text
        return text.replace(NODE_OPTIONS_ARG, "")

    failed, output = failures(stack, lambda: hub_build(stack, EXAMPLES / "WBHubManager", without_heap))
    assert failed == {"hub-build-npm-cache-and-heap"}
    assert "wbhubmanager-build: the build passes no NODE_OPTIONS build arg" in output


def test_a_dockerfile_without_the_cache_mount_fails(stack, tmp_path):
    """hub-build-npm-cache-and-heap: a hub Dockerfile whose npm installs run without the cache mount."""
    context = tmp_path / "WBHubManager"
    shutil.copytree(EXAMPLES / "WBHubManager", context, ignore=shutil.ignore_patterns("node_modules", "dist"))
    dockerfile = context / "Dockerfile"
    text = dockerfile.read_text()
    assert text.count("--mount=type=cache,target=/root/.npm,sharing=locked ") == 2
    dockerfile.write_text(text.replace("--mount=type=cache,target=/root/.npm,sharing=locked ", ""))

    failed, output = failures(stack, lambda: hub_build(stack, context))
    assert failed == {"hub-build-npm-cache-and-heap"}
    for line, install in ((16, "npm ci"), (18, "npm --prefix frontend ci")):
        assert f"{dockerfile}:{line}: `{install}` runs without the npm cache mount" in output


def test_a_run_on_another_port_than_the_catalog_fails(stack):
    """hub-port-same-in-every-stack: wbhubmanager started with PORT 5090 where Pulumi.yaml says 4090."""
    hub = Hub.model_validate({**CATALOG["wbhubmanager"], "port": 5090})
    failed, output = failures(stack, lambda: hub_run(stack, hub))
    assert failed == {"hub-port-same-in-every-stack"}
    assert "starts wbhubmanager with PORT 5090, but workhub:hubs in Pulumi.yaml says 4090" in output


def test_a_stack_file_overriding_the_catalog_fails(stack):
    """hub-port-same-in-every-stack: the stack's own file redefines workhub:hubs (the run itself is right)."""
    stack.set_config("workhub:hubs", auto.ConfigValue('[{"name": "wbhubmanager", "context": "x", "port": 5090}]'))
    hub = Hub.model_validate(CATALOG["wbhubmanager"])
    failed, output = failures(stack, lambda: hub_run(stack, hub))
    assert failed == {"hub-port-same-in-every-stack"}
    assert f"Pulumi.{stack.name}.yaml sets workhub:hubs" in output


def test_secrets_in_plain_text_fail(stack, offline_host):
    """no-plaintext-secrets: a key and a webhook passed as plain inputs, or pasted into a script."""
    key = Path(offline_host["private_key_path"]).read_text()
    webhook = "https://hooks." + "slack.com/services/T0/B0/not-a-real-token"

    def program():
        LooseCommand("plain-key", privateKey=key)
        LooseCommand("plain-webhook", notifyUrl=webhook)
        LooseCommand("plain-password", secretValues={"registry_password": "hunter2-in-plain-text"})
        command("pasted", f"printf '%s' {shlex.quote(key)} >~/.ssh/id && curl -d done {webhook}")

    failed, output = failures(stack, program)
    assert failed == {"no-plaintext-secrets"}
    assert "plain-key: input privateKey is plain text" in output
    assert "plain-webhook: input notifyUrl is plain text" in output
    assert "plain-password: input secretValues is plain text" in output
    assert "pasted: input create holds a private key in plain text" in output
    assert "pasted: input create holds what looks like a webhook URL (host hooks.slack.com)" in output
    assert "pasted: input create contains the value of one of its secret inputs" in output
    assert key.strip().splitlines()[1] not in output and "not-a-real-token" not in output, "no report repeats a secret"


def test_commands_fed_by_another_commands_output_fail(stack):
    """no-output-feedback(-between-commands): a script made from another command's stdout, and an
    environment input."""

    def program():
        facts = command("facts", "echo '{}'")
        command("fed", facts.stdout.apply(lambda out: f"echo {out}"))
        LooseCommand("with-env", environment={"PREVIOUS": facts.stdout})
        LooseCommand("fed-secret", secretValues=pulumi.Output.secret(facts.stdout.apply(lambda out: {"previous": out})))

    failed, output = failures(stack, program)
    assert failed == {"no-output-feedback", "no-output-feedback-between-commands"}
    assert "fed: create is not known before the update: it is computed from another resource's output" in output
    assert "fed: input create is computed from the output of facts" in output
    assert "with-env: has an `environment` input" in output
    assert "with-env: input environment is computed from the output of facts" in output
    assert "fed-secret: input secretValues is computed from the output of facts" in output


def test_a_script_carrying_another_commands_stdout_fails(tmp_path, toolchain, test_host):
    """no-output-feedback-between-commands: a script that carries, verbatim, what another command
    printed in an earlier update (no dependency in the program shows it)."""
    _, stack = new_local_stack(tmp_path, test_host, hubs=[])

    def probe():
        return command("probe", """echo '{"probe": "printed by an earlier update"}'""")

    try:
        up = stack.up(program=probe, color="never", policy_packs=policy_packs())
        assert up.summary.result == "succeeded" and f"{PACK_NAME}@v1.0.0" in up.stdout

        def program():
            probe()
            command("copied", """printf '%s\\n' '{"probe": "printed by an earlier update"}' >facts.json""")

        failed, output = failures(stack, program)
        assert failed == {"no-output-feedback-between-commands"}
        assert "copied: input create contains stdout of probe" in output
    finally:
        stack.destroy(program=probe, color="never")
