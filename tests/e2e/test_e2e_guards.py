"""End to end: a stack whose data is protected (workhub:protectData, production's default) keeps its
volumes as protected resources. The first `up` after the upgrade adopts each volume a deploy made
before, touching no data; `scripts/workhub destroy` of the stack, and Pulumi's own destroy, refuse and
keep the volumes; once unprotected on purpose, destroy --purge-data removes them. What a deploy writes
on the host is the deploy user's alone."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from pulumi import automation as auto

from tests.e2e_fixtures import deploy_home, docker, health, new_local_stack, serving_container, workhub
from workhub import data
from workhub import engine as eng

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STACK = "e2e-guard"
HUB = {"name": "wbfinhub", "context": "WBFinHub", "port": 4092, "healthPath": "/health",
       "volumes": {"data": "/app/data"}}
VOLUME = f"workhub-{STACK}-wbfinhub-data"
HELPER = "haproxy:2.6"  # an image the test host has, with a shell


def in_volume(command: str) -> str:
    """Run a shell command with the hub's volume at /data; its output."""
    return docker("run", "--rm", "--user", "0", "--network", "none", "-v", f"{VOLUME}:/data", "--entrypoint", "sh",
                  HELPER, "-c", command)



def protection(stack: auto.Stack) -> dict[str, bool]:
    """Each command of the stack's state (by name) and whether it is protected."""
    resources = stack.export_stack().deployment.get("resources") or []
    return {resource["urn"].rsplit("::", 1)[-1]: bool(resource.get("protect")) for resource in resources
            if resource["type"] == "pulumi-python:dynamic:Resource"}


class BeforeTheUpgrade:
    """Stands in for HubData as the program was before volumes were resources: it registers nothing."""

    def __init__(self, *args, **kwargs):
        pass


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, toolchain, test_host, npm_registry):
    """A stack whose data is protected, deployed first as before the upgrade (its volume made by the
    deploy, with a file in it), and taken down at the end whatever happened."""
    tmp = tmp_path_factory.mktemp("guard")
    docker("volume", "rm", VOLUME, check=False)  # left by an earlier run that could not purge it
    engine, stack = new_local_stack(tmp, test_host, npm_registry, hubs=[HUB], name=STACK,
                                    overrides={"workhub:protectData": "true"})
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("components.program.HubData", BeforeTheUpgrade)
            eng.run("up", stack)
        in_volume("echo 'written before the upgrade' >/data/kept.txt")
        yield engine, stack
    finally:
        subprocess.run(["pulumi", "state", "unprotect", "--all", "--yes", "--stack", STACK], cwd=engine.work_dir,
                       env={**os.environ, **engine.env()}, capture_output=True)
        stack.destroy(color="never")
        data.purge(stack, print)


def test_the_first_up_after_the_upgrade_adopts_the_volume_and_touches_no_data(guarded):
    engine, stack = guarded
    assert "wbfinhub-volume-data" not in protection(stack)
    url = stack.outputs()["hubs"].value["wbfinhub"]["url"]
    serving = serving_container("wbfinhub", STACK)

    up = eng.run("up", stack)
    changes = up.summary.resource_changes
    assert changes.get("create") == 2 and set(changes) == {"create", "same"}, changes  # HubData and its volume
    assert f"volume: {VOLUME} is on the host: it is this stack's, with its data as it is" in up.stdout
    assert "run: " not in up.stdout and "build: " not in up.stdout, "nothing else ran on the host"
    assert in_volume("cat /data/kept.txt") == "written before the upgrade"
    assert serving_container("wbfinhub", STACK) == serving and health(url) == 200
    assert protection(stack)["wbfinhub-volume-data"] is True
    assert set(eng.run("up", stack).summary.resource_changes) == {"same"}, "a second up runs nothing"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_what_the_deploy_wrote_is_the_deploy_users_alone(guarded):
    """~/.workhub is 0700 and nothing in it is readable by others, but the build contexts (the image's
    files, with their modes) and the proxy's config (read by the proxy's user in its container)."""
    engine, _ = guarded
    home = deploy_home() / ".workhub"
    assert mode(home) == 0o700
    ours = [path for path in home.rglob("*") if STACK in str(path.relative_to(home)) and not path.is_symlink()]
    shared = [home / name for name in ("builds.jsonl", "build.lock", "compose/.env") if (home / name).exists()]
    assert ours and shared
    proxy = home / "proxy" / f"wbfinhub-{STACK}"
    exempt = {proxy, proxy / "haproxy.cfg"}
    loose = {str(path.relative_to(home)): oct(mode(path)) for path in [*ours, *shared]
             if mode(path) & 0o077 and path not in exempt and "contexts" not in path.parts and "context" not in path.parts}
    assert loose == {}
    assert (mode(proxy), mode(proxy / "haproxy.cfg")) == (0o755, 0o644)
    assert mode(home / "env" / f"{serving_container('wbfinhub', STACK)}.env") == 0o600
    assert mode(engine.state_dir) == 0o700 and mode(engine.work_dir / f"Pulumi.{STACK}.yaml") == 0o600


def test_a_destroy_of_the_stack_refuses_and_keeps_its_volume_until_it_is_unprotected_on_purpose(guarded):
    engine, stack = guarded
    url = stack.outputs()["hubs"].value["wbfinhub"]["url"]
    state = stack.export_stack().deployment

    refused = workhub(engine, "destroy", "--stack", STACK, f"--yes={STACK}", "--purge-data")
    assert refused.returncode == 1
    said = refused.stderr[refused.stderr.index(f"workhub: destroy of stack '{STACK}' did not run:"):].splitlines()
    assert said == [
        f"workhub: destroy of stack '{STACK}' did not run: it holds protected resources (workhub:protectData): "
        "wbfinhub-volume-data; nothing was changed, and their data stays. To destroy it on purpose, unprotect them "
        "first:",
        f"  scripts/workhub pulumi config set --stack {STACK} workhub:protectData false",
        f"  scripts/workhub up --stack {STACK}        # records the change of protection",
        f"then `scripts/workhub destroy --stack {STACK}` again; or, keeping the setting for the next `up`:",
        f"  scripts/workhub pulumi state unprotect --all --yes --stack {STACK}"]
    assert stack.export_stack().deployment == state and health(url) == 200

    # Pulumi's own destroy (`pulumi destroy`, here without a preview first) refuses the volume too.
    with pytest.raises(auto.errors.CommandError) as caught:
        eng.run("destroy", stack)
    assert "protect" in str(caught.value)
    assert in_volume("cat /data/kept.txt") == "written before the upgrade"
    assert protection(stack)["wbfinhub-volume-data"] is True

    stack.set_config("workhub:protectData", auto.ConfigValue("false"))
    up = eng.run("up", stack)
    assert "run: " not in up.stdout and "volume: " not in up.stdout, "unprotecting runs nothing on the host"
    assert protection(stack)["wbfinhub-volume-data"] is False

    done = workhub(engine, "destroy", "--stack", STACK, f"--yes={STACK}", "--purge-data")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"workhub: stack '{STACK}' destroyed" in done.stdout and "and its volumes" in done.stdout
    assert docker("volume", "ls", "--quiet", "--filter", f"name={VOLUME}") == ""
