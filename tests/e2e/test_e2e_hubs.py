"""End to end on the test host: the local stack builds the sample hubs one at a time, runs them,
rebuilds only what changed, and reuses the npm cache mount for what did not."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest
from pulumi import automation as auto

from tests.e2e_fixtures import (
    SAMPLE_HUBS,
    break_frontend,
    build_records,
    forget_local_images,
    new_local_stack,
    npm_steps_cached,
    records_since,
    set_build_setting,
)
from workhub import engine as eng
from workhub.engine import print_line

pytestmark = [pytest.mark.e2e]

HUB_NAMES = SAMPLE_HUBS


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


@pytest.mark.slow
def test_local_stack_builds_hubs_in_turn_and_rebuilds_only_what_changed(
    tmp_path, toolchain, test_host, npm_registry, sources
):
    engine, stack = new_local_stack(tmp_path, test_host, npm_registry, source_root=sources)
    forget_local_images()
    try:
        before = len(build_records())
        first = stack.up(on_output=print_line, color="never")
        built = records_since(before)
        assert [r["hub"] for r in built] == HUB_NAMES, "every hub built once, in config order"
        assert all(r["result"] == "succeeded" for r in built)
        for earlier, later in zip(built, built[1:]):
            assert later["start_ms"] >= earlier["end_ms"], f"{later['hub']} started before {earlier['hub']} ended"

        hubs = first.outputs["hubs"].value
        for name in HUB_NAMES:
            status, body = get(hubs[name]["url"] + "/health")
            assert status == 200 and json.loads(body)["hub"] == name
            status, page = get(hubs[name]["url"] + "/")
            assert status == 200 and b"<div id=\"root\">" in page

        again = stack.up(on_output=print_line, color="never")
        assert set(again.summary.resource_changes) == {"same"}, again.summary.resource_changes
        assert records_since(before) == built, "a second up runs no build"

        # One source file changes: only that hub rebuilds, and its npm installs come from the layer cache.
        server = sources / "WBSalesHub" / "server.js"
        server.write_text(server.read_text() + "\n// a source-only change\n")
        preview = stack.preview(diff=True, color="never")
        print(preview.stdout)
        assert preview.change_summary.get("update") == 3, preview.change_summary  # preflight, build, run
        rebuild = preview.stdout[preview.stdout.index("wbsaleshub-build"):]
        assert re.search(r"~ source\s*: \"[0-9a-f]{64}\" => \"[0-9a-f]{64}\"", rebuild), "the preview says why"
        assert "wbhubmanager-build" not in preview.stdout and "wbfinhub-build" not in preview.stdout
        third = stack.up(on_output=print_line, color="never")
        (rebuilt,) = records_since(before)[len(built):]
        assert rebuilt["hub"] == "wbsaleshub"
        assert third.summary.resource_changes.get("update") == 3, third.summary.resource_changes
        log = Path(rebuilt["log"]).read_text()
        assert npm_steps_cached(log) == {"npm ci": True, "npm --prefix frontend ci": True}, log[-3000:]
        status, _ = get(third.outputs["hubs"].value["wbsaleshub"]["url"] + "/health")
        assert status == 200
    finally:
        stack.destroy(on_output=print_line, color="never")


@pytest.mark.slow
def test_an_added_dependency_downloads_only_the_new_packages(tmp_path, toolchain, test_host, npm_registry, sources,
                                                           own_build_cache):
    """Adding one dependency re-runs that hub's npm ci; every other tarball comes from the cache mount.

    The builds reach the registry through a proxy of their own (with no faults), so its counts are
    this test's requests and nobody else's."""
    from tools.faultproxy import running_proxy

    hub = {"name": "wbfinhub", "context": "WBFinHub", "port": 4092, "healthPath": "/health"}
    with running_proxy(npm_registry) as proxy:
        engine, stack = new_local_stack(tmp_path, test_host, proxy.url, hubs=[hub], source_root=sources)
        forget_local_images()
        # An empty build cache, so the first up fills the cache mount with exactly this hub's packages.
        subprocess.run(["/usr/bin/docker", "builder", "prune", "--all", "--force"], capture_output=True, check=True)
        try:
            stack.up(on_output=print_line, color="never")
            context = sources / "WBFinHub"
            subprocess.run(["npm", "install", "--package-lock-only", "--no-audit", "--no-fund",
                            "--registry", npm_registry, "--omit-lockfile-registry-resolved", "left-pad@1.3.0"],
                           cwd=context, check=True)
            fetched_before = dict(proxy.stats.tarballs)
            before = len(build_records())
            stack.up(on_output=print_line, color="never")
            (record,) = records_since(before)
            assert record["hub"] == "wbfinhub" and record["result"] == "succeeded"
            log = Path(record["log"]).read_text()
            # The back end's install runs again (its lockfile changed); the front end's may too, as its
            # layer comes later, but both take every package they already had from the cache mount.
            assert npm_steps_cached(log)["npm ci"] is False, log[-3000:]
            fetched = {key for key, count in proxy.stats.tarballs.items() if count > fetched_before.get(key, 0)}
            assert fetched == {"left-pad@1.3.0"}, fetched
        finally:
            stack.destroy(on_output=print_line, color="never")


def test_heap_larger_than_the_host_stops_before_any_build(tmp_path, toolchain, test_host):
    """The preflight refuses a Node heap the host's memory and swap cannot hold; nothing is built."""
    hub = {"name": "wbfinhub", "context": "WBFinHub", "port": 4092, "healthPath": "/health"}
    engine, stack = new_local_stack(tmp_path, test_host, hubs=[hub])
    set_build_setting(engine.work_dir, "nodeHeapMb", 65536)
    before = len(build_records())
    try:
        with pytest.raises(auto.errors.CommandError) as caught:
            stack.up(color="never")
        message = str(caught.value)
        assert "preflight: FAILED: workhub:build.nodeHeapMb is 65536 MB but the host has" in message
        assert "lower workhub:build.nodeHeapMb in Pulumi.yaml or add swap to the host" in message
        assert records_since(before) == [], "no build ran"
    finally:
        stack.destroy(color="never")


def test_a_non_conforming_dockerfile_fails_the_preview_with_file_line_and_fix(tmp_path, toolchain, test_host, sources):
    """A hub whose Dockerfile lost its cache mount stops `pulumi preview`; nothing is registered."""
    dockerfile = sources / "WBSalesHub" / "Dockerfile"
    lines = dockerfile.read_text().splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines, 1) if "sharing=locked" in line and line.endswith(" npm ci\n"))
    lines[number - 1] = "RUN npm ci\n"
    dockerfile.write_text("".join(lines))
    engine, stack = new_local_stack(tmp_path, test_host, source_root=sources)
    with pytest.raises(auto.errors.CommandError) as caught:
        stack.preview(color="never")
    message = str(caught.value)
    assert f"workhub:hubs[1].dockerfile: {dockerfile}:{number}: `npm ci` runs without the npm cache mount" in message
    assert f"python -m workhub dockerfile conform {dockerfile}" in message
    assert stack.export_stack().deployment.get("resources") in (None, [])


@pytest.mark.slow
def test_a_failing_build_stops_the_chain_and_names_the_hub(tmp_path, toolchain, test_host, npm_registry, sources):
    """The first failing build names its hub with its log tail, once, at the end of what `up`
    prints, with no Python traceback; the hubs after it are not built."""
    break_frontend(sources, "WBSalesHub")
    engine, stack = new_local_stack(tmp_path, test_host, npm_registry, source_root=sources)
    before = len(build_records())
    out: list[str] = []
    try:
        assert eng.run_reported("up", stack, say=out.append, say_failure=out.append) is None
        whole, report = "\n".join(out), out[-1].splitlines()
        assert "Traceback" not in whole
        assert report[:3] == ["workhub: up of stack 'e2e' failed", "  hub: wbsaleshub",
                              f"  step: build (wbsaleshub-build on deploy@127.0.0.1:{test_host['port']}, exit code 1)"]
        reason = report[3]
        assert re.fullmatch(r"  reason: the build of wbsaleshub:e2e-[0-9a-f]{12} ended with status 1", reason), report
        assert whole.count(reason.strip()) == 1, "the reason is said once, at the end"
        assert "      build: attempt 1 failed (exit code 1), and not from the network: not trying again" in report
        assert any("App.tsx" in line for line in report), "the compile error is among the last log lines"
        (log,) = [line.removeprefix("  log on the host: ") for line in report if line.startswith("  log on the host: ")]
        assert log.endswith("/log") and "App.tsx" in Path(log).read_text()
        hubs = [(r["hub"], r["result"]) for r in records_since(before)]
        assert hubs[-1] == ("wbsaleshub", "failed") and "wbfinhub" not in [h for h, _ in hubs], hubs
    finally:
        stack.destroy(color="never")
