"""The benchmark report: docs/benchmarks.md is exactly what `python bench/render.py` renders from the
committed results files, for every benchmark that writes a section; success is a count with its
Wilson interval; each run states its budget and skipped builds, where its installs ran and with
which npm; fault kinds are reported apart; the docker runner builds the hub's own install steps."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "bench"))

import npm_faults  # noqa: E402
import render  # noqa: E402


def test_docs_benchmarks_md_is_what_the_render_command_makes():
    """A hand-edited figure in docs/benchmarks.md fails here: render it with `python bench/render.py`."""
    assert (REPO / "docs" / "benchmarks.md").read_text() == render.page()
    assert render.main(["--check"]) == 0


def test_the_render_covers_every_benchmark_that_writes_a_section():
    written = {name for path in (REPO / "bench").glob("*.py")
               for name in re.findall(r'write_section\([^)]*?"([\w-]+)"', path.read_text())}
    assert written and written <= {name for name, _ in render.sections()}
    page = render.page()
    for name in written:
        assert page.count(f"<!-- bench:{name} -->") == 1 and page.count(f"<!-- /bench:{name} -->") == 1


def test_every_results_file_is_in_the_report():
    listed = {render.NPM_FAULTS_MAIN, render.DEPLOYS, render.NOOP_UP, render.SWARM, *(path for path, _, _ in render.NPM_FAULTS_ALSO)}
    committed = {f"bench/{path.name}" for path in (REPO / "bench").glob("results*.json")}
    assert committed == listed


@pytest.mark.parametrize("k, n, low, high", [
    (8, 10, 0.4902, 0.9433),      # Wilson (1927) interval, as tabulated by Newcombe (1998), 95%
    (0, 10, 0.0, 0.2775),
    (20, 20, 20 / (20 + 1.96 ** 2), 1.0),
    (66, 70, 0.8624, 0.9775),
])
def test_wilson_interval(k, n, low, high):
    lo, hi = npm_faults.wilson(k, n)
    assert lo == pytest.approx(low, abs=5e-4) and hi == pytest.approx(high, abs=5e-4)


def test_showing_99_percent_takes_hundreds_of_clean_runs():
    n = npm_faults.runs_to_show(0.99)
    assert npm_faults.wilson(n, n)[0] >= 0.99 > npm_faults.wilson(n - 1, n - 1)[0]


def setups() -> dict:
    import dataclasses

    defaults = {var: "0" for var in npm_faults.NPM_KEYS.values()}
    return {k: dataclasses.asdict(s) for k, s in npm_faults.make_setups(defaults).items()}


def build(setup: str, level: float, ok: bool, tries: int = 1, fault_kind: str | None = None, **faults) -> dict:
    record = {"setup": setup, "level_pct": level, "kind": "cold", "seed": 1, "ok": ok, "wall_s": 10.0,
              "tries": tries, "tries_detail": [], "reason": "" if ok else "root: ECONNRESET",
              "requests": 700, "tarball_requests": 350, "bytes": 75_000_000,
              "faults": {"reset": 0, "stall": 0, "cut": 0, "status_5xx": 0, **faults}}
    if fault_kind:
        record["fault_kind"] = fault_kind
    return record


def results_doc(results: list[dict], levels: list[float], planned: int, skipped: int, **config) -> dict:
    machine = {"nproc": "2", "cpu": "x", "memory": "1 GiB", "os": "Debian", "kernel": "6", "node": "v20",
               "npm": "11.0.0", "python": "3.11", "verdaccio": "6.8.0", "load_at_start": [1.0, 1.0, 1.0]}
    cfg = {"setup_keys": ["A", "B", "C"], "levels": levels, "scale": 10.0, "stall_s": 120.0, "status_5xx_share": 0.0,
           "jobs": 2, "base_seed": 1, "hub_name": "WBFinHub", "json": "bench/x.json", "budget_minutes": 30.0,
           "planned": planned, "skipped": skipped, "workdir_kind": "/dev/shm (tmpfs)", "tarballs_hint": "402 entries",
           "setups": setups(), **config}
    return {"date": "2026-12-01 12:00 UTC", "elapsed_min": 30.0, "machine": machine, "config": cfg, "rows": [],
            "solo": [], "results": results}


def test_success_is_a_count_with_its_interval_never_a_verdict():
    doc = results_doc([build("C", 3.0, True, 2, cut=1)] * 20 + [build("A", 3.0, False, cut=1)] * 4, [3.0], 24, 0)
    text = npm_faults.render(doc)
    assert "20/20 (95% Wilson interval 83.9%-100.0%) cold builds of workhub's defaults (C) succeeded" in text
    assert "| C: workhub's defaults | 3% mix | 20/20 | 83.9% - 100.0% |" in text
    assert "at least 99%" not in text and "99% would take 381 builds without a failure" in text
    assert "| B: the PRD's settings | 3% mix | not run | n/a |" in text


def test_each_run_states_its_budget_its_skipped_builds_and_its_npm():
    main = results_doc([build("C", 0.0, True)] * 6, [0.0], 10, 4)
    other = dict(results_doc([build("C", 10.0, True, fault_kind="reset")], [10.0], 30, 29, runner="docker",
                             npm_version="10.8.2 (in node:24-bookworm-slim)"), name="The other run", path="bench/o.json")
    main["also"] = [other]
    text = npm_faults.render(main)
    assert "| Main run (2026-12-01 12:00 UTC) | `bench/x.json` | outside Docker | 11.0.0 (this machine's) | 30 min | 10 | 6 | 4 |" in text
    assert ("| The other run (2026-12-01 12:00 UTC) | `bench/o.json` | BuildKit builds of the Dockerfile | "
            "10.8.2 (in node:24-bookworm-slim) | 30 min | 30 | 1 | 29 |") in text


def test_fault_kinds_are_reported_apart():
    results = ([build("C", 10.0, True, 1, "reset", reset=35)] * 2 + [build("C", 10.0, True, 3, "cut", cut=4)] * 3
               + [build("C", 10.0, False, 1, "stall", stall=30)])
    text = npm_faults.render(results_doc(results, [10.0], 6, 0, setup_keys=["C"]))
    assert "| C: workhub's defaults | 10% reset | 2/2 | 34.2% - 100.0% | 10.0 s | 2 x 1 | 35.0 / 0.0 / 0.0 / 0.0 |" in text
    assert "| C: workhub's defaults | 10% cut | 3/3 | 43.8% - 100.0% | 10.0 s | 3 x 3 | 0.0 / 4.0 / 0.0 / 0.0 |" in text
    assert "| C: workhub's defaults | 10% stall | 0/1 | 0.0% - 79.3% | n/a | 1 x 1 | 0.0 / 0.0 / 30.0 / 0.0 |" in text


def test_a_cell_of_one_fault_kind_injects_only_that_kind():
    ctx = npm_faults.Ctx("http://127.0.0.1:9/", REPO, REPO, 10.0, 120.0, 0.0, {}, {})
    assert npm_faults.faults_for(10, ctx, "cut").as_dict() == {
        "reset": 0.0, "stall": 0.0, "stall_seconds": 12.0, "cut": 0.1, "status_5xx": 0.0, "cut_first": (),
        "stall_first": ()}
    mix = npm_faults.faults_for(3, ctx)
    assert mix.reset == mix.cut == mix.stall == pytest.approx(0.01)


def test_the_docker_runner_builds_the_hubs_own_install_steps():
    hub = (REPO / "examples" / "WBFinHub" / "Dockerfile").read_text()
    text = npm_faults.install_dockerfile(hub, "workhub-bench-c-4000")
    lines = text.splitlines()
    assert lines[0] == "# syntax=docker/dockerfile:1" and lines[1] == "FROM node:24-bookworm-slim"
    assert lines[-1] == ('RUN --mount=type=cache,id=workhub-bench-c-4000,target=/root/.npm,sharing=locked '
                         'eval "$WORKHUB_RETRY" npm --prefix frontend ci')
    assert ('RUN --mount=type=cache,id=workhub-bench-c-4000,target=/root/.npm,sharing=locked '
            'eval "$WORKHUB_RETRY" npm ci') in lines
    assert "COPY . ." not in lines and "ARG WORKHUB_BENCH_BUILD" in lines[2:8]
    assert any(line.startswith("RUN --mount=type=cache,id=workhub-bench-c-4000,") and "-exec rm -rf" in line for line in lines[2:9])
    # Besides the benchmark's own lines, the hub's Dockerfile up to its last install, in order.
    ours = {f"ARG {name}" for name in (*npm_faults.COMMON_BUILD_ARGS, "WORKHUB_BENCH_BUILD")}
    theirs = [line.replace("id=workhub-bench-c-4000,", "") for line in lines if line not in ours and "-exec rm" not in line]
    upto = hub.replace(" --mount=type=secret,id=workhub-retry,mode=0444", "").splitlines()  # the retry is a build arg
    assert theirs == upto[:upto.index(lines[-1].replace("id=workhub-bench-c-4000,", "")) + 1]
    fresh = npm_faults.install_dockerfile(hub, "workhub-bench-c-7", empty_first=False)
    assert "rm -rf" not in fresh and 'id=workhub-bench-c-7,target=/root/.npm,sharing=locked eval "$WORKHUB_RETRY" npm ci' in fresh
    no_cache = npm_faults.install_dockerfile(hub, None)
    assert "--mount" not in no_cache and 'RUN eval "$WORKHUB_RETRY" npm ci' in no_cache.splitlines()


def test_the_docker_runner_passes_the_setups_settings_as_build_args():
    s = npm_faults.make_setups({var: "0" for var in npm_faults.NPM_KEYS.values()})["C"]
    env = {**s.scaled_env(10.0), "NPM_CONFIG_REGISTRY": "http://127.0.0.1:4000/", "NPM_CONFIG_USERCONFIG": "/x"}
    argv = npm_faults.docker_build_argv(s, env, "c-7", Path("/ctx"))
    assert argv[:4] == ["/usr/bin/docker", "build", "--progress=plain", "--network=host"] and argv[-1] == "/ctx"
    args = dict(argv[i + 1].split("=", 1) for i, w in enumerate(argv) if w == "--build-arg")
    assert args["NPM_CONFIG_FETCH_TIMEOUT"] == "500" and args["NPM_CONFIG_REGISTRY"] == "http://127.0.0.1:4000/"
    assert args["WORKHUB_BENCH_BUILD"] == "c-7" and args["NPM_CONFIG_AUDIT"] == "false"
    assert "NPM_CONFIG_USERCONFIG" not in args, "a path of this machine means nothing in a build"
    # workhub's install retry goes in as it renders, its pause scaled like the runner's
    assert args["WORKHUB_RETRY"].startswith("wr_tries=3; wr_max=10; wr_pause=1; ")
    assert args["WORKHUB_RETRY"].endswith('workhub_retry "$@"')


def test_the_previous_defaults_run_beside_workhubs_without_the_install_retry():
    setups = npm_faults.make_setups({var: "0" for var in npm_faults.NPM_KEYS.values()})
    previous, current = setups["P"], setups["C"]
    assert "WORKHUB_RETRY" not in previous.npm_env and "WORKHUB_RETRY" in current.npm_env
    assert previous.npm_env["NPM_CONFIG_FETCH_TIMEOUT"] == "30000"
    assert (previous.attempts, previous.backoff_s) == (current.attempts, current.backoff_s) == (5, 10.0)


def test_the_projects_settings_before_issue_22_are_todays_retry_with_the_previous_npm_settings():
    setups = npm_faults.make_setups({var: "0" for var in npm_faults.NPM_KEYS.values()})
    before, current, previous = setups["Y"], setups["C"], setups["P"]
    assert before.npm_env["WORKHUB_RETRY"] == current.npm_env["WORKHUB_RETRY"]
    assert {k: v for k, v in before.npm_env.items() if k != "WORKHUB_RETRY"} == previous.npm_env
    assert (before.attempts, before.backoff_s) == (current.attempts, current.backoff_s)


@pytest.mark.parametrize("line, step", [
    ("failed to solve: executor failed running [/bin/sh -c npm --prefix frontend ci]: exit code: 1", "frontend"),
    ("failed to solve: executor failed running [/bin/sh -c npm ci]: exit code: 1", "root"),
    ('ERROR: process "/bin/sh -c npm --prefix frontend ci" did not complete successfully: exit code: 1', "frontend"),
])
def test_the_docker_runner_tells_which_step_failed(line, step):
    assert npm_faults.docker_failed_step(f"#12 [5/8] RUN npm ci\n#12 DONE 3.0s\n{line}\n") == step


# bench/swarm_scaling.py: its pure parts

import swarm_scaling  # noqa: E402

WRK_OUT = """Running 10s test @ http://10.213.37.11:24191/health
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.01ms    2.10ms  41.20ms   90.00%
  5012 requests in 10.00s, 1.50MB read
  Non-2xx or 3xx responses: 3
Requests/sec:    501.20
WRK_JSON {"requests": 5012, "duration_us": 10000000, "bytes": 1572864, "connect": 0, "read": 1, "write": 0, "status": 3, "timeout": 0, "p50_us": 3500, "p90_us": 6000, "p99_us": 12250, "max_us": 41200}
"""


def test_wrk_output_is_read_from_its_report_line():
    found = swarm_scaling.parse_wrk(WRK_OUT)
    assert found["requests"] == 5012 and found["seconds"] == 10.0
    assert found["rps"] == pytest.approx(500.9), "requests per second count the answers of 2xx/3xx only"
    assert found["errors"] == {"connect": 0, "read": 1, "write": 0, "status": 3, "timeout": 0}
    assert found["failed"] == 4, "a non-2xx answer is a failed request"
    assert (found["p50_ms"], found["p99_ms"], found["max_ms"]) == (3.5, 12.25, 41.2)
    with pytest.raises(ValueError, match="no WRK_JSON line"):
        swarm_scaling.parse_wrk("Running 10s test @ http://x/\n")


def test_wrk_reports_through_its_done_hook():
    assert "done = function(summary, latency, requests)" in swarm_scaling.WRK_REPORT
    assert "latency:percentile(99)" in swarm_scaling.WRK_REPORT and "WRK_JSON" in swarm_scaling.WRK_REPORT
    argv = swarm_scaling.wrk_argv("http://10.0.0.1:1/health", 10, 8, "/tmp/r.lua")
    assert argv[0] == "wrk" and argv[-1] == "http://10.0.0.1:1/health" and "--script" in argv


def test_proxies_loaded_at_once_add_up():
    a = dict(swarm_scaling.parse_wrk(WRK_OUT))
    b = dict(a, rps=300.0, requests=3000, failed=0, p50_ms=2.0, p99_ms=20.0)
    both = swarm_scaling.combine_wrk([a, b])
    assert both["rps"] == pytest.approx(800.9) and both["requests"] == 8012 and both["failed"] == 4
    assert (both["p50_ms"], both["p99_ms"]) == (3.5, 20.0) and both["per_proxy"] == [a, b]


def test_a_cell_is_its_median_and_spread():
    assert swarm_scaling.spread([3.0, 1.0, 2.0, 10.0]) == {"n": 4, "median": 2.5, "min": 1.0, "max": 10.0}
    assert swarm_scaling.spread([]) is None


def test_cells_are_interleaved_turning_around_each_repeat():
    assert swarm_scaling.interleaved(["a", "b"], 3) == ["a", "b", "b", "a", "a", "b"]
    plan = swarm_scaling.interleaved(["a", "b"], 4)
    assert plan.count("a") == plan.count("b") == 4


def test_each_hubs_data_is_on_one_node():
    hubs = ["h1", "h2", "h3"]
    assert swarm_scaling.data_labels(hubs, 3) == [["h1"], ["h2"], ["h3"]]
    assert swarm_scaling.data_labels(hubs, 1) == [["h1", "h2", "h3"]]


def bench_bed() -> dict:
    from tests.unit.config.test_swarm_config import KEYS

    return {"user": "deploy", "nodes": [{"name": f"node{n}", "address": f"10.213.37.{10 + n}", "port": 22,
                                         "host_public_key": KEYS[n - 1]} for n in (1, 2, 3)],
            "registry": {"server": "10.213.37.1:5000", "username": "workhub-ci"},
            "hub_images": {"proxy": "10.213.37.1:5000/workhub/haproxy:2.6"}}


@pytest.mark.parametrize("nodes", [1, 3])
def test_the_benchmarks_stack_is_a_valid_swarm_stack(nodes):
    """The sample hubs as Pulumi.yaml declares them, each pinned to a node by its data label, on 1 or
    3 nodes; and the stateless hub of the rps cells takes 3 replicas."""
    from components.config.parse import parse_stack_config
    from workhub import engine as eng

    hubs = eng.project_hubs(REPO)
    secrets = {hub["name"]: {name: "x" for name in hub["secrets"]} for hub in hubs}
    raw = swarm_scaling.stack_raw(bench_bed(), hubs, nodes, {}, secrets, "key", "pw")
    config = parse_stack_config(raw, stack="bench", secret_keys={"sshPrivateKey", "secrets", "registryPassword"})
    assert [node.name for node in config.swarm.nodes] == [f"node{n}" for n in range(1, nodes + 1)]
    assert config.swarm.managers == [node.name for node in config.swarm.nodes]
    assert {config.swarm.data_node(hub.name).name for hub in config.hubs} == {f"node{n}" for n in range(1, nodes + 1)}
    assert all(node.labels.serve for node in config.swarm.nodes)
    assert all(hub.build_mode == "registry" for hub in config.hubs)
    stateless = [{k: v for k, v in hub.items() if k != "volumes"} for hub in hubs if hub["name"] == "wbsaleshub"]
    raw = swarm_scaling.stack_raw(bench_bed(), stateless, 3, {"wbsaleshub": 3}, secrets, "key", "pw")
    config = parse_stack_config(raw, stack="bench", secret_keys={"sshPrivateKey", "secrets", "registryPassword"})
    assert config.swarm.hub("wbsaleshub").replicas == 3


def swarm_doc(skipped: list[str]) -> dict:
    machine = {"nproc": "2", "cpu": "x", "memory": "8 GiB", "os": "Debian", "kernel": "6", "load_at_start": [1.0, 1.0, 1.0]}
    tasks = {"wbhubmanager": ["node1"], "wbsaleshub": ["node2"], "wbfinhub": ["node3"]}

    def deploy(cell, seconds):
        return {"cell": cell, "converged_s": seconds, "answering_s": seconds + 1, "tasks": tasks, "load": 2.0}

    def rps(cell, rate, failed=0):
        run = {"rps": rate / 3, "requests": 100, "failed": failed // 3, "errors": {"status": failed // 3, "read": 0},
               "p50_ms": 2.0, "p99_ms": 9.0}
        return {"cell": cell, "rps": rate, "requests": 300, "failed": failed, "p50_ms": 2.0, "p99_ms": 9.0,
                "per_proxy": [run] * 3, "load": 2.0, "tasks": ["node3"] if cell == "rps-1" else ["node1", "node2", "node3"]}

    cells = [deploy("deploy-1", 20.0), deploy("deploy-3", 30.0), deploy("deploy-3", 26.0), deploy("deploy-1", 22.0),
             rps("rps-1", 400.0, failed=6), rps("rps-3", 600.0), rps("rps-3", 500.0), rps("rps-1", 500.0)]
    return {"started": "2026-12-01 17:00 UTC", "minutes": 10.0, "machine": machine, "docker": "26.1.5",
            "wrk_version": "4.1.0", "build_seconds": 12.0, "path": "bench/results-swarm.json", "skipped": skipped,
            "warmup": {"converged_s": 40.0, "answering_s": 41.0}, "cells": cells,
            "config": {"repeats": 2, "seconds": 10.0, "connections": 8, "warmup_seconds": 2.0, "path": "/health",
                       "budget_minutes": 9.0}}


def test_the_swarm_report_gives_medians_spreads_ratios_and_what_it_skipped():
    text = swarm_scaling.render(swarm_doc(["deploy-1"]))
    assert "| 1 node | 21.0 s (20.0 - 22.0, n=2) | 22.0 s (21.0 - 23.0, n=2) |" in text
    assert "| 3 nodes | 28.0 s (26.0 - 30.0, n=2) | 29.0 s (27.0 - 31.0, n=2) |" in text
    assert "3 nodes / 1 node, medians to every proxy answering: 1.32." in text
    assert "this stack's 4 services (the hubs and the proxy) take at least 20 s" in text
    assert "| 1 replica | 450 (400 - 500, n=2) | 6 of 600 (status 6) | 2.0 | 9.0 | node3 |" in text
    assert "| 3 replicas | 550 (500 - 600, n=2) | 0 of 600 | 2.0 | 9.0 | node1, node2, node3 |" in text
    assert "Scaling ratio (3 replicas / 1 replica): 1.22 from the medians; per repeat 1.50, 1.00" in text
    assert "Skipped for the budget: deploy-1." in text
    assert "sharing its 2 CPUs" in text and "not through `pulumi up`" in text
    assert "wrk 4.1.0" in text
    assert "Skipped for the budget: none." in swarm_scaling.render(swarm_doc([]))
