"""Registry mode's host side, end to end: a hub that ran from a host build moves to registry mode;
its image, built where Pulumi runs and pushed (here by a CI stand-in, since the docker provider
plugin cannot be built on these machines), is pulled by the test host from a registry with a login
on 127.0.0.1, run and health-checked by the same steps as a host build, promoted to production,
and moved back to a host build; no process had the registry password (nor the wrong one the test
sets) or the SSH key in its command line or environment (the logins read it on stdin)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pulumi import automation as auto

from tests.e2e_fixtures import (CiStandIn, assert_no_secret_in_any_process, build_records, forget_local_images,
                                 health, new_local_stack, records_since, running_image, secret_values)
from workhub.engine import print_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HUB = {"name": "wbsaleshub", "context": "WBSalesHub", "port": 4091, "healthPath": "/health", "buildMode": "registry"}


def set_build_mode(work_dir: Path, mode: str) -> None:
    """Move the hub to another build mode, as its entry in Pulumi.yaml would."""
    project = yaml.safe_load((work_dir / "Pulumi.yaml").read_text())
    project["config"]["workhub:hubs"]["value"][0]["buildMode"] = mode
    (work_dir / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))


def manifest_pulls(registry: dict, tag: str) -> int:
    """How often the registry answered a pull's request for the manifest of wbsaleshub:<tag> (a
    push only PUTs it)."""
    log = (Path(registry["storage"]).parent / "registry.log").read_text()
    return len(re.findall(rf'"(?:GET|HEAD) /v2/workhub/wbsaleshub/manifests/{re.escape(tag)} HTTP/1.1" 200', log))


WRONG_PASSWORD = "not-the-password"


def test_a_hub_moves_to_registry_mode_is_pulled_run_promoted_and_moves_back(
    tmp_path, toolchain, test_host, npm_registry, image_registry, sources, process_watch
):
    password = Path(image_registry["password_file"]).read_text()
    ci = CiStandIn(image_registry)
    overrides = {"workhub:registry.server": image_registry["server"],
                 "workhub:registry.username": image_registry["username"]}
    engine, staging = new_local_stack(tmp_path, test_host, npm_registry, hubs=[{**HUB, "buildMode": "remote"}],
                                      source_root=sources, name="e2e-reg-staging", project="staging",
                                      overrides=overrides)
    work = Path(staging.workspace.work_dir)
    engine.pusher = ci
    staging = engine.stack("e2e-reg-staging")
    _, production = new_local_stack(tmp_path, test_host, npm_registry, hubs=[HUB], source_root=sources,
                                    name="e2e-reg-production", project="production",
                                    overrides={"workhub:promoteFrom": "e2e-reg-staging"})
    forget_local_images()
    try:
        # The password is missing: the config check names the key and how to set it.
        with pytest.raises(auto.errors.CommandError) as caught:
            staging.preview(color="never")
        assert "workhub:registryPassword: is not set, but workhub:registry.username (workhub-ci) is" in str(caught.value)
        engine.set_secret(staging.name, "workhub:registryPassword", password)

        # The hub runs from a host build first.
        built = staging.up(on_output=print_line, color="never").outputs["hubs"].value["wbsaleshub"]
        assert built["mode"] == "remote" and "pushed" not in built and health(built["url"]) == 200

        # Moving it to registry mode: the preview shows the pull in the build's place; CI builds and
        # pushes, the host pulls, and the new container replaces the host-built one.
        set_build_mode(work, "registry")
        preview = staging.preview(color="never", diff=True).stdout
        assert "wbsaleshub-pull" in preview and "wbsaleshub-build" in preview
        before = len(build_records())
        lines: list[str] = []
        up = staging.up(on_output=lambda line: (lines.append(line), print_line(line)), color="never")
        hub = up.outputs["hubs"].value["wbsaleshub"]
        tag = hub["image"].split(":", 1)[1]
        assert hub["mode"] == "registry"
        assert hub["pushed"] == f"{image_registry['server']}/workhub/wbsaleshub:{tag}" == ci.pushed[0]
        assert hub["build"]["pulled_from"] == hub["pushed"]
        assert hub["build"]["digest"].startswith(f"{image_registry['server']}/workhub/wbsaleshub@sha256:")
        assert hub["image"] != built["image"] and hub["url"] == built["url"] and health(hub["url"]) == 200
        assert hub["verified"]["previous_image"] == built["image"]
        pulls = manifest_pulls(image_registry, tag)
        assert pulls >= 1, "the host pulled the image from the registry"
        (record,) = records_since(before)
        assert record["pulled_from"] == hub["pushed"] and record["result"] == "succeeded"
        output = "".join(lines)
        assert f"pull: attempt 1 of 5: pulling {hub['pushed']}" in output
        assert "BuildKit check is skipped" in output, "no hub builds on the host, so the preflight skips BuildKit"

        # The registry password is only ever a secret: not in the engine's output, not in plain state.
        # (export_stack shows secrets decrypted, so read the backend's state and the stack files as stored.)
        stored = [path for path in tmp_path.rglob("*") if path.is_file() and path.suffix in (".json", ".yaml", ".bak")]
        state = "".join(path.read_text(errors="replace") for path in stored)
        assert "secretValues" in state and password not in state, "the password is in plain state"
        assert password not in output, "the engine's output shows the registry password"

        # Nothing changed: nothing is pushed or pulled again.
        again = staging.up(on_output=print_line, color="never")
        assert set(again.summary.resource_changes) == {"same"}, again.summary.resource_changes
        assert manifest_pulls(image_registry, tag) == pulls

        # Production promotes the pulled image like any image staging verified.
        promoted = production.up(on_output=print_line, color="never").outputs["hubs"].value["wbsaleshub"]
        assert promoted["verified"]["image_id"] == hub["verified"]["image_id"]
        assert health(promoted["url"]) == 200

        # A wrong password: the pull of the next image stops at the login, naming the settings.
        server = sources / "WBSalesHub" / "server.js"
        server.write_text(server.read_text() + "\n// a new release\n")
        engine.set_secret(staging.name, "workhub:registryPassword", WRONG_PASSWORD)
        with pytest.raises(auto.errors.CommandError) as caught:
            staging.up(color="never")
        assert "refused the login of workhub-ci; check workhub:registry.username and workhub:registryPassword" \
            in str(caught.value)
        assert health(hub["url"]) == 200, "the running container is untouched"
        engine.set_secret(staging.name, "workhub:registryPassword", password)
        released = staging.up(on_output=print_line, color="never").outputs["hubs"].value["wbsaleshub"]
        assert released["image"] != hub["image"] and health(released["url"]) == 200

        # Moving the hub back to host builds: the host builds the same sources, then runs them.
        set_build_mode(work, "remote")
        before = len(build_records())
        moved = staging.up(on_output=print_line, color="never").outputs["hubs"].value["wbsaleshub"]
        (record,) = records_since(before)
        assert moved["mode"] == "remote" and "pulled_from" not in record and record["result"] == "succeeded"
        assert moved["image"] != released["image"] and health(moved["url"]) == 200
        running = running_image("wbsaleshub", "e2e-reg-staging")
        assert running == moved["image"]
    finally:
        production.destroy(color="never")
        staging.destroy(color="never")
        process_watch.secrets.update({**secret_values(production), **secret_values(staging),
                                      "workhub:registryPassword": password,
                                      "workhub:registryPassword (the wrong one)": WRONG_PASSWORD})


def test_no_secret_was_in_any_process_command_line_or_environment(process_watch):
    """While CI's stand-in logged in and pushed, and the host's pulls logged in (the wrong password
    too), no process on this machine held the registry password or the SSH key in its command line
    or environment."""
    assert_no_secret_in_any_process(process_watch)
