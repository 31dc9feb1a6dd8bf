"""Existing stacks keep working after the layer move (issue #21), end to end on the test host: a
one-hub local stack made and deployed by workhub as it was before the move (tests/before_the_move.py,
its own fixtures and program, in a process of its own) is refreshed, updated and destroyed by the
code under test. The state names each dynamic provider by its old module path; the refresh and the
destroy load them from there (tests/unit/resources/test_state_compat.py proves the same for every
provider, Swarm's too)."""

from __future__ import annotations

import base64
import json
import os
import pickletools
import subprocess
import sys
from pathlib import Path

import pytest

from tests.before_the_move import before_the_move  # noqa: F401 (a fixture)
from tests.e2e_fixtures import deploy_home, docker, health, on_the_side_host
from workhub import engine as eng
from workhub.engine import print_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
# Beside the one-host tests, on a test host of its own (tests/e2e_fixtures.py: on_the_side_host).
test_host, host_state, beside_the_one_host = on_the_side_host()

# One hub, with a secret: so the state holds the stack's key (StackKey) besides the commands.
HUB = {"name": "wbfinhub", "context": "WBFinHub", "port": 4092, "healthPath": "/health",
       "secrets": ["LEDGER_SIGNING_KEY"]}
DEPLOY = {"healthTimeoutSeconds": 30, "healthIntervalMs": 300, "stopGraceSeconds": 5}
STACK = "compat"
DYNAMIC = "pulumi-python:dynamic:Resource"

# Runs in the old tree with its own modules: makes the stack as its e2e fixtures did, deploys it, and
# writes the engine's summary of that `up`.
OLD_UP = """
import json, sys
from pathlib import Path
from tests.e2e_fixtures import new_local_stack
from workhub import engine as eng
from workhub.engine import print_line
given = json.load(sys.stdin)
eng.ensure_toolchain()
_, stack = new_local_stack(Path(given["state"]), given["host"], given["npm_registry"], hubs=[given["hub"]],
                           name=given["stack"], deploy=given["deploy"],
                           overrides={"workhub:host.user": given["host"]["user"]})
up = stack.up(on_output=print_line, color="never")
Path(given["result"]).write_text(json.dumps(up.summary.resource_changes))
"""


def sessions(host_state: Path, user: str) -> int:
    """How many SSH logins the test host's sshd has accepted so far (its log: one per script run)."""
    log = (host_state / "testhost" / "sshd.log").read_text(errors="replace")
    return sum(f"Accepted publickey for {user} " in line for line in log.splitlines())


# The inputs a new version of workhub may change on a command it updates in place: the scripts it
# renders (and the triggers that carry their hashes), the provider's pickle (its new module path) and
# the plain data the preview summary reads.
MAY_CHANGE = {"create", "check", "delete", "triggers", "upload", "__provider", "summary"}


def changed_inputs(old: dict, new: dict) -> set[str]:
    """The names of the inputs that differ between two exports, over the resources both hold (a
    secret's ciphertext is left out: the engine may encrypt the same value anew)."""
    before = {r["urn"]: r.get("inputs", {}) for r in old["resources"]}
    changed = set()
    for resource in new["resources"]:
        was = before.get(resource["urn"])
        if was is None:
            continue
        inputs = resource.get("inputs", {})
        for key in set(was) | set(inputs):
            a, b = was.get(key), inputs.get(key)
            secret = any(isinstance(v, dict) and "ciphertext" in v for v in (a, b))
            if a != b and not secret:
                changed.add(key)
    return changed


def provider_classes(deployment: dict) -> set[str]:
    """The classes the state's dynamic resources name their providers by: the module and the name
    their pickles (`__provider`) start with."""
    classes = set()
    for resource in deployment["resources"]:
        if resource["type"] == DYNAMIC:
            value = resource["inputs"]["__provider"]
            if isinstance(value, dict):  # a secret (the SDK keeps the provider as one), shown in the export
                value = json.loads(value["plaintext"])
            pickled = base64.b64decode(value)
            strings = [arg for op, arg, _ in pickletools.genops(pickled) if isinstance(arg, str)]
            classes.add(".".join(strings[:2]))
    return classes


def test_a_stack_deployed_before_the_move_refreshes_updates_and_destroys_with_the_code_under_test(
        tmp_path, toolchain, test_host, host_state, npm_registry, before_the_move):  # noqa: F811 (the fixture)
    result = tmp_path / "old-up.json"
    given = {"state": str(tmp_path), "host": test_host, "npm_registry": npm_registry, "hub": HUB, "stack": STACK,
             "deploy": DEPLOY, "result": str(result)}
    env = {**os.environ, "PYTHONPATH": str(before_the_move), eng.TOOLCHAIN_BIN_ENV: str(toolchain)}
    old = subprocess.run([sys.executable, "-c", OLD_UP], cwd=before_the_move, env=env, input=json.dumps(given),
                         text=True, timeout=900)
    engine = eng.local_engine(work_dir=tmp_path / "project", state_dir=tmp_path)
    stack = None
    try:
        assert old.returncode == 0 and result.exists(), "the old tree's `up` failed (its log is above)"
        assert set(json.loads(result.read_text())) == {"create"}, result.read_text()
        stack = engine.stack(STACK, create=False)
        url = stack.outputs()["hubs"].value["wbfinhub"]["url"]
        assert health(url) == 200
        written = stack.export_stack()
        assert provider_classes(written.deployment) == {"components.remote.RemoteCommandProvider",
                                                        "components.stack_key.StackKeyProvider"}
        commands = [r for r in written.deployment["resources"] if r["type"] == DYNAMIC]
        checks = sum(bool(r["inputs"].get("check")) for r in commands)
        assert checks, "the stack has commands whose check a refresh runs on the host"

        # The refresh loads each provider from the old state and runs each check on the host (which
        # the sshd log shows: the same count proves below that the `up` runs nothing there).
        before = sessions(host_state, test_host["user"])
        refreshed = stack.refresh(on_output=print_line, color="never")
        assert set(refreshed.summary.resource_changes) == {"same"}, refreshed.summary.resource_changes
        assert eng.drift_found(stack) == {}
        assert sessions(host_state, test_host["user"]) - before >= checks, "the refresh ran each check over SSH"

        # The code under test renders some scripts differently from the old tree (shellcheck's fixes,
        # the install retry as a file of its own: docs/deploys.md), so its first `up` updates those
        # commands in place, the one rebuild the docs announce: never a create, a replace or a
        # delete, and no input changed but scripts, triggers, the provider's own pickle and the
        # summary's data. The second `up` then changes nothing and runs nothing on the host.
        first = stack.up(on_output=print_line, color="never")
        assert set(first.summary.resource_changes) <= {"same", "update"}, first.summary.resource_changes
        assert changed_inputs(written.deployment, stack.export_stack().deployment) <= MAY_CHANGE
        assert health(url) == 200
        before = sessions(host_state, test_host["user"])
        up = stack.up(on_output=print_line, color="never")
        assert set(up.summary.resource_changes) == {"same"}, up.summary.resource_changes
        assert sessions(host_state, test_host["user"]) == before, "the up ran nothing on the host"
        assert health(url) == 200

        # The destroy runs on the state as the old code wrote it (the up changed nothing on the
        # host, as shown above), so each delete loads its provider by the old module path too.
        stack.import_stack(written)
        destroyed = stack.destroy(on_output=print_line, color="never")
        assert set(destroyed.summary.resource_changes) == {"delete"}, destroyed.summary.resource_changes
        assert docker("ps", "--all", "--filter", f"name=wbfinhub-{STACK}", "--format", "{{.Names}}") == ""
        assert not (deploy_home(test_host["user"]) / ".workhub" / "contexts" / STACK / "wbfinhub").exists()
        assert stack.export_stack().deployment.get("resources") in (None, [])
    finally:
        if stack is None:
            try:
                stack = engine.stack(STACK, create=False)
            except Exception:  # the old tree made no stack: nothing to take off the host
                stack = None
        if stack is not None:
            stack.destroy(color="never")
