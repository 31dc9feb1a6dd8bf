"""Promotion and rollout on the test host: production runs exactly the image staging verified,
switching to it without dropping a request, and refuses one whose ID is no longer the verified
one; both stacks serve at once, Compose shows what runs; a hub that fails its health check never
takes over from the one serving; a `pinnedImages` rollback runs the pinned image, health-checked."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from pulumi import automation as auto

from components.render.host.deploy import status_script
from tests.e2e_fixtures import (build_records, deploy_home, deploy_under_probe, docker, forget_local_images,
                                 health, mark_version, new_local_stack, records_since, running_image,
                                 serving_container)
from workhub import engine as eng
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

        first = staging.up(on_output=print_line, color="never")
        staged = first.outputs["hubs"].value["wbsaleshub"]
        verified = staged["verified"]
        # The new container's own lines come during its health wait, marked with its name, before it
        # is found healthy.
        own = first.stdout.find(f"{verified['container']} | ")
        assert 0 <= own < first.stdout.find(f"run: {verified['container']} answers /health"), first.stdout
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

        # Staging verifies a new version. Before production promotes it, its tag is moved to another
        # image (a rebuild or a hand-made tag under the same name): production refuses it by ID.
        mark_version(sources, "WBSalesHub", "promoted")
        again = staging.up(on_output=print_line, color="never")
        second = again.outputs["hubs"].value["wbsaleshub"]["verified"]
        # The outputs' free disk is this up's (its preflight's), not the first up's.
        measured = re.findall(r"; (\d+) MB free disk; BuildKit works", again.stdout)
        assert measured and again.outputs["hostFacts"].value["disk_free_mb"] == int(measured[-1]), again.stdout
        other_id = docker("image", "inspect", "--format", "{{.Id}}", "node:24-bookworm-slim")
        docker("tag", "node:24-bookworm-slim", second["image"])
        with pytest.raises(auto.errors.CommandError) as caught:
            production.up(color="never")
        message = str(caught.value)
        assert (f"FAILED: {second['image']} is now {other_id}, not the {second['image_id']} that was verified"
                in message), message
        assert running_image("wbsaleshub", "e2e-production") == tag and health(promoted["url"]) == 200
        assert not any(ref.startswith("wbsaleshub:e2e-production-" + second["image"].rsplit("-", 1)[1])
                       for ref in docker("image", "ls", "wbsaleshub", "--format", "{{.Repository}}:{{.Tag}}").split())

        # With the verified image under its tag again, production promotes it under load without
        # dropping a request.
        docker("tag", second["image_id"], second["image"])
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
        # It is crash-looping: the deploy fails then, with the exit code and the app's own last
        # lines, not after the whole health timeout (60 s here, the default).
        server = sources / "WBSalesHub" / "server.js"
        server.write_text("console.error('no database at start');\nprocess.exit(3);\n" + server.read_text())
        printed: list[str] = []
        with pytest.raises(auto.errors.CommandError) as caught:
            staging.up(color="never", on_output=printed.append)
        message = str(caught.value)
        assert "is crash-looping: it exited (last exit code 3) and Docker restarted it " in message, message
        # Its lines came as it wrote them, marked with its name (every run's: Docker restarted it),
        # and not again, unmarked, at the end: each time they are printed (the engine's summary of
        # the update and the failure's quote of the last lines repeat them) they carry the mark.
        crashed = re.search(r"FAILED: (\S+) is crash-looping", message).group(1)
        streamed = "".join(printed)
        said = [line for line in streamed.splitlines() if "no database at start" in line]
        assert said and all(f"{crashed} | " in line for line in said), streamed
        host_log = re.search(r"full log on the host: (\S+)", message).group(1)
        assert "never answered /health with 200" in message and "no database at start" in message, message
        assert "not after the 60 s of workhub:deploy.healthTimeoutSeconds" in message, message
        assert "wbsaleshub-e2e-staging-" in message and "keeps serving" in message
        assert health(staged["url"]) == 200
        running = running_image("wbsaleshub", "e2e-staging")
        assert running == staged["image"]
        # `status` says that the last attempt was that image's deploy, and that it failed (its build
        # succeeded).
        out = eng.on_host(staging, lambda c: status_script(staging.name, c.hubs, c.host_ports, c.publish_address),
                          "status", log=lambda line: None)
        (row,) = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert (row["image"], row["last_attempt"], row["last_log"]) == (staged["image"], "deploy failed", host_log), row
        tried = re.search(rf"starting {crashed} from (\S+) beside", streamed).group(1)
        assert row["last_image"] == tried != staged["image"], row

        # Rollback by pin. A pinned image is health-checked like any other: one that exits at start
        # never takes over from the one serving.
        now = production.outputs()["hubs"].value["wbsaleshub"]
        previous = now["verified"]["previous_image"]
        assert previous == promoted["image"] and now["image"] == tag, now
        subprocess.run(["/usr/bin/docker", "build", "--tag", "wbsaleshub:e2e-pinned-broken", "-"], check=True,
                       input=f'FROM {tag}\nCMD ["node", "-e", "process.exit(4)"]\n', text=True,
                       capture_output=True, env={**os.environ, "DOCKER_BUILDKIT": "0"})
        production.set_config("workhub:pinnedImages.wbsaleshub", auto.ConfigValue("wbsaleshub:e2e-pinned-broken"),
                              path=True)
        deploy = deploy_under_probe(production, promoted["url"], fails=True)
        assert "is crash-looping: it exited (last exit code 4)" in deploy.error, deploy.error
        assert deploy.report.failed == 0, deploy.report.summary()
        assert running_image("wbsaleshub", "e2e-production") == tag

        # The one-line rollback of docs/promotion.md: pin the previous image; it runs, checked healthy.
        production.set_config("workhub:pinnedImages.wbsaleshub", auto.ConfigValue(previous), path=True)
        deploy = deploy_under_probe(production, promoted["url"])
        assert deploy.report.failed == 0, deploy.report.summary()
        assert "promoted" in list(deploy.report.bodies)[0] and "promoted" not in list(deploy.report.bodies)[-1]
        pinned = deploy.result.outputs["hubs"].value["wbsaleshub"]
        assert pinned["image"] == previous and running_image("wbsaleshub", "e2e-production") == previous
        assert pinned["verified"]["image"] == previous and pinned["verified"]["verified_at"] > now["verified"]["verified_at"]
        assert [r for r in records_since(before) if r["stack"] == "e2e-production"] == [], "production built nothing"
        assert health(promoted["url"]) == 200
    finally:
        production.destroy(color="never")
        staging.destroy(color="never")
