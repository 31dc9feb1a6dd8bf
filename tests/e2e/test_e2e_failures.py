"""End to end: a failure is said once, last, in workhub's words; the preflight stops an update
naming the setting; `destroy` takes off the host what workhub put there and keeps what it says."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from components.config.models import MAX_MB
from tests.e2e_fixtures import (break_health, build_records, deploy_home, docker, forget_local_images, mark_version,
                                new_local_stack, records_since, set_build_setting)
from workhub import data
from workhub import engine as eng
from workhub.engine import print_line

pytestmark = [pytest.mark.e2e]

HUB = {"name": "wbfinhub", "context": "WBFinHub", "port": 4092, "healthPath": "/health"}


def reported(operation: str, stack) -> tuple[object, list[str]]:
    """Run `operation` as `scripts/workhub` does; its result and everything it printed, in order
    (the failure report is the last item)."""
    out: list[str] = []

    def say(line: str) -> None:
        print_line(line)
        out.append(line)

    return eng.run_reported(operation, stack, say=say, say_failure=say), out


def field(report: str, name: str) -> str:
    found = re.search(rf"^  {name}: (.*)$", report, re.M)
    assert found, f"no {name!r} in the report:\n{report}"
    return found.group(1)


def test_a_failed_health_check_is_said_once_last_with_what_was_seen(tmp_path, toolchain, test_host, npm_registry,
                                                                      sources):
    break_health(sources, "WBFinHub")
    engine, stack = new_local_stack(tmp_path, test_host, npm_registry, hubs=[HUB], source_root=sources,
                                    deploy={"healthTimeoutSeconds": 8, "healthIntervalMs": 300})
    try:
        result, out = reported("up", stack)
        assert result is None
        whole, report = "\n".join(out), out[-1]
        assert "Traceback" not in whole
        lines = report.splitlines()
        assert lines[0] == "workhub: up of stack 'e2e' failed", report
        assert field(report, "hub") == "wbfinhub"
        assert field(report, "step").startswith("deploy (wbfinhub-run on deploy@127.0.0.1:"), report
        reason = field(report, "reason")
        assert "wbfinhub-e2e-blue never answered /health with 200 3 time(s) in a row within 8 s" in reason
        assert re.search(r"it answered 500 for [1-9]\d* s \(\d+ times\)", reason), reason
        assert whole.count(reason) == 1, "the reason is said once, in the report"
        assert "  last log lines:" in lines and any("listening on 0.0.0.0:4092" in line for line in lines), report
        log = Path(field(report, "log on the host"))
        assert "listening on 0.0.0.0:4092" in log.read_text(), "the container's whole log stays on the host"
        # The container's own lines came as it wrote them, marked with its name, once; the report at
        # the end quotes its last lines.
        streamed = [line for line in out[:-1] if "listening on 0.0.0.0:4092" in line]
        assert len(streamed) == 1 and "wbfinhub-e2e-blue | " in streamed[0], out[:-1]
    finally:
        stack.destroy(color="never")


def stopped_by_the_preflight(stack) -> str:
    """Run `up`, which the preflight must stop before any build; the failure report."""
    before = len(build_records())
    result, out = reported("up", stack)
    assert result is None
    report = out[-1]
    assert field(report, "step").startswith("preflight (build-host-preflight on deploy@"), report
    assert records_since(before) == [], "no build ran"
    return report


def test_a_disk_floor_above_the_free_space_stops_the_update_before_any_build(tmp_path, toolchain, test_host):
    engine, stack = new_local_stack(tmp_path, test_host, hubs=[HUB])
    set_build_setting(engine.work_dir, "minFreeDiskMb", MAX_MB)
    try:
        report = stopped_by_the_preflight(stack)
        assert re.fullmatch(rf"only \d+ MB free under \S+, workhub:build.minFreeDiskMb asks for {MAX_MB} MB; "
                            r"free space on the host \(docker image prune\) or lower workhub:build.minFreeDiskMb",
                            field(report, "reason")), report
    finally:
        stack.destroy(color="never")


# A buildx whose builds fail, as on a host where BuildKit does not work: the Docker CLI finds it in
# the deploy user's ~/.docker/cli-plugins, and the scripts then build with it.
NO_BUILDKIT = """#!/bin/sh
case "$1" in
  docker-cli-plugin-metadata)
    echo '{"SchemaVersion": "0.1.0", "Vendor": "workhub tests", "Version": "v0.0.0", "ShortDescription": "no BuildKit"}'
    exit 0 ;;
esac
[ "$2" = version ] && { echo 'github.com/docker/buildx v0.0.0 stand-in'; exit 0; }
echo 'ERROR: this stand-in for buildx has no BuildKit' >&2
exit 1
"""


def test_no_working_buildkit_stops_the_update_before_any_build(tmp_path, toolchain, test_host):
    engine, stack = new_local_stack(tmp_path, test_host, hubs=[HUB])
    docker_dir = deploy_home() / ".docker"
    made = not docker_dir.exists()
    plugin = docker_dir / "cli-plugins" / "docker-buildx"
    assert not plugin.exists(), f"{plugin} is there already; the test would replace it"
    plugin.parent.mkdir(parents=True, exist_ok=True)
    plugin.write_text(NO_BUILDKIT)
    plugin.chmod(0o755)
    for path in (docker_dir, plugin.parent, plugin):
        shutil.chown(path, "deploy")
    try:
        report = stopped_by_the_preflight(stack)
        assert field(report, "reason").startswith(
            "a BuildKit build with a cache mount FROM node:24-bookworm-slim (workhub:baseImage) does not work on this "
            "host"), report
        assert "ERROR: this stand-in for buildx has no BuildKit" in report, "the check's log is in the report"
    finally:
        shutil.rmtree(docker_dir) if made else plugin.unlink()
        stack.destroy(color="never")


def stack_images(hub: str, stack: str) -> list[str]:
    tags = docker("image", "ls", hub, "--format", "{{.Tag}}").split()
    return [tag for tag in tags if re.fullmatch(rf"{stack}-[0-9a-f]{{12}}", tag)]


@pytest.mark.slow
def test_destroy_removes_what_workhub_put_on_the_host_and_keeps_the_volumes(tmp_path, toolchain, test_host,
                                                                             npm_registry, sources):
    hub = {**HUB, "volumes": {"data": "/app/data"}}
    volume = "workhub-e2e-wbfinhub-data"
    engine, stack = new_local_stack(tmp_path, test_host, npm_registry, hubs=[hub], source_root=sources)
    home = deploy_home() / ".workhub"
    forget_local_images()
    try:
        stack.up(on_output=print_line, color="never")
        mark_version(sources, "WBFinHub", "two")
        stack.up(on_output=print_line, color="never")
        assert len(stack_images("wbfinhub", "e2e")) == 2, "the update leaves the previous image for a rollback"
        assert docker("ps", "--all", "--filter", "name=wbfinhub-e2e", "--format", "{{.Names}}")
        assert list((home / "compose").glob("wbfinhub-e2e-*.yml"))
        assert (home / "contexts" / "e2e" / "wbfinhub").is_dir()

        result, out = reported("destroy", stack)
        assert result is not None, out[-1]
        assert docker("ps", "--all", "--filter", "name=wbfinhub-e2e", "--format", "{{.Names}}") == ""
        assert list((home / "compose").glob("wbfinhub-e2e-*.yml")) == []
        assert "wbfinhub-e2e" not in (home / "compose" / ".env").read_text()
        assert list((home / "env").glob("wbfinhub-e2e-*")) == [] and not (home / "proxy" / "wbfinhub-e2e").exists()
        assert stack_images("wbfinhub", "e2e") == [], "every image of the hub in the stack is gone"
        assert not (home / "contexts" / "e2e" / "wbfinhub").exists()
        assert [d for d in home.glob("builds/wbfinhub-e2e-*") if (d / "context").exists()] == []
        assert list(home.glob("builds/wbfinhub-e2e-*/log")), "the build logs are kept"
        assert docker("volume", "inspect", "--format", "{{.Name}}", volume) == volume, "the volume is kept"

        # The same content again: it was built before, so no word of a failure.
        again = stack.up(on_output=print_line, color="never")
        assert "was built before" in again.stdout and "is no longer on the host" in again.stdout
        assert "the last build of" not in again.stdout
    finally:
        stack.destroy(color="never")
        data.purge(stack, print)
    assert subprocess.run(["/usr/bin/docker", "volume", "inspect", volume], capture_output=True).returncode != 0
