"""The benchmark report: docs/benchmarks.md is exactly what `python bench/render.py` renders from the
committed results files, for every benchmark that writes a section; success is a count with its
Wilson interval; each run states its budget and skipped builds, where its installs ran and with
which npm; fault kinds are reported apart; the docker runner builds the hub's own install steps."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
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
    listed = {render.NPM_FAULTS_MAIN, render.DEPLOYS, render.NOOP_UP, *(path for path, _, _ in render.NPM_FAULTS_ALSO)}
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
                             npm_version="10.8.2 (in node:20-bookworm-slim)"), name="The other run", path="bench/o.json")
    main["also"] = [other]
    text = npm_faults.render(main)
    assert "| Main run (2026-12-01 12:00 UTC) | `bench/x.json` | outside Docker | 11.0.0 (this machine's) | 30 min | 10 | 6 | 4 |" in text
    assert ("| The other run (2026-12-01 12:00 UTC) | `bench/o.json` | BuildKit builds of the Dockerfile | "
            "10.8.2 (in node:20-bookworm-slim) | 30 min | 30 | 1 | 29 |") in text


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
        "reset": 0.0, "stall": 0.0, "stall_seconds": 12.0, "cut": 0.1, "status_5xx": 0.0, "cut_first": ()}
    mix = npm_faults.faults_for(3, ctx)
    assert mix.reset == mix.cut == mix.stall == pytest.approx(0.01)


def test_the_docker_runner_builds_the_hubs_own_install_steps():
    hub = (REPO / "examples" / "WBFinHub" / "Dockerfile").read_text()
    text = npm_faults.install_dockerfile(hub, "workhub-bench-c-4000")
    lines = text.splitlines()
    assert lines[0] == "# syntax=docker/dockerfile:1" and lines[1] == "FROM node:20-bookworm-slim"
    assert lines[-1] == "RUN --mount=type=cache,id=workhub-bench-c-4000,target=/root/.npm,sharing=locked npm --prefix frontend ci"
    assert "RUN --mount=type=cache,id=workhub-bench-c-4000,target=/root/.npm,sharing=locked npm ci" in lines
    assert "COPY . ." not in lines and "ARG WORKHUB_BENCH_BUILD" in lines[2:8]
    assert any(line.startswith("RUN --mount=type=cache,id=workhub-bench-c-4000,") and "-exec rm -rf" in line for line in lines[2:9])
    # Besides the benchmark's own lines, the hub's Dockerfile up to its last install, in order.
    ours = {f"ARG {name}" for name in (*npm_faults.COMMON_BUILD_ARGS, "WORKHUB_BENCH_BUILD")}
    theirs = [line.replace("id=workhub-bench-c-4000,", "") for line in lines if line not in ours and "-exec rm" not in line]
    upto = hub.splitlines()
    assert theirs == upto[:upto.index(lines[-1].replace("id=workhub-bench-c-4000,", "")) + 1]
    fresh = npm_faults.install_dockerfile(hub, "workhub-bench-c-7", empty_first=False)
    assert "rm -rf" not in fresh and "id=workhub-bench-c-7,target=/root/.npm,sharing=locked npm ci" in fresh
    no_cache = npm_faults.install_dockerfile(hub, None)
    assert "--mount" not in no_cache and "RUN npm ci" in no_cache.splitlines()


def test_the_docker_runner_passes_the_setups_settings_as_build_args():
    s = npm_faults.make_setups({var: "0" for var in npm_faults.NPM_KEYS.values()})["C"]
    env = {**s.scaled_env(10.0), "NPM_CONFIG_REGISTRY": "http://127.0.0.1:4000/", "NPM_CONFIG_USERCONFIG": "/x"}
    argv = npm_faults.docker_build_argv(s, env, "c-7", Path("/ctx"))
    assert argv[:4] == ["/usr/bin/docker", "build", "--progress=plain", "--network=host"] and argv[-1] == "/ctx"
    args = dict(argv[i + 1].split("=", 1) for i, w in enumerate(argv) if w == "--build-arg")
    assert args["NPM_CONFIG_FETCH_TIMEOUT"] == "3000" and args["NPM_CONFIG_REGISTRY"] == "http://127.0.0.1:4000/"
    assert args["WORKHUB_BENCH_BUILD"] == "c-7" and args["NPM_CONFIG_AUDIT"] == "false"
    assert "NPM_CONFIG_USERCONFIG" not in args, "a path of this machine means nothing in a build"


@pytest.mark.parametrize("line, step", [
    ("failed to solve: executor failed running [/bin/sh -c npm --prefix frontend ci]: exit code: 1", "frontend"),
    ("failed to solve: executor failed running [/bin/sh -c npm ci]: exit code: 1", "root"),
    ('ERROR: process "/bin/sh -c npm --prefix frontend ci" did not complete successfully: exit code: 1', "frontend"),
])
def test_the_docker_runner_tells_which_step_failed(line, step):
    assert npm_faults.docker_failed_step(f"#12 [5/8] RUN npm ci\n#12 DONE 3.0s\n{line}\n") == step
