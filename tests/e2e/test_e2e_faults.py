"""Builds that survive: two stacks deploying at once, a failing build, registry faults, each on the
real test host (a dropped connection: tests/e2e/test_e2e_interrupts.py)."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from pulumi import automation as auto

from tests.e2e_fixtures import (
    break_frontend,
    build_records,
    deploy_home,
    forget_local_images,
    new_local_stack,
    npm_steps_cached,
    records_since,
    running_image,
    set_build_setting,
)
from components.render.host.deploy import prune_script, status_script
from workhub import engine as eng
from workhub.__main__ import format_status
from workhub.engine import print_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HUB = {"name": "wbhubmanager", "context": "WBHubManager", "port": 4090, "healthPath": "/health"}


def drop_layer_cache() -> None:
    """Old layers go, the npm cache mounts stay: builds run their steps again, quickly."""
    for kind in ("regular", "source.local"):
        subprocess.run(["/usr/bin/docker", "builder", "prune", "--all", "--force", "--filter", f"type={kind}"],
                       capture_output=True, check=True)


def in_background(target) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = target()
        except Exception as error:  # the test looks at it
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def session_processes(host_state: Path) -> list[int]:
    """The sshd processes serving the test host's open connections (the listener's descendants
    named sshd): killing them drops every connection, as a network failure would."""
    main = int((host_state / "testhost" / "sshd.pid").read_text())
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, rest = stat.split("(", 1)[1].rsplit(")", 1)
            parents[int(entry.name)], names[int(entry.name)] = int(rest.split()[1]), name

    def under_main(pid: int) -> bool:
        while pid in parents and pid != main:
            pid = parents[pid]
        return pid == main

    return [pid for pid, name in names.items() if pid != main and name == "sshd" and under_main(pid)]


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status


def test_two_stacks_deploying_at_once_never_build_at_the_same_time(tmp_path, toolchain, test_host, npm_registry, sources):
    stacks = []
    for name in ("e2e-a", "e2e-b"):
        (tmp_path / name).mkdir()
        stacks.append(new_local_stack(tmp_path / name, test_host, npm_registry, hubs=[HUB], source_root=sources,
                                      name=name)[1])
    forget_local_images()
    drop_layer_cache()
    before = len(build_records())
    outputs: dict[str, list[str]] = {"e2e-a": [], "e2e-b": []}
    try:
        runs = [in_background(lambda s=s: s.up(on_output=outputs[s.name].append, color="never")) for s in stacks]
        for thread, outcome in runs:
            thread.join(600)
            assert "result" in outcome, outcome.get("error")
        built = sorted(records_since(before), key=lambda r: r["start_ms"])
        assert sorted(r["stack"] for r in built) == ["e2e-a", "e2e-b"]
        assert built[1]["start_ms"] >= built[0]["end_ms"], "the second build started before the first ended"
        waited = "".join(outputs[built[1]["stack"]])
        assert f"waiting for the build lock, held by wbhubmanager of stack {built[0]['stack']}" in waited
    finally:
        for stack in stacks:
            stack.destroy(color="never")


def test_a_failed_build_leaves_the_previous_container_serving(tmp_path, toolchain, test_host, npm_registry, sources):
    engine, stack = new_local_stack(tmp_path, test_host, npm_registry, hubs=[HUB], source_root=sources)
    try:
        first = stack.up(color="never")
        url = first.outputs["hubs"].value["wbhubmanager"]["url"]
        image = first.outputs["hubs"].value["wbhubmanager"]["image"]
        break_frontend(sources, "WBHubManager")
        with pytest.raises(auto.errors.CommandError) as caught:
            stack.up(color="never")
        assert "step: build (wbhubmanager-build on deploy@" in str(caught.value)
        assert get(url + "/health") == 200
        running = running_image("wbhubmanager", "e2e")
        assert running == image, "the container still runs the image that last built"
        assert json.loads(urllib.request.urlopen(url + "/health", timeout=10).read())["hub"] == "wbhubmanager"

        # The status command tells the same story: the old image serving with the log of the build
        # that made it, and the failed build of the new one apart, with its own log.
        config = eng.stack_config(stack)[0]
        out = eng.on_host(stack, lambda c: status_script(stack.name, c.hubs, c.host_ports, c.publish_address),
                          "status", log=lambda line: None)
        (row,) = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert (row["hub"], row["image"], row["health"], row["build"]) == ("wbhubmanager", image, "ok", "succeeded")
        assert row["log"].endswith(f"/wbhubmanager-e2e-{image.rsplit('-', 1)[1]}/log"), row
        assert row["last_attempt"] == "failed" and row["last_image"] != image, row
        assert row["last_log"].endswith(f"/wbhubmanager-e2e-{row['last_image'].rsplit('-', 1)[1]}/log"), row
        assert config.hubs[0].name == "wbhubmanager"
        table = format_status([row])
        assert f"failed: {row['last_image']} (log {row['last_log']})" in table

        # Prune always keeps the running image; with --keep 0, nothing else of this stack.
        subprocess.run(["/usr/bin/docker", "tag", image, "wbhubmanager:e2e-000000000000"], check=True)
        eng.on_host(stack, lambda c: prune_script(stack.name, c.hubs, 0, False), "prune")
        tags = subprocess.run(["/usr/bin/docker", "image", "ls", "wbhubmanager", "--format", "{{.Tag}}"],
                              capture_output=True, text=True, check=True).stdout.split()
        assert image.split(":")[1] in tags and "e2e-000000000000" not in tags
    finally:
        stack.destroy(color="never")


# A tarball WBHubManager's root `npm ci` downloads; the proxy cuts its first download.
CUT_TARBALL = "express@5.3.0"


def test_a_deploy_succeeds_while_a_few_percent_of_registry_requests_fail(
    tmp_path, toolchain, test_host, npm_registry, sources, own_build_cache
):
    """Resets and 503 answers on 3% of tarball requests (npm retries those itself), and the first
    download of one tarball cut short, which npm does not retry: workhub's own retry does, inside
    the install's step (`eval "$WORKHUB_RETRY" npm ci`, the retry given as a BuildKit secret). The build's log shows it: the step's first
    `npm ci` failed from the network and the next one, in the same step, succeeded, in the build's
    first attempt."""
    from tools.faultproxy import Faults, running_proxy

    faults = Faults(reset=0.015, status_5xx=0.015, cut_first=(CUT_TARBALL,))
    with running_proxy(npm_registry, faults, seed=20261129) as proxy:
        engine, stack = new_local_stack(tmp_path, test_host, proxy.url, hubs=[HUB], source_root=sources)
        forget_local_images()
        # A cold build: an empty npm cache mount, so every tarball goes through the faulty proxy.
        subprocess.run(["/usr/bin/docker", "builder", "prune", "--all", "--force"], capture_output=True, check=True)
        before = len(build_records())
        try:
            result = stack.up(on_output=print_line, color="never")
            assert result.summary.result == "succeeded"
            assert proxy.stats.tarball_requests > 100, "the build fetched through the proxy"
            assert proxy.stats.faults["reset"] + proxy.stats.faults["status_5xx"] > 0, "faults were drawn"
            cut = [e["target"] for e in proxy.stats.fault_events if e["kind"] == "cut"]
            assert len(cut) == 1 and "/express-5.3.0.tgz" in cut[0], proxy.stats.fault_events
            assert proxy.stats.tarballs[CUT_TARBALL] >= 2, "the cut tarball was downloaded again"

            (record,) = [r for r in records_since(before) if r["hub"] == "wbhubmanager"]
            print(f"faults injected: {proxy.stats.faults}; build attempts: {record['attempts']}")
            assert record["result"] == "succeeded" and record["attempts"] == 1, record
            log = Path(record["log"]).read_text()
            assert "ECONNRESET" in log or "aborted" in log, log[-2000:]
            assert re.search(r"workhub: try 1 of npm ci failed from the network; it stored \d+ new files in the npm "
                             r"cache, so it is free; trying again in 0 s", log), log[-3000:]
            assert "build: attempt 1 failed" not in log, "no new build try"
            assert "build: succeeded after 1 attempt(s)" in log
            # The retry came as its secret: the step's name shows the file it runs, not its program.
            assert "sh /run/secrets/workhub-retry" in log and "wr_pattern" not in log, log[-3000:]
            assert get(result.outputs["hubs"].value["wbhubmanager"]["url"] + "/health") == 200
        finally:
            stack.destroy(color="never")


def test_webhook_notices_and_cache_collection_that_keeps_the_npm_cache(
    tmp_path, toolchain, test_host, npm_registry, sources
):
    """Each build's success and failure reach the webhook; the preflight's cache collection drops
    old layers but never the npm cache mount, so a rebuild downloads nothing."""
    import http.server

    from tools.faultproxy import running_proxy

    notices: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            notices.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with running_proxy(npm_registry) as proxy:
        engine, stack = new_local_stack(tmp_path, test_host, proxy.url, hubs=[HUB], source_root=sources)
        set_build_setting(engine.work_dir, "cacheKeepStorageMb", 0)
        engine.set_secret(stack.name, "workhub:notifyWebhook", f"http://127.0.0.1:{server.server_port}/hook")
        before = len(build_records())
        try:
            stack.up(color="never")
            assert [(n["command"], n["result"]) for n in notices] == [("wbhubmanager-build", "succeeded")]
            assert json.loads(notices[0]["detail"])["image"].startswith("wbhubmanager:e2e-")

            server_js = sources / "WBHubManager" / "server.js"
            server_js.write_text(server_js.read_text() + "\n// changed\n")
            fetched = proxy.stats.tarball_requests
            stack.up(color="never")
            rebuilt = records_since(before)[-1]
            log = Path(rebuilt["log"]).read_text()
            assert npm_steps_cached(log)["npm ci"] is False, "the collection dropped the install's layer"
            assert proxy.stats.tarball_requests == fetched, "the npm cache mount survived the collection"
            assert notices[-1]["result"] == "succeeded"

            break_frontend(sources, "WBHubManager")
            with pytest.raises(auto.errors.CommandError):
                stack.up(color="never")
            assert notices[-1]["command"] == "wbhubmanager-build" and notices[-1]["result"] == "failed"
            assert "step: build (wbhubmanager-build on deploy@" in notices[-1]["detail"]
        finally:
            stack.destroy(color="never")
            server.shutdown()
