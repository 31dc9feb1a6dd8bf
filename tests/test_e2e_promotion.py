"""Promotion and rollout on the test host: production runs exactly the image staging verified,
switching to it without dropping a request, both stacks serve at once, Compose shows what runs,
and a hub that fails its health check never takes over from the one serving."""

from __future__ import annotations

import json
import subprocess

import pytest
from pulumi import automation as auto

from tests.e2e_fixtures import (build_records, deploy_home, deploy_under_probe, forget_local_images, health,
                                 mark_version, new_local_stack, records_since, running_image, serving_container)
from workhub.engine import print_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HUB = {"name": "wbsaleshub", "context": "WBSalesHub", "port": 4091, "healthPath": "/health"}


def test_production_promotes_what_staging_verified_and_a_failed_health_check_rolls_back(
    tmp_path, toolchain, test_host, npm_registry, sources
):
    _, staging = new_local_stack(tmp_path, test_host, npm_registry, hubs=[HUB], source_root=sources,
                                 name="e2e-staging", project="staging")
    _, production = new_local_stack(tmp_path, test_host, npm_registry, hubs=[HUB], source_root=sources,
                                    name="e2e-production", project="production",
                                    overrides={"workhub:promoteFrom": "e2e-staging"})
    forget_local_images()
    try:
        # Production before staging has verified anything: nothing to promote, and the preview says why.
        early = production.preview(color="never")
        assert "wbsaleshub: not promoted: stack e2e-staging has no wbsaleshub" in early.stdout

        staged = staging.up(on_output=print_line, color="never").outputs["hubs"].value["wbsaleshub"]
        verified = staged["verified"]
        assert verified["image"] == staged["image"] and verified["image_id"].startswith("sha256:")

        before = len(build_records())
        preview = production.preview(color="never")
        tag = "wbsaleshub:e2e-production-" + staged["image"].rsplit("-", 1)[1]
        assert f"wbsaleshub: runs {tag} from {staged['image']} (stack e2e-staging, verified healthy at" in preview.stdout
        promoted = production.up(on_output=print_line, color="never").outputs["hubs"].value["wbsaleshub"]
        assert records_since(before) == [], "production built nothing"
        assert promoted["image"] == tag and promoted["verified"]["image_id"] == verified["image_id"]
        assert promoted["url"] != staged["url"]
        assert health(staged["url"]) == 200 and health(promoted["url"]) == 200, "both stacks serve at once"

        # Staging verifies a new version; production promotes it under load without dropping a request.
        mark_version(sources, "WBSalesHub", "promoted")
        staging.up(on_output=print_line, color="never")
        deploy = deploy_under_probe(production, promoted["url"])
        assert deploy.report.failed == 0, deploy.report.summary()
        assert "promoted" not in list(deploy.report.bodies)[0] and "promoted" in list(deploy.report.bodies)[-1]
        assert all(s.status == 200 for s in deploy.slow), deploy.report.summary()
        switch = deploy.switch_time("promoted")
        assert any(s.started < switch < s.ended for s in deploy.slow), "a slow request spanned the switch"
        staged = staging.outputs()["hubs"].value["wbsaleshub"]
        tag = "wbsaleshub:e2e-production-" + staged["image"].rsplit("-", 1)[1]
        assert running_image("wbsaleshub", "e2e-production") == tag

        # Compose on the host shows what Pulumi deployed.
        listed = subprocess.run(["/usr/bin/docker", "compose", "ps", "--format", "json"],
                                cwd=deploy_home() / ".workhub" / "compose", capture_output=True, text=True, check=True)
        services = {json.loads(line)["Service"]: json.loads(line)["Image"] for line in listed.stdout.splitlines()
                    if line.strip().startswith("{")} if not listed.stdout.strip().startswith("[") else {
            entry["Service"]: entry["Image"] for entry in json.loads(listed.stdout)}
        assert services.get(serving_container("wbsaleshub", "e2e-staging")) == staged["image"]
        assert services.get(serving_container("wbsaleshub", "e2e-production")) == tag
        assert services.get("wbsaleshub-e2e-staging-proxy") == services.get("wbsaleshub-e2e-production-proxy")

        # A new staging build that exits at start: it never takes over, the old one keeps answering.
        server = sources / "WBSalesHub" / "server.js"
        server.write_text("process.exit(3);\n" + server.read_text())
        with pytest.raises(auto.errors.CommandError) as caught:
            staging.up(color="never")
        message = str(caught.value)
        assert "never answered /health" in message and "It exited (last exit code 3) and Docker restarted it" in message, message
        assert "wbsaleshub-e2e-staging-" in message and "keeps serving" in message
        assert health(staged["url"]) == 200
        running = running_image("wbsaleshub", "e2e-staging")
        assert running == staged["image"]
    finally:
        production.destroy(color="never")
        staging.destroy(color="never")
