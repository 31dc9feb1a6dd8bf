"""Drift, end to end on the test host with the real engine, sshd and Docker: a hub's live container
removed by hand, then one replaced by hand with a container of another image, then its image
removed. Each time `refresh` reports it (the run's or the build's check), the preview plans an
update of that command only, and the next `up` brings the hub back healthy from its own image; a
refresh of a host as the last deploy left it finds nothing."""

from __future__ import annotations

import pytest

from tests.e2e_fixtures import (SIDE_USER, docker, health, new_local_stack, on_the_side_host, running_image,
                                 serving_container)
from workhub import engine as eng
from workhub.engine import print_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Beside the one-host tests, on a test host of its own (tests/e2e_fixtures.py: on_the_side_host).
test_host, host_state, beside_the_one_host = on_the_side_host()

HUB = {"name": "wbhubmanager", "context": "WBHubManager", "port": 4090, "healthPath": "/health",
       "secrets": ["SESSION_SECRET"], "volumes": {"data": "/app/data"}}
STACK = "sidedrift"
VOLUME = f"workhub-{STACK}-wbhubmanager-data"
DEPLOY = {"healthTimeoutSeconds": 30, "healthIntervalMs": 300, "stopGraceSeconds": 5}


def refresh(stack) -> tuple[dict, str]:
    """Refresh the stack: what changed in its state, and what it printed."""
    result = stack.refresh(on_output=print_line, color="never")
    return result.summary.resource_changes or {}, result.stdout


def test_refresh_reports_a_container_removed_or_replaced_by_hand_and_up_repairs_it(tmp_path, toolchain, test_host,
                                                                                   npm_registry):
    engine, stack = new_local_stack(tmp_path, test_host, npm_registry, hubs=[HUB], deploy=DEPLOY, name=STACK)
    try:
        hub = stack.up(on_output=print_line, color="never").outputs["hubs"].value["wbhubmanager"]
        url, image = hub["url"], hub["image"]
        assert health(url) == 200
        changes, _ = refresh(stack)
        assert "update" not in changes and eng.drift_found(stack) == {}, "a host as the last deploy left it"

        # 1. The live container removed by hand: the port answers no more.
        live = serving_container("wbhubmanager", STACK, SIDE_USER)
        docker("rm", "--force", live)
        changes, printed = refresh(stack)
        assert changes.get("update") == 1, printed
        assert f"wbhubmanager-run: drift: the live container {live} is gone" in printed
        assert "wbhubmanager-run updated" in printed and "[diff: +drift]" in printed
        assert eng.drift_found(stack) == {"wbhubmanager-run": [f"the live container {live} is gone"]}
        preview = stack.preview(color="never", diff=True)
        assert preview.change_summary.get("update") == 1, preview.stdout
        assert "- drift" in preview.stdout and f"\"the live container {live} is gone\"" in preview.stdout, preview.stdout

        up = stack.up(on_output=print_line, color="never")
        assert up.summary.resource_changes.get("update") == 1
        assert f"removed what was left of {live} (it was not running)" in up.stdout
        assert health(url) == 200 and running_image("wbhubmanager", STACK, SIDE_USER) == image
        assert serving_container("wbhubmanager", STACK, SIDE_USER) != live
        changes, _ = refresh(stack)
        assert "update" not in changes and eng.drift_found(stack) == {}
        assert stack.preview(color="never").change_summary.get("update") is None

        # 2. The live container replaced by hand with a container of another image, under its name.
        live = serving_container("wbhubmanager", STACK, SIDE_USER)
        docker("rm", "--force", live)
        docker("run", "--detach", "--name", live, "--network", f"workhub-{STACK}", "--entrypoint", "sleep",
               "node:24-bookworm-slim", "infinity")
        changes, printed = refresh(stack)
        assert changes.get("update") == 1, printed
        found = eng.drift_found(stack)["wbhubmanager-run"]
        assert f"the live container {live} runs node:24-bookworm-slim, not {image}" in found, found
        assert f"the live container {live} was not made from its Compose file (started or changed by hand?)" in found

        stack.up(on_output=print_line, color="never")
        assert health(url) == 200 and running_image("wbhubmanager", STACK, SIDE_USER) == image
        assert docker("ps", "--all", "--quiet", "--filter", "ancestor=node:24-bookworm-slim", "--filter",
                      f"name={live}") == "", "the container made by hand is gone"
        assert eng.drift_found(stack) == {}

        # 3. The hub's image removed by hand (the container runs on from it, untagged): the build's check.
        docker("image", "rm", "--force", image)
        changes, printed = refresh(stack)
        assert eng.drift_found(stack) == {"wbhubmanager-build": [f"the image {image} is not on the host"]}, printed
        stack.up(on_output=print_line, color="never")
        assert docker("image", "inspect", "--format", "{{.Id}}", image) and eng.drift_found(stack) == {}
        assert health(url) == 200

        (state_file,) = (tmp_path / "state").rglob(f"{STACK}.json")
        assert "PRIVATE KEY" not in state_file.read_text(), "the refreshes kept the SSH key encrypted"
    finally:
        stack.destroy(color="never")
        docker("volume", "rm", VOLUME, check=False)
