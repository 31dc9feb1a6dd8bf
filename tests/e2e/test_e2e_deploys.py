"""Deploys that never drop a request and never lose data, on the test host with the real engine, sshd,
Docker and Caddy: a prober requests the hub's host port 25 times a second through every kind of
deploy, slow requests stay in flight through the switch, and a file in the hub's volume is checked
after each step; no process held the hub's secret or the SSH key in its command line or
environment through all of it (the backup and the restore, whose archive follows the script on
the session's stdin, among them)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.request

import pytest
from pulumi import automation as auto

from tests.e2e_fixtures import (assert_no_secret_in_any_process, break_health, deploy_under_probe, docker,
                                forget_local_images, listen_elsewhere, mark_version, new_local_stack, running_image,
                                secret_values, serving_container)
from workhub import data
from workhub.engine import print_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HUB = {"name": "wbsaleshub", "context": "WBSalesHub", "port": 4091, "healthPath": "/health",
       "secrets": ["LEADS_API_TOKEN"], "volumes": {"data": "/app/data"}}
# Quicker than the defaults, so the failing deploys give up sooner; the same code paths.
DEPLOY = {"healthTimeoutSeconds": 15, "healthIntervalMs": 300, "stopGraceSeconds": 10}
VOLUME = "workhub-e2e-wbsaleshub-data"


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def files_on_volume(url: str) -> dict:
    """What the hub itself sees in its data directory: each file's size and sha256."""
    return get_json(url + "/debug/data")["files"]


def assert_no_request_failed(deploy, new_body: str | None, old_body: str) -> None:
    report = deploy.report
    assert report.failed == 0, report.summary()
    assert report.total >= 50, report.summary()
    bodies = list(report.bodies)
    assert old_body in bodies[0], report.summary()
    if new_body is None:
        assert all(old_body in body for body in bodies), f"only the old version answered:\n{report.summary()}"
        return
    assert new_body in bodies[-1], report.summary()
    switch = deploy.switch_time(new_body)
    assert all(s.status == 200 for s in deploy.slow), [s.outcome for s in deploy.slow]
    spanning = [s for s in deploy.slow if s.started < switch < s.ended]
    assert spanning, f"no slow request was in flight at the switch ({switch:.2f} s): {deploy.slow}"


def test_every_kind_of_deploy_drops_no_request_and_keeps_the_data(tmp_path, toolchain, test_host, npm_registry,
                                                                   sources, process_watch):
    engine, stack = new_local_stack(tmp_path, test_host, npm_registry, hubs=[HUB], source_root=sources,
                                    deploy=DEPLOY)
    forget_local_images()
    docker("volume", "rm", VOLUME, check=False)
    try:
        first = stack.up(on_output=print_line, color="never").outputs["hubs"].value["wbsaleshub"]
        url, first_image = first["url"], first["image"]
        # Data the hub keeps: a lead through its API, and a binary file written into its volume.
        request = urllib.request.Request(url + "/api/leads", method="POST", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"company": "Acme", "contact": "a@acme.test"}).encode())
        urllib.request.urlopen(request, timeout=10).read()
        blob = os.urandom(300_000)
        subprocess.run(["/usr/bin/docker", "exec", "-i", serving_container("wbsaleshub", "e2e"), "sh", "-c",
                        "cat > /app/data/blob.bin"], input=blob, check=True)
        kept = files_on_volume(url)
        assert kept["blob.bin"]["sha256"] == hashlib.sha256(blob).hexdigest() and "leads.json" in kept

        # 1. A normal deploy: the new version starts beside the old, the proxy switches, slow
        # requests in flight finish on the old one.
        mark_version(sources, "WBSalesHub", "two")
        deploy = deploy_under_probe(stack, url)
        assert_no_request_failed(deploy, "two", '"hub":"wbsaleshub"')
        second_image = running_image("wbsaleshub", "e2e")
        assert second_image != first_image and files_on_volume(url) == kept

        # 2. A new version that answers its health path with 500 never gets a request.
        break_health(sources, "WBSalesHub")
        deploy = deploy_under_probe(stack, url, fails=True)
        assert "never answered /health with 200 3 time(s) in a row within 15 s" in deploy.error, deploy.error
        assert "answered 500" in deploy.error and "It got no request from clients" in deploy.error
        assert_no_request_failed(deploy, None, "two")
        assert running_image("wbsaleshub", "e2e") == second_image and files_on_volume(url) == kept

        # 3. One that never listens on its port: the same.
        mark_version(sources, "WBSalesHub", "three")
        listen_elsewhere(sources, "WBSalesHub")
        deploy = deploy_under_probe(stack, url, fails=True)
        assert "refused the connection" in deploy.error, deploy.error
        assert_no_request_failed(deploy, None, "two")
        assert running_image("wbsaleshub", "e2e") == second_image

        # 4. A rollback by pinning the first image goes through the same switch.
        stack.set_config("workhub:pinnedImages.wbsaleshub", auto.ConfigValue(first_image), path=True)
        deploy = deploy_under_probe(stack, url)
        assert deploy.report.failed == 0, deploy.report.summary()
        assert "two" in list(deploy.report.bodies)[0] and "two" not in list(deploy.report.bodies)[-1]
        assert running_image("wbsaleshub", "e2e") == first_image and files_on_volume(url) == kept

        # 5. destroy keeps the volume; the next up (still pinned) mounts it again.
        stack.destroy(on_output=print_line, color="never")
        assert docker("volume", "inspect", "--format", "{{.Name}}", VOLUME) == VOLUME
        stack.up(on_output=print_line, color="never")
        assert running_image("wbsaleshub", "e2e") == first_image and files_on_volume(url) == kept

        # 6. Backup, a loss, restore: the data comes back byte for byte.
        manifest = data.backup(stack, tmp_path / "backup")
        (entry,) = json.loads(manifest.read_text())["archives"]
        assert (entry["hub"], entry["volume"], entry["stack"]) == ("wbsaleshub", "data", "e2e")
        assert entry["image"] == running_image("wbsaleshub", "e2e") and entry["time"]
        assert entry["sha256"] == hashlib.sha256((tmp_path / "backup" / entry["file"]).read_bytes()).hexdigest()
        docker("exec", serving_container("wbsaleshub", "e2e"), "rm", "/app/data/blob.bin")
        assert "blob.bin" not in files_on_volume(url)
        assert data.restore(stack, tmp_path / "backup") == 1
        assert files_on_volume(url) == kept
        assert not list((tmp_path / "project").glob("**/*.tar.gz")), "no archive lands in the project"

        # 7. Only the explicit purge removes it (what the restore kept of the old content stays: prune's).
        stack.destroy(on_output=print_line, color="never")
        data.purge(stack)
        left = docker("volume", "ls", "--quiet", "--filter", f"name={VOLUME}").split()
        assert len(left) == 1 and left[0].startswith(f"{VOLUME}.pre-restore-"), left
    finally:
        stack.destroy(color="never")
        for volume in docker("volume", "ls", "--quiet", "--filter", f"name={VOLUME}").split():
            docker("volume", "rm", volume, check=False)
        process_watch.secrets.update(secret_values(stack))


def test_no_secret_was_in_any_process_command_line_or_environment(process_watch):
    """Through the deploys, the backup and the restore above, no process on this machine held the
    hub's secret or the SSH key in its command line or environment (but the hub's own containers)."""
    assert_no_secret_in_any_process(process_watch)
