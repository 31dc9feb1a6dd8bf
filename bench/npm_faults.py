#!/usr/bin/env python3
"""Deploy success under injected registry faults: three ways of installing a hub's dependencies.

Run on demand (not a test): ``python bench/npm_faults.py --out docs/benchmarks.md``; see
bench/README.md. A deploy fails where a hub's Docker build installs its dependencies, so this
benchmark runs exactly that phase of one sample hub (``npm ci``, then ``npm --prefix frontend ci``,
as in the hub's Dockerfile) through ``tools/faultproxy.py`` in front of the local verdaccio registry
(``scripts/registry.sh``), once per build and with a fresh seed per build: with this machine's npm
(``--runner host``), or inside a BuildKit build of the hub's Dockerfile up to its last install, with
its base image's npm and its cache mounts (``--runner docker``). The report is
``bench/render.py``'s, from the results files (``--json``). The setups:

- A "no cache mount, npm defaults": every build starts with an empty npm cache, npm's default
  fetch settings, one try.
- B "the PRD's settings": an npm cache that persists across builds (the cache mount),
  fetch-timeout 120000, fetch-retry-mintimeout 20000, fetch-retry-maxtimeout 120000, npm's
  default prefer mode, one try (the PRD's sequential script stops at the first failure).
- C "workhub's defaults": the persisting cache, the npm settings workhub passes into builds
  (``components.render.host.build.build_args`` with the default ``BuildSettings()``), and workhub's
  build-level retry: up to ``BuildSettings().attempts`` tries, a pause of ``retry_backoff_seconds
  * try`` before the next, only when the failed try's output matches the runner's ``transient()``
  (run from the text of ``components.render.host.build._RUNNER`` itself). A step that succeeded in an
  earlier try is not run again, as BuildKit's layer cache would skip it.

Times are scaled down (``--scale``, 10 by default) so runs finish: each setup's fetch-timeout and
fetch-retry-min/maxtimeout, the stall length and workhub's retry pause are divided by it.
Nothing leaves 127.0.0.1; every loop is bounded; each npm step has a hard time limit.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime as dt
import json
import math
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine_info, write_section  # noqa: E402
from components.config.models import BuildSettings  # noqa: E402
from components.render.host import build as workhub_scripts  # noqa: E402
from faultproxy import Faults, running_proxy  # noqa: E402

STEPS = (("root", ("npm", "ci"), ""), ("frontend", ("npm", "--prefix", "frontend", "ci"), "frontend"))
STEP_TIMEOUT_S = 900          # one npm step, hard limit (a hung step counts as a failed build)
FAULT_SPLIT = ("reset", "cut", "stall")
MS_SETTINGS = ("NPM_CONFIG_FETCH_TIMEOUT", "NPM_CONFIG_FETCH_RETRY_MINTIMEOUT", "NPM_CONFIG_FETCH_RETRY_MAXTIMEOUT")
NPM_KEYS = {"fetch-retries": "NPM_CONFIG_FETCH_RETRIES", "fetch-timeout": "NPM_CONFIG_FETCH_TIMEOUT",
            "fetch-retry-mintimeout": "NPM_CONFIG_FETCH_RETRY_MINTIMEOUT",
            "fetch-retry-maxtimeout": "NPM_CONFIG_FETCH_RETRY_MAXTIMEOUT", "prefer-offline": "NPM_CONFIG_PREFER_OFFLINE"}


# --------------------------------------------------------------------------------------------
# Setups


@dataclasses.dataclass
class Setup:
    key: str
    title: str
    persist_cache: bool          # a cache mount: warm builds are possible
    npm_env: dict[str, str]      # real (unscaled) NPM_CONFIG_* values
    attempts: int = 1
    backoff_s: float = 0.0       # pause before try n+1 is n * backoff_s (unscaled)
    note: str = ""

    def scaled_env(self, scale: float) -> dict[str, str]:
        env = dict(self.npm_env)
        for k in MS_SETTINGS:
            if k in env:
                env[k] = str(max(1, round(int(env[k]) / scale)))
        if "WORKHUB_RETRY" in env:  # the install retry's pause (whole seconds), like the runner's
            env["WORKHUB_RETRY"] = re.sub(r"\bwr_pause=(\d+);", lambda m: f"wr_pause={round(int(m.group(1)) / scale)};",
                                          env["WORKHUB_RETRY"], count=1)
        return env


def npm_defaults(env: dict[str, str], image: str | None = None) -> dict[str, str]:
    """npm's own defaults for the fetch settings, read from this npm (isolated from any npmrc), or
    from the npm of `image` (the hub's base image, for --runner docker)."""
    out = {}
    for name, var in NPM_KEYS.items():
        argv = ["npm", "config", "get", name]
        if image:
            argv = ["/usr/bin/docker", "run", "--rm", "--network=none", image, *argv]
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise SystemExit(f"bench: npm config get {name} failed: {r.stderr.strip()}")
        out[var] = r.stdout.strip()
    return out


# workhub's defaults before the install's own retry and the shorter npm timeouts (as committed
# until then): setup P, beside C, so one run shows both.
PREVIOUS_NPM = {"NPM_CONFIG_FETCH_RETRIES": "5", "NPM_CONFIG_FETCH_TIMEOUT": "30000",
                "NPM_CONFIG_FETCH_RETRY_MINTIMEOUT": "2000", "NPM_CONFIG_FETCH_RETRY_MAXTIMEOUT": "15000",
                "NPM_CONFIG_PREFER_OFFLINE": "true"}
PREVIOUS_ATTEMPTS, PREVIOUS_BACKOFF_S = 5, 10.0
# The settings of PREVIOUS_NPM that the project's Pulumi.yaml pinned until issue 22 (setup Y).
PINNED_BEFORE_22 = {"npmFetchTimeoutMs": "NPM_CONFIG_FETCH_TIMEOUT", "npmFetchRetryMinTimeoutMs": "NPM_CONFIG_FETCH_RETRY_MINTIMEOUT",
                    "npmFetchRetryMaxTimeoutMs": "NPM_CONFIG_FETCH_RETRY_MAXTIMEOUT"}


def workhub_env(**overrides) -> tuple[dict[str, str], BuildSettings]:
    """The NPM_CONFIG_* build args workhub passes with its default BuildSettings() (or with the
    settings of `overrides`, by alias), and its install retry (WORKHUB_RETRY: used where the
    Dockerfile's installs run under `eval "$WORKHUB_RETRY"`)."""
    settings = BuildSettings(**overrides)
    hub = type("BenchHub", (), {"build_args": {}})()
    words = workhub_scripts.build_args(hub, settings, None)
    args = dict(w.split("=", 1) for w in words[1::2])
    return {k: v for k, v in args.items() if k.startswith("NPM_CONFIG_") or k == "WORKHUB_RETRY"}, settings


def make_setups(defaults: dict[str, str]) -> dict[str, Setup]:
    wh_env, wh = workhub_env()
    prd = dict(defaults)
    prd.update({"NPM_CONFIG_FETCH_TIMEOUT": "120000", "NPM_CONFIG_FETCH_RETRY_MINTIMEOUT": "20000",
                "NPM_CONFIG_FETCH_RETRY_MAXTIMEOUT": "120000"})
    c_env = dict(defaults)
    c_env.update(wh_env)
    p_env = dict(defaults)
    p_env.update(PREVIOUS_NPM)
    # F: today's defaults before the cache fill (installFillCache false: the install retry as it
    # was, each try after a cut a whole `npm ci` again), so one run shows the fill's effect.
    f_env = dict(defaults)
    f_env.update(workhub_env(installFillCache=False)[0])
    # Y: what every stack built with until issue 22: today's install retry and fill, but the npm
    # settings of P, which the project's Pulumi.yaml still pinned over the defaults C measures.
    y_env = dict(defaults)
    y_env.update(workhub_env(**{alias: int(PREVIOUS_NPM[var]) for alias, var in PINNED_BEFORE_22.items()})[0])
    return {
        "P": Setup("P", "workhub's previous defaults", True, p_env, attempts=PREVIOUS_ATTEMPTS,
                   backoff_s=PREVIOUS_BACKOFF_S,
                   note="cache mount, fetch-timeout 30000, retry min 2000 / max 15000, no install retry "
                        f"inside the step, up to {PREVIOUS_ATTEMPTS} build tries on transient()"),
        "F": Setup("F", "workhub's defaults without the cache fill", True, f_env, attempts=wh.attempts,
                   backoff_s=float(wh.retry_backoff_seconds),
                   note="C with build.installFillCache false: after a cut, the install retry runs the "
                        "whole npm ci again (workhub's defaults until the fill)"),
        "Y": Setup("Y", "the project's settings before issue 22", True, y_env, attempts=wh.attempts,
                   backoff_s=float(wh.retry_backoff_seconds),
                   note="C with Pulumi.yaml's npm settings until issue 22: fetch-timeout 30000, retry min 2000 / "
                        "max 15000 (the defaults before issue 13)"),
        "A": Setup("A", "no cache mount, npm defaults", False, dict(defaults),
                   note="empty npm cache in every build, one try"),
        "B": Setup("B", "the PRD's settings", True, prd,
                   note="cache mount, fetch-timeout 120000, retry min 20000 / max 120000, one try"),
        "C": Setup("C", "workhub's defaults", True, c_env, attempts=wh.attempts,
                   backoff_s=float(wh.retry_backoff_seconds),
                   note=f"cache mount, build_args(BuildSettings()), up to {wh.attempts} tries on transient()"),
    }


def transient_function() -> str:
    """The runner's transient() shell function, cut out of components.render.host.build._RUNNER."""
    m = re.search(r"^transient\(\) \{\n.*?\n\}\n", workhub_scripts._RUNNER, re.S | re.M)
    if not m:
        raise SystemExit("bench: no transient() function found in components.render.host.build._RUNNER")
    values = workhub_scripts.assignments({"transient_pattern": workhub_scripts.TRANSIENT_PATTERN,
                                          "not_network": workhub_scripts.NOT_NETWORK})
    return values + "\n" + m.group(0)


TRANSIENT_SH = transient_function()


def is_transient(log: Path) -> bool:
    r = subprocess.run(["bash", "-c", TRANSIENT_SH + 'transient "$1"', "bench", str(log)], timeout=60)
    return r.returncode == 0


# --------------------------------------------------------------------------------------------
# One build


def base_env(work: Path) -> dict[str, str]:
    """A clean npm environment: no inherited npm settings, empty user and global npmrc."""
    env = {k: v for k, v in os.environ.items()
           if not k.lower().startswith("npm_config_") and k not in ("NODE_ENV", "NODE_OPTIONS")}
    (work / "npmrc.user").touch()
    (work / "npmrc.global").touch()
    env.update({
        "NPM_CONFIG_USERCONFIG": str(work / "npmrc.user"),
        "NPM_CONFIG_GLOBALCONFIG": str(work / "npmrc.global"),
        "NPM_CONFIG_UPDATE_NOTIFIER": "false",
        # The audit endpoint is not served by the local registry (verdaccio 6.8 answers 500 here),
        # and an audit never fails an install: off for every setup alike.
        "NPM_CONFIG_AUDIT": "false",
        "NPM_CONFIG_FUND": "false",
    })
    return env


def copy_hub(hub: Path, dest: Path) -> None:
    (dest / "frontend").mkdir(parents=True)
    for rel in ("package.json", "package-lock.json", "frontend/package.json", "frontend/package-lock.json"):
        shutil.copy2(hub / rel, dest / rel)


def error_code(text: str) -> str:
    m = re.findall(r"npm (?:error|ERR!) code (\S+)", text)
    if m:
        msg = re.findall(r"npm (?:error|ERR!) (?!code )(.+)", text)
        return f"{m[0]} ({msg[0][:60].strip()})" if msg else m[0]
    m = re.findall(r"npm (?:error|ERR!) (.+)", text)
    return m[-1][:80] if m else "no npm error line"


@dataclasses.dataclass
class Ctx:
    upstream: str
    hub: Path
    work: Path
    scale: float
    stall_s: float          # unscaled
    status_5xx_share: float
    env: dict[str, str]
    setups: dict[str, Setup]
    runner: str = "host"     # host: this machine's npm; docker: a BuildKit build of the hub's Dockerfile


FAULT_KINDS = ("mix", *FAULT_SPLIT)   # a cell's faults: the even mix, or one kind alone


def cell_kind(level_pct: float, kind: str) -> str:
    """A fault-free cell has no kind."""
    return "none" if level_pct == 0 else kind


def faults_for(level_pct: float, ctx: Ctx, kind: str = "mix") -> Faults:
    """`level_pct` of tarball requests faulted: split evenly among reset, cut and stall (`mix`, with
    --status-5xx-share of them 503s), or all of one kind."""
    p = level_pct / 100.0
    stall_s = ctx.stall_s / ctx.scale
    if kind in FAULT_SPLIT:
        return Faults(**{kind: p}, stall_seconds=stall_s)
    five = p * ctx.status_5xx_share
    each = (p - five) / len(FAULT_SPLIT)
    return Faults(reset=each, cut=each, stall=each, status_5xx=five, stall_seconds=stall_s)


def run_build(ctx: Ctx, setup: Setup, level: float, kind: str, seed: int, port: int,
              cache_from: Path | None, fault_kind: str = "mix") -> dict:
    """One deploy's install phase. kind is 'cold' (empty cache) or 'warm' (a copy of cache_from)."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"{setup.key}-{kind}-", dir=ctx.work))
    try:
        hub = run_dir / "hub"
        cache = run_dir / "npm-cache"
        copy_hub(ctx.hub, hub)
        build_id = f"{setup.key.lower()}-{seed}"
        if cache_from is not None:
            subprocess.run(["cp", "-a", str(cache_from), str(cache)], check=True, timeout=300)
        else:
            cache.mkdir()
        env = dict(ctx.env)
        env.update(setup.scaled_env(ctx.scale))
        env["NPM_CONFIG_CACHE"] = str(cache)
        faults = faults_for(level, ctx, fault_kind)
        done: set[str] = set()
        tries_log = []
        ok = False
        reason = ""
        t0 = time.monotonic()
        with running_proxy(ctx.upstream, faults, seed=seed, listen_port=port) as (url, stats):
            env["NPM_CONFIG_REGISTRY"] = url
            for attempt in range(1, setup.attempts + 1):
                log = run_dir / f"attempt-{attempt}.log"
                failed_step = None
                hung = False
                with open(log, "w") as out:
                    if ctx.runner == "docker":
                        failed_step, hung = docker_try(ctx, setup, hub, env, out, build_id, port, cold=cache_from is None)
                    for name, argv, sub in (STEPS if ctx.runner == "host" else ()):
                        if name in done:  # BuildKit's layer cache: a finished step is not run again
                            continue
                        shutil.rmtree(hub / sub / "node_modules", ignore_errors=True)
                        try:
                            r = subprocess.run(argv, cwd=hub, env=env, stdout=out, stderr=subprocess.STDOUT,
                                               timeout=STEP_TIMEOUT_S)
                            code = r.returncode
                        except subprocess.TimeoutExpired:
                            out.write(f"\nbench: {name} step killed after {STEP_TIMEOUT_S} s\n")
                            code = -1
                            hung = True
                        if code != 0:
                            failed_step = name
                            break
                        done.add(name)
                text = log.read_text(errors="replace")
                entry = {"try": attempt, "ok": failed_step is None, "failed_step": failed_step,
                         "install_retries": len(re.findall(r"workhub: try \d+ of .* trying again", text))}
                if failed_step is None:
                    tries_log.append(entry)
                    ok = True
                    break
                entry["error"] = f"hung: no output, killed after {STEP_TIMEOUT_S} s" if hung else error_code(text)
                entry["hung"] = hung
                entry["error_lines"] = re.findall(r"npm (?:error|ERR!) .*", text)[:6] or text.splitlines()[-6:]
                entry["transient"] = is_transient(log)
                tries_log.append(entry)
                reason = f"{failed_step}: {entry['error']}"
                if attempt >= setup.attempts:
                    break
                if not entry["transient"]:
                    reason += " (not transient: no retry)"
                    break
                time.sleep(setup.backoff_s * attempt / ctx.scale)
            wall = time.monotonic() - t0
            snap = stats.snapshot()
        return {
            "setup": setup.key, "level_pct": level, "fault_kind": cell_kind(level, fault_kind), "kind": kind,
            "seed": seed, "ok": ok,
            "wall_s": round(wall, 2), "tries": len(tries_log), "tries_detail": tries_log,
            "install_retries": sum(t["install_retries"] for t in tries_log),
            "reason": "" if ok else reason,
            "requests": snap["requests"], "tarball_requests": snap["tarball_requests"],
            "bytes": snap["bytes_sent"], "faults": snap["faults"],
        }
    finally:
        if ctx.runner == "docker":
            subprocess.run([DOCKER, "image", "rm", "--force", f"{BENCH_IMAGE}:{build_id}"], capture_output=True)
        shutil.rmtree(run_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The docker runner: the installs inside a real BuildKit build of the hub's own Dockerfile


DOCKER = "/usr/bin/docker"    # Debian's 20.10 client builds with BuildKit natively (as the test host does)
BENCH_IMAGE = "workhub-bench-install"
NPM_CACHE = "/root/.npm"
# Settings every setup gets alike (see base_env); in a build they arrive as build args.
COMMON_BUILD_ARGS = {"NPM_CONFIG_AUDIT": "false", "NPM_CONFIG_FUND": "false", "NPM_CONFIG_UPDATE_NOTIFIER": "false"}


def install_dockerfile(dockerfile: str, cache_id: str | None, empty_first: bool = True) -> str:
    """The hub's Dockerfile up to its last `npm ... ci` step (the install phase, run as the hub
    builds it: its base image, its npm, its cache mounts), for one benchmark build.

    `cache_id` names the npm cache mount of this setup and job (None: the setup has no cache mount,
    so every mount is dropped and npm's cache lives in the step's own layer, empty each build). After
    FROM come the build args every setup gets and `WORKHUB_BENCH_BUILD`, whose value is new in each
    build, so no step of an earlier build is a layer-cache hit, while the tries of one build share
    it: a step that succeeded in an earlier try is CACHED, as in workhub's own retries. With
    `empty_first`, a cold build with a cache mount first empties the mount (in a step of its own, also
    cached across tries); without, the caller gives each build a new `cache_id`. The install retry's
    secret mount is dropped: the benchmark gives the retry as its build arg."""
    lines = dockerfile.splitlines()
    installs = [i for i, line in enumerate(lines) if re.match(r"RUN\b.*\bnpm\b.*\bci\b", line)]
    if not installs:
        raise SystemExit("bench: the hub's Dockerfile has no `RUN ... npm ... ci` step")
    out: list[str] = []
    for line in lines[:installs[-1] + 1]:
        # The install retry comes as its build arg here (its pause scaled like the runner's), not as
        # the secret a build on the host gives it as.
        line = line.replace(" " + workhub_scripts.RETRY_MOUNT, "")
        if line.startswith("RUN") and "--mount=type=cache" in line:
            line = re.sub(r"--mount=type=cache,(\S+)\s*",
                          (lambda m: f"--mount=type=cache,id={cache_id},{m.group(1)} ") if cache_id else "", line)
        out.append(line)
        if re.match(r"FROM\s", line, re.I):
            out += [f"ARG {name}" for name in COMMON_BUILD_ARGS] + ["ARG WORKHUB_BENCH_BUILD"]
            if cache_id and empty_first:
                out.append(f"RUN --mount=type=cache,id={cache_id},target={NPM_CACHE},sharing=locked "
                           f"echo \"build $WORKHUB_BENCH_BUILD\" && "
                           # busybox's find (the test host's base image) has no -delete
                           f"find {NPM_CACHE} -mindepth 1 -maxdepth 1 -exec rm -rf {{}} +")
    return "\n".join(out) + "\n"


def docker_build_argv(setup: Setup, env: dict[str, str], build_id: str, context: Path) -> list[str]:
    args = {**COMMON_BUILD_ARGS, **{k: v for k, v in env.items() if k in setup.npm_env or k == "NPM_CONFIG_REGISTRY"},
            "WORKHUB_BENCH_BUILD": build_id}
    words = [w for k, v in sorted(args.items()) for w in ("--build-arg", f"{k}={v}")]
    return [DOCKER, "build", "--progress=plain", "--network=host", "--tag", f"{BENCH_IMAGE}:{build_id}",
            *words, str(context)]


def docker_failed_step(log: str) -> str:
    """Which install step a failed build stopped in, from BuildKit's last error line."""
    errors = [line for line in log.splitlines() if "executor failed running" in line or "did not complete" in line]
    return "frontend" if errors and "--prefix frontend" in errors[-1] else "root"


def docker_try(ctx: Ctx, setup: Setup, hub: Path, env: dict[str, str], out, build_id: str, port: int,
               cold: bool) -> tuple[str | None, bool]:
    """One try: one `docker build` of the install phase. (the failed step or None, whether it hung)."""
    if not cold:
        raise SystemExit("bench: --runner docker runs cold builds only (--warm-runs 0)")
    # An empty cache mount per cold build: one per setup and job, emptied by the build's first step,
    # or (WORKHUB_BENCH_CACHE=fresh) a new one per build.
    fresh = os.environ.get("WORKHUB_BENCH_CACHE") == "fresh"
    cache_id = (None if not setup.persist_cache else f"workhub-bench-{build_id}" if fresh
                else f"workhub-bench-{setup.key.lower()}-{port}")
    (hub / "Dockerfile").write_text(install_dockerfile((ctx.hub / "Dockerfile").read_text(), cache_id, not fresh))
    out.flush()
    try:
        r = subprocess.run(docker_build_argv(setup, env, build_id, hub), stdout=out, stderr=subprocess.STDOUT,
                           env={**os.environ, "DOCKER_BUILDKIT": "1"}, timeout=STEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        out.write(f"\nbench: the build was killed after {STEP_TIMEOUT_S} s\n")
        return "root", True
    out.flush()
    return (None if r.returncode == 0 else docker_failed_step(Path(out.name).read_text(errors="replace"))), False


def base_image_of(dockerfile: str) -> str:
    return next(line.split()[1] for line in dockerfile.splitlines() if re.match(r"FROM\s", line, re.I))


def base_image_npm(image: str) -> str:
    """The npm version of the hub's base image (what its installs run with)."""
    r = subprocess.run([DOCKER, "run", "--rm", "--network=none", image, "npm", "--version"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"bench: cannot run npm in {image}: {r.stderr.strip()}")
    return f"{r.stdout.strip()} (in {image})"


# --------------------------------------------------------------------------------------------
# Statistics and the report


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for k successes in n runs (95% for z = 1.96).

    Written out here (a few lines, as in Wilson 1927 and Agresti & Coull 1998) because neither
    scipy nor statsmodels is among this project's requirements; tests/unit/project/test_benchmarks.py checks it
    against published values. Unlike the normal approximation it stays inside 0..1 and gives a real
    interval for n/n: its lower bound is n / (n + z^2)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fmt_s(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f} s"


def runs_to_show(rate: float, z: float = 1.96) -> int:
    """How many runs, all successful, a Wilson interval needs for its lower bound to reach `rate`."""
    return math.ceil(rate * z * z / (1 - rate))


def fault_kind_of(r: dict) -> str:
    """A build's fault kind (results from before --kinds were all the even mix)."""
    return r.get("fault_kind") or cell_kind(r["level_pct"], "mix")


def summarize(results: list[dict], setups: list[str], levels: list[float]) -> list[dict]:
    """One row per setup, fault level and fault kind that has builds, from the builds' records."""
    order = ("none", *FAULT_KINDS)
    rows = []
    for s in setups:
        for lv in levels:
            here = [r for r in results if r["setup"] == s and r["level_pct"] == lv]
            for fk in sorted({fault_kind_of(r) for r in here}, key=order.index) or [cell_kind(lv, "mix")]:
                rows.append(summarize_cell([r for r in here if fault_kind_of(r) == fk], s, lv, fk))
    return rows


def summarize_cell(cell: list[dict], s: str, lv: float, fk: str) -> dict:
    """The figures of one cell's builds."""
    cold = [r for r in cell if r["kind"] == "cold"]
    warm = [r for r in cell if r["kind"] == "warm"]
    k = sum(r["ok"] for r in cold)
    lo, hi = wilson(k, len(cold))
    wk = sum(r["ok"] for r in warm)
    return {
        "setup": s, "level_pct": lv, "fault_kind": fk, "cold_n": len(cold), "cold_ok": k, "ci": (lo, hi),
        "cold_median_ok_s": median([r["wall_s"] for r in cold if r["ok"]]),
        "cold_median_all_s": median([r["wall_s"] for r in cold]),
        "warm_n": len(warm), "warm_ok": wk,
        "warm_median_s": median([r["wall_s"] for r in warm if r["ok"]]),
        "cold_requests": statistics.mean([r["requests"] for r in cold]) if cold else None,
        "cold_tarballs": statistics.mean([r["tarball_requests"] for r in cold]) if cold else None,
        "cold_mb": statistics.mean([r["bytes"] for r in cold]) / 1e6 if cold else None,
        "warm_requests": statistics.mean([r["requests"] for r in warm]) if warm else None,
        "warm_tarballs": statistics.mean([r["tarball_requests"] for r in warm]) if warm else None,
        "warm_mb": statistics.mean([r["bytes"] for r in warm]) / 1e6 if warm else None,
        "tries": {t: sum(1 for r in cold if r["tries"] == t) for t in sorted({r["tries"] for r in cold})},
        "injected": {f: statistics.mean(r["faults"].get(f, 0) for r in cold) if cold else None
                     for f in ("reset", "cut", "stall", "status_5xx")},
    }


def render(doc: dict) -> str:
    m, cfg, results = doc["machine"], doc["config"], doc["results"]
    rows = summarize(results, cfg["setup_keys"], cfg["levels"])
    setups = {k: v for k, v in cfg["setups"].items() if k in cfg["setup_keys"]}
    scale = cfg["scale"]
    L: list[str] = []
    a = L.append
    a("# Benchmarks: deploys under registry faults")
    a("")
    a(f"Measured {doc['date']} with `python bench/npm_faults.py` ({doc['elapsed_min']:.0f} min; "
      f"bench/README.md says how to run it). Raw results: one JSON record per build"
      + (f" in `{cfg['json']}`" if cfg.get("json") else "") + ".")
    a("")
    a(f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} memory, {m['os']} (kernel {m['kernel']}), "
      f"Node {m['node']}, npm {m['npm']}, verdaccio {m['verdaccio']}, Python {m['python']}. "
      f"Load average at the start: {m['load_at_start'][0]:.1f} (the machine was shared with other work; "
      "times are noisy, success rates are not affected by load)." )
    a("")
    a("The runs in this report (each a results file), where their installs ran and with which npm, and "
      "their budgets (no new build starts once a run's budget is spent):")
    a("")
    a("| Run | Results | Installs | npm | Budget | Planned builds | Ran | Skipped |")
    a("|---|---|---|---|---|---|---|---|")
    for run in (doc, *doc.get("also", [])):
        rc = run["config"]
        a(f"| {run.get('name', 'Main run')} ({run['date']}) | `{run.get('path', rc.get('json'))}` | "
          f"{'BuildKit builds of the Dockerfile' if runner_of(rc) == 'docker' else 'outside Docker'} | "
          f"{npm_of(run)} | {rc['budget_minutes']:g} min | {rc['planned']} | {rc['planned'] - rc['skipped']} | "
          f"{rc['skipped']} |")
    a("")
    a("## What was measured")
    a("")
    a(f"A deploy fails where a hub's Docker build installs its dependencies, so each build here is that "
      f"phase of the sample hub `examples/{cfg['hub_name']}`, run as its Dockerfile runs it: `npm ci`, then "
      f"`npm --prefix frontend ci` ({cfg['tarballs_hint']}), "
      + ("with this machine's npm, in a fresh copy of the two package.json/package-lock.json pairs, "
         if runner_of(cfg) == "host" else
         "inside a BuildKit build (`docker build`, `--network=host` as workhub builds) of the hub's own "
         "Dockerfile up to its last install step, so with its base image's npm and its cache mounts, ")
      + "through `tools/faultproxy.py` in front of the local verdaccio (`scripts/registry.sh`), which "
      "holds every package already. "
      + ("No Docker is involved; each setup's cache mount is an npm cache directory."
         if runner_of(cfg) == "host" else
         "Each setup's cache mount is a BuildKit cache mount of its own, emptied at the start of each "
         "build; setup A's steps have none."))
    a("")
    a("| Setup | Cache | npm fetch settings (real values) | Tries |")
    a("|---|---|---|---|")
    for k, s in setups.items():
        e = s["npm_env"]
        settings = (f"retries {e['NPM_CONFIG_FETCH_RETRIES']}, timeout {e['NPM_CONFIG_FETCH_TIMEOUT']}, "
                    f"min {e['NPM_CONFIG_FETCH_RETRY_MINTIMEOUT']}, max {e['NPM_CONFIG_FETCH_RETRY_MAXTIMEOUT']}, "
                    f"prefer-offline {e['NPM_CONFIG_PREFER_OFFLINE']}")
        cache = "persists across builds (cache mount)" if s["persist_cache"] else "empty in every build (no cache mount)"
        tries = (f"up to {s['attempts']}, pause {s['backoff_s'] / scale:g} s x try (real: {s['backoff_s']:g} s x try), "
                 "only when the output matches the runner's `transient()`") if s["attempts"] > 1 else "1"
        a(f"| {k}: {s['title']} | {cache} | {settings} | {tries} |")
    a("")
    a("- A is WBSalesHub/WBFinHub before the fix: `RUN npm ci` with no cache mount, npm's defaults "
      "(read from this npm with `npm config get`). B adds the PRD's phase-1 cache mount and phase-2 "
      "timeouts, and one try, since the PRD's sequential script stops at the first failure. C passes "
      "`components.render.host.build.build_args(hub, BuildSettings(), None)` and retries like the build runner "
      "(`components.render.host.build._RUNNER`): its `transient()` shell function is cut out of that text and "
      "run on each failed try's output. In a retry, a step that already succeeded is skipped, as "
      "BuildKit's layer cache would skip it; the failed step runs again with the cache it left.")
    a(f"- Faults: a share of tarball requests (metadata passes untouched) split evenly among reset "
      f"(connection reset before any byte), cut (headers and 10-90% of the body, then the connection "
      f"closes) and stall (nothing for {cfg['stall_s'] / scale:g} s, then close)"
      + (f", with {pct(cfg['status_5xx_share'])} of the faults a 503" if cfg["status_5xx_share"] else
         "; no 5xx faults") + ". One proxy and one fresh seed per build (seeds in the JSON).")
    a(f"- Time is scaled down {scale:g}x, as in FINDINGS: the stall is {cfg['stall_s']:g} s / {scale:g}, and every "
      f"setup's fetch-timeout, fetch-retry-mintimeout and fetch-retry-maxtimeout, and workhub's retry pause, "
      f"are divided by {scale:g} (e.g. C runs with fetch-timeout "
      f"{int(setups['C']['npm_env']['NPM_CONFIG_FETCH_TIMEOUT']) // int(scale) if 'C' in setups else '?'} ms). "
      f"Real builds wait {scale:g}x longer at each stall and pause; success rates do not depend on the scale.")
    a("- Cold: the setup's cache is empty when the build starts (the incident's case; deploy success "
      "is measured cold). Warm: the cache is a copy of one filled by an earlier successful install of "
      "the same lockfiles with the same setup and registry URL. A has no warm build: without a cache "
      "mount nothing survives a build (an unchanged lockfile is a Docker layer-cache hit instead, and "
      "`npm ci` does not run at all: FINDINGS #7).")
    a(f"- npm's audit and fund calls are off for all setups (the local registry does not serve audit, "
      f"and an audit never fails an install). npm 11 runs no install scripts here without an allowScripts "
      f"entry (esbuild's postinstall is skipped), so `--ignore-scripts` was not needed. Work files are "
      f"in `{cfg['workdir_kind']}`. {cfg['jobs']} build(s) ran at a time"
      + (" (in random order across setups, so all saw the same load); times below are under that "
         "concurrency, and single-build times are listed after the table" if cfg["jobs"] > 1 else "") + ".")
    a("- Requests and bytes: what the proxy answered per build (metadata and tarballs, including "
      "faulted and retried requests), i.e. registry traffic per build.")
    a("")
    a("## Results")
    a("")
    a("| Setup | Faults | Cold deploys OK | 95% CI (Wilson) | Median cold time (OK builds) | Tries per build | "
      "Injected per cold build: resets / cuts / stalls / 503s | Warm OK | Median warm time | "
      "Cold build: requests (tarballs) / MB | Warm build: requests (tarballs) / MB |")
    a("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = setups[r["setup"]]
        lo, hi = r["ci"]
        ci = "n/a" if not r["cold_n"] else f"{pct(lo)} - {pct(hi)}"
        coldok = count_label(r)
        if not s["persist_cache"]:
            warm_ok, warm_t, warm_tr = "no warm (no cache)", "n/a", "n/a"
        elif r["warm_n"]:
            warm_ok = f"{r['warm_ok']}/{r['warm_n']}"
            warm_t = fmt_s(r["warm_median_s"])
            warm_tr = f"{r['warm_requests']:.0f} ({r['warm_tarballs']:.0f}) / {r['warm_mb']:.1f}"
        else:
            warm_ok, warm_t, warm_tr = "not run", "n/a", "n/a"
        cold_tr = (f"{r['cold_requests']:.0f} ({r['cold_tarballs']:.0f}) / {r['cold_mb']:.1f}"
                   if r["cold_n"] else "n/a")
        a(f"| {r['setup']}: {s['title']} | {faults_label(r)} | {coldok} | {ci} | {fmt_s(r['cold_median_ok_s'])} | "
          f"{tries_label(r)} | {injected_label(r)} | {warm_ok} | {warm_t} | {cold_tr} | {warm_tr} |")
    a("")
    a("Cold success is a count over N independent cold builds with fresh seeds, with its 95% Wilson score "
      "interval: the true success rate lies in it at 95% confidence, so n/n successes shows a rate of at "
      f"least the lower bound, no more (showing 99% takes {runs_to_show(0.99)} builds without a failure). "
      "\"not run\": the budget ended before any build of the cell. Faults: the share of tarball requests "
      "faulted, and how (mix: resets, cuts and stalls evenly; or one kind alone); injected: the mean count "
      "of each kind per cold build. Cold requests/MB are means over all cold builds, failed ones included "
      "(a failed build stops early).")
    solo = doc.get("solo") or []
    if solo:
        a("")
        a("Single builds, nothing else of the benchmark running (0% faults):")
        a("")
        a("| Setup | Kind | Time | Requests (tarballs) | MB |")
        a("|---|---|---|---|---|")
        for r in solo:
            a(f"| {r['setup']} | {r['kind']} | {r['wall_s']:.1f} s | {r['requests']} ({r['tarball_requests']}) | "
              f"{r['bytes'] / 1e6:.1f} |")
    for extra in doc.get("also", []):
        xs = extra["config"]["setups"]
        a("")
        a(f"{extra.get('caption', 'Another run')}. Run {extra['date']}, {extra['elapsed_min']:.0f} min, same "
          f"machine, {extra['config']['jobs']} builds at a time, setups "
          + "; ".join(f"{k}: {xs[k]['title']}" for k in extra["config"]["setup_keys"]) + ".")
        a("")
        in_step = any("install_retries" in r for r in extra["results"])
        a("| Setup | Faults | Cold deploys OK | 95% CI (Wilson) | Median cold time (OK builds) | "
          "Against the setup's 0% | Tries per build | "
          + ("Install retries inside the step per build | " if in_step else "")
          + "Injected per cold build: resets / cuts / stalls / 503s |")
        a("|---|---|---|---|---|---|---|---|" + ("---|" if in_step else ""))
        extra_rows = summarize(extra["results"], extra["config"]["setup_keys"], extra["config"]["levels"])
        for r in extra_rows:
            lo, hi = r["ci"]
            ci = f"{pct(lo)} - {pct(hi)}" if r["cold_n"] else "n/a"
            retries = [x.get("install_retries", 0) for x in extra["results"] if x["setup"] == r["setup"]
                       and x["level_pct"] == r["level_pct"] and fault_kind_of(x) == r["fault_kind"]]
            a(f"| {r['setup']}: {xs[r['setup']]['title']} | {faults_label(r)} | {count_label(r)} | {ci} | "
              f"{fmt_s(r['cold_median_ok_s'])} | {ratio_label(r, extra_rows)} | {tries_label(r)} | "
              + (f"{', '.join(str(n) for n in sorted(retries)) or 'n/a'} | " if in_step else "")
              + f"{injected_label(r)} |")
        if in_step:
            a("")
            a(ratio_verdict(extra_rows, xs))
    a("")
    a("## Reading")
    a("")
    for para in reading(doc):
        a(para)
        a("")
    return "\n".join(L).rstrip() + "\n"


def runner_of(cfg: dict) -> str:
    return cfg.get("runner", "host")


def npm_of(doc: dict) -> str:
    """The npm the installs ran with (runs from before --runner recorded only this machine's)."""
    return doc["config"].get("npm_version") or f"{doc['machine']['npm']} (this machine's)"


def faults_label(r: dict) -> str:
    return "0%" if r["fault_kind"] == "none" else f"{r['level_pct']:g}% {r['fault_kind']}"


def count_label(r: dict) -> str:
    return f"{r['cold_ok']}/{r['cold_n']}" if r["cold_n"] else "not run"


def ratio(r: dict, rows: list[dict]) -> float | None:
    """A cell's median successful cold time over the same setup's fault-free one in the same run."""
    base = next((b for b in rows if b["setup"] == r["setup"] and b["fault_kind"] == "none"), None)
    if not base or not base["cold_median_ok_s"] or not r["cold_median_ok_s"]:
        return None
    return r["cold_median_ok_s"] / base["cold_median_ok_s"]


def ratio_label(r: dict, rows: list[dict]) -> str:
    x = ratio(r, rows)
    return "n/a" if x is None else f"{x:.2f}x"


GOAL_RATIO = 1.5  # issue 13, item 9: each faulted cell at most 1.5x its setup's fault-free median


def ratio_verdict(rows: list[dict], setups: dict) -> str:
    """Which faulted cells are within GOAL_RATIO of their setup's fault-free median, setup by setup,
    and whether any build failed."""
    parts = []
    for key in dict.fromkeys(r["setup"] for r in rows):
        cells = [r for r in rows if r["setup"] == key and r["fault_kind"] != "none" and r["cold_n"]]
        within = [r for r in cells if (x := ratio(r, rows)) is not None and x <= GOAL_RATIO]
        over = [f"{faults_label(r)} {ratio_label(r, rows)}" for r in cells if r not in within]
        failed = sum(r["cold_n"] - r["cold_ok"] for r in rows if r["setup"] == key)
        parts.append(f"{key} ({setups[key]['title']}): {len(within)} of {len(cells)} faulted cells within "
                     f"{GOAL_RATIO:g}x of its fault-free median" + (f", over it: {', '.join(over)}" if over else "")
                     + f"; {failed} failed build(s)")
    return ("Goal: every faulted cell at most " + f"{GOAL_RATIO:g}x its setup's fault-free median, no build lost. "
            + "; ".join(parts) + ".")


def tries_label(r: dict) -> str:
    return ", ".join(f"{v} x {k}" for k, v in sorted(r["tries"].items(), key=lambda kv: int(kv[0]))) or "n/a"


def injected_label(r: dict) -> str:
    inj = r.get("injected") or {}
    if not r["cold_n"]:
        return "n/a"
    return " / ".join(f"{inj[f]:.1f}" for f in ("reset", "cut", "stall", "status_5xx"))


def _hung(r: dict) -> bool:
    return any(t.get("hung") for t in r.get("tries_detail", [])) or r["wall_s"] >= STEP_TIMEOUT_S - 1


def reading(doc: dict) -> list[str]:
    results, cfg = doc["results"], doc["config"]
    rows = summarize(results, cfg["setup_keys"], cfg["levels"])
    out = []
    levels = cfg["levels"]
    top = max(levels)
    by = {(r["setup"], r["level_pct"]): r for r in rows if r["fault_kind"] in ("none", "mix")}

    def rate(s: str, lv: float) -> str:
        r = by.get((s, lv))
        if not r or not r["cold_n"]:
            return "not measured"
        lo, hi = r["ci"]
        return f"{r['cold_ok']}/{r['cold_n']} (95% Wilson interval {pct(lo)}-{pct(hi)})"

    c = by.get(("C", top))
    if c and c["cold_n"]:
        lo, hi = c["ci"]
        out.append(f"**At {top:g}% injected tarball faults (resets, cuts and stalls evenly), {rate('C', top)} "
                   f"cold builds of workhub's defaults (C) succeeded; side by side, A (no cache mount, npm "
                   f"defaults) {rate('A', top)} and B (the PRD's settings) {rate('B', top)}.** "
                   f"From {c['cold_n']} runs that is a success rate between {pct(lo)} and {pct(hi)} at 95% "
                   f"confidence, and no more: showing 99% would take {runs_to_show(0.99)} builds without a failure.")
    # FINDINGS #4: cut downloads
    failed_ab = [r for r in results if r["kind"] == "cold" and r["setup"] in ("A", "B") and not r["ok"]]
    if failed_ab:
        with_cut = sum(1 for r in failed_ab if r["faults"].get("cut", 0) > 0)
        codes: dict[str, int] = {}
        for r in failed_ab:
            codes[r["reason"]] = codes.get(r["reason"], 0) + 1
        common = ", ".join(f"`{k}` x{v}" for k, v in sorted(codes.items(), key=lambda kv: -kv[1])[:4])
        ok_ab_with_cut = sum(1 for r in results if r["kind"] == "cold" and r["setup"] in ("A", "B") and r["ok"]
                             and r["faults"].get("cut", 0) > 0)
        out.append(f"FINDINGS #4 (npm does not retry a cut download): {with_cut} of the {len(failed_ab)} failed "
                   f"cold builds of A and B had at least one cut download, and {ok_ab_with_cut} A/B build(s) with a "
                   f"cut download succeeded. Their errors: {common}. npm retries a request that fails before its response headers "
                   "(resets, stalls), but not a body cut short (it ends as `ECONNRESET`, \"network aborted\"), and no "
                   "fetch-* setting changes that: B's timeouts only change how long a stall costs, and a one-try "
                   "install of a few hundred tarballs fails whenever one of them is cut.")
    # FINDINGS #8: the retry
    c_cold = [r for r in results if r["setup"] == "C" and r["kind"] == "cold"]
    if c_cold:
        retried = [r for r in c_cold if r["tries"] > 1]
        parts = []
        for lv in levels:
            cl = [r for r in c_cold if r["level_pct"] == lv]
            if cl:
                t = {n: sum(1 for r in cl if r["tries"] == n) for n in sorted({r["tries"] for r in cl})}
                parts.append(f"at {lv:g}%, " + ", ".join(f"{v} in {k} tr{'y' if k == 1 else 'ies'}" for k, v in t.items()))
        first_try_tarballs = [r["tarball_requests"] for r in c_cold if r["tries"] == 1 and r["level_pct"] == 0]
        extra = ""
        if retried and first_try_tarballs:
            base = statistics.median(first_try_tarballs)
            extra = (f" A retried build made {statistics.mean(r['tarball_requests'] for r in retried):.0f} tarball "
                     f"requests on average against {base:.0f} for a clean one-try build: the next try fetched "
                     "only what the failed one had not stored in the cache.")
        att = doc["config"]["setups"]["C"]["attempts"]
        top_c = [r for r in c_cold if r["level_pct"] == top]
        if top_c:
            used_all = sum(1 for r in top_c if r["tries"] == att)
            extra += (f" At {top:g}%, {used_all} of {len(top_c)} cold builds used all {att} tries: a try ends at the "
                      "first cut download it meets, and the next try starts over on whatever is still missing.")
        nontransient = [r for r in c_cold if not r["ok"] and "not transient" in r["reason"]]
        cfail = [r for r in c_cold if not r["ok"]]
        tail = ""
        if cfail:
            hung = [r for r in cfail if _hung(r)]
            tail = (" C's failed builds: " + "; ".join(
                f"{r['level_pct']:g}% seed {r['seed']}: " + (f"HUNG in try {r['tries']}, {r['reason'].split(':')[0]} step: "
                                                             "npm printed nothing and did not exit until the benchmark "
                                                             f"killed it after {r['wall_s']:.0f} s" if _hung(r) else r["reason"])
                for r in cfail[:6]) + ".")
            if hung:
                tail += (f" The hang ({len(hung)} build) is the surprise: a killed try is not a transient failure, so "
                         "no retry followed, and the build runner itself has no time limit, so on a host such a build "
                         "would hold the build lock until someone stops it. Fault draws are seeded but npm's timing "
                         "is not, so a rerun with the same seed need not hang: it is a race, in npm or between npm "
                         "and the proxy's faults.")
            rest = [r for r in nontransient if not _hung(r)]
            if rest:
                tail += f" {len(rest)} of them stopped because the output did not match `transient()`."
            ran_out = [r for r in cfail if r["tries"] == att and all(t.get("transient") for t in r["tries_detail"])]
            if ran_out:
                tail += (f" {len(ran_out)} of them failed from the network in all {att} tries (each output matched "
                         "`transient()`): they ran out of tries.")
        for other in doc.get("also", []):
            oc = other["config"]
            for r in summarize(other["results"], oc["setup_keys"], oc["levels"]):
                if r["setup"] == "C" and r["cold_n"]:
                    lo, hi = r["ci"]
                    most = max(int(k) for k in r["tries"])
                    tail += (f" In the run of {other['date']} (up to {oc['setups']['C']['attempts']} tries), "
                             f"{r['cold_ok']}/{r['cold_n']} cold builds at {faults_label(r)} succeeded (95% Wilson "
                             f"interval {pct(lo)}-{pct(hi)}), the most tries any of them needed was {most}.")
        out.append("FINDINGS #8 (retry the whole install inside the cache-mounted step): "
                   f"C's cold builds needed, {'; '.join(parts)} (up to {doc['config']['setups']['C']['attempts']})." + extra + tail)
    # prefer-offline
    wb = [r for r in results if r["setup"] == "B" and r["kind"] == "warm"]
    wc = [r for r in results if r["setup"] == "C" and r["kind"] == "warm"]
    if wb or wc:
        s = "The cache mount alone is not enough here, prefer-offline is what makes it work. "
        if wb:
            s += (f"A warm build of B (cache mount, npm's default prefer mode) still made "
                  f"{statistics.mean(r['tarball_requests'] for r in wb):.0f} tarball requests "
                  f"({statistics.mean(r['bytes'] for r in wb) / 1e6:.1f} MB) and succeeded "
                  f"{sum(r['ok'] for r in wb)}/{len(wb)} times; ")
        if wc:
            s += (f"a warm build of C made {statistics.mean(r['tarball_requests'] for r in wc):.0f} tarball "
                  f"requests ({statistics.mean(r['bytes'] for r in wc) / 1e6:.1f} MB) and succeeded "
                  f"{sum(r['ok'] for r in wc)}/{len(wc)} times. ")
        s += ("verdaccio 6.8 sends tarballs without Cache-Control, ETag or Last-Modified (checked with curl), so "
              "in its default mode npm finds every cached tarball stale and cannot revalidate it: it downloads "
              "it again "
              "(packuments do carry an ETag, so npm revalidates them cheaply, which is why B's warm bytes are "
              "lower). "
              "So without prefer-offline a warm build re-downloads every tarball and meets the faults again "
              "(B's warm rows), and so does a retry after a failed try (an earlier helper measurement; B makes "
              "no retries here); with it, npm uses what the cache holds and fetches only what is missing. FINDINGS #5's zero-request warm installs need prefer-offline (or a registry "
              "that sends cache headers). The cache key is the tarball URL, so the registry URL must stay "
              "the same from build to build (the benchmark keeps its proxy on a fixed port for this).")
        out.append(s)
    # stalls / time
    a0, a3 = by.get(("A", 0.0)) or by.get(("A", 0)), by.get(("A", top))
    c0, c3 = by.get(("C", 0.0)) or by.get(("C", 0)), by.get(("C", top))
    if c0 and c3 and c0["cold_median_ok_s"] and c3["cold_median_ok_s"]:
        out.append(f"Time: C's median successful cold build took {c0['cold_median_ok_s']:.1f} s at 0% and "
                   f"{c3['cold_median_ok_s']:.1f} s at {top:g}% (scaled time: a stall costs C one "
                   f"{int(doc['config']['setups']['C']['npm_env']['NPM_CONFIG_FETCH_TIMEOUT']) / 1000 / doc['config']['scale']:g} s fetch-timeout, "
                   f"and a retry one pause and the missing tarballs)."
                   + (f" A took {a0['cold_median_ok_s']:.1f} s at 0%." if a0 and a0["cold_median_ok_s"] else "")
                   + " The warm builds with prefer-offline skip the network entirely; what remains is npm "
                   "writing node_modules.")
    return out


# --------------------------------------------------------------------------------------------
# Main


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def registry_url() -> str:
    r = subprocess.run([str(REPO / "scripts/registry.sh"), "url"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or not r.stdout.strip():
        raise SystemExit("bench: the local registry is not up (scripts/registry.sh url): " + r.stderr.strip())
    return r.stdout.strip().splitlines()[-1]


def parse_levels(text: str) -> list[float]:
    out = []
    for part in text.split(","):
        v = float(part.strip().rstrip("%"))
        if not 0 <= v <= 100:
            raise argparse.ArgumentTypeError(f"fault level {part!r} is not a percentage")
        out.append(v)
    return sorted(set(out))


def parse_cell(text: str) -> tuple[str, float, int]:
    m = re.fullmatch(r"([A-Za-z])@([0-9.]+)%?=([0-9]+)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected SETUP@LEVEL=N such as C@3=100, got {text!r}")
    return m.group(1).upper(), float(m.group(2)), int(m.group(3))


def parse_level_kinds(text: str) -> tuple[float, list[str]]:
    m = re.fullmatch(r"([0-9.]+)%?=([a-z_,]+)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected LEVEL=KIND[,KIND] such as 10=reset,cut, got {text!r}")
    return float(m.group(1)), [k for k in m.group(2).split(",") if k]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=10, help="cold builds per setup and fault level (default 10)")
    p.add_argument("--cell-runs", type=parse_cell, action="append", default=[],
                   help="cold builds for one cell, e.g. C@3=100 (repeatable; overrides --runs)")
    p.add_argument("--warm-runs", type=int, default=3, help="warm builds per setup with a cache and level (default 3)")
    p.add_argument("--levels", type=parse_levels, default=parse_levels("0,1,3"),
                   help="percent of tarball requests faulted, comma-separated (default 0,1,3)")
    p.add_argument("--setups", default="A,B,C", help="which setups (default A,B,C)")
    p.add_argument("--kinds", default="mix",
                   help="the faults of each faulted cell, comma-separated: mix (reset, cut and stall evenly), "
                        "reset, cut, stall (that kind alone); default mix")
    p.add_argument("--level-kinds", type=parse_level_kinds, action="append", default=[], metavar="LEVEL=KINDS",
                   help="the kinds of one level instead of --kinds, e.g. 10=reset,cut (repeatable)")
    p.add_argument("--runner", choices=("host", "docker"), default="host",
                   help="host: the installs with this machine's npm; docker: inside a BuildKit build of the "
                        "hub's Dockerfile (its base image's npm, its cache mounts); cold builds only")
    p.add_argument("--scale", type=float, default=10.0, help="divide timeouts, stall and pauses by this (default 10)")
    p.add_argument("--stall-seconds", type=float, default=120.0, help="real stall length before scaling (default 120)")
    p.add_argument("--status-5xx-share", type=float, default=0.0,
                   help="share of the faults answered 503 (default 0; the rest split among reset/cut/stall)")
    p.add_argument("--jobs", type=int, default=1, help="builds at a time (default 1)")
    p.add_argument("--budget-minutes", type=float, default=40.0,
                   help="start no new build after this many minutes (the report says how many ran)")
    p.add_argument("--seed", type=int, default=None, help="base seed (default: from the clock); build i uses base+i")
    p.add_argument("--hub", default=str(REPO / "examples/WBFinHub"), help="the sample hub (default examples/WBFinHub)")
    p.add_argument("--workdir", default=None, help="where builds run (default /dev/shm if present, else the temp dir)")
    p.add_argument("--registry", default=None, help="the upstream registry URL (default: scripts/registry.sh url)")
    p.add_argument("--out", default=None, help="write the Markdown report here (e.g. docs/benchmarks.md)")
    p.add_argument("--json", default=None, help="write every build's record here")
    p.add_argument("--c-attempts", type=int, default=None, choices=range(1, 11), metavar="N",
                   help="what-if: setup C with build.attempts N instead of the default")
    p.add_argument("--render-from", default=None, metavar="JSON",
                   help="run nothing: write --out again from an earlier run's --json file")
    p.add_argument("--also", action="append", default=[], metavar="JSON",
                   help="with --render-from: add another run's results (e.g. a --c-attempts what-if) as a table")
    args = p.parse_args(argv)
    if args.render_from:
        doc = json.loads(Path(args.render_from).read_text())
        doc["also"] = [json.loads(Path(x).read_text()) for x in args.also]
        text = render(doc)
        if args.out:
            write_section(Path(args.out), "npm-faults", text)
        else:
            sys.stdout.write(text)
        return 0

    setup_keys = [s.strip().upper() for s in args.setups.split(",") if s.strip()]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    level_kinds = {lv: ks for lv, ks in args.level_kinds}
    if not kinds or any(k not in FAULT_KINDS for k in kinds + [k for ks in level_kinds.values() for k in ks]):
        p.error(f"--kinds and --level-kinds take {', '.join(FAULT_KINDS)}")
    if set(level_kinds) - set(args.levels):
        p.error("--level-kinds names a level that --levels does not have")
    if args.runner == "docker" and args.warm_runs:
        p.error("--runner docker runs cold builds only: add --warm-runs 0")
    if args.jobs < 1 or args.jobs > 8:
        p.error("--jobs must be 1..8")
    if args.scale <= 0:
        p.error("--scale must be positive")
    if not 0 <= args.status_5xx_share <= 1:
        p.error("--status-5xx-share must be 0..1")
    hub = Path(args.hub).resolve()
    for rel in ("package.json", "package-lock.json", "frontend/package.json", "frontend/package-lock.json"):
        if not (hub / rel).is_file():
            p.error(f"{hub} has no {rel}")
    upstream = args.registry or registry_url()
    base_dir = args.workdir or ("/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    work = Path(tempfile.mkdtemp(prefix="workhub-bench-", dir=base_dir))
    seed0 = args.seed if args.seed is not None else int(time.time()) % 1_000_000 * 1000
    started = time.monotonic()
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    def log(msg: str) -> None:
        el = time.monotonic() - started
        print(f"[{int(el // 60):3d}m{int(el % 60):02d}s] {msg}", flush=True)

    try:
        env = base_env(work)
        base_image = base_image_of((hub / "Dockerfile").read_text())
        setups_all = make_setups(npm_defaults(env, base_image if args.runner == "docker" else None))
        npm_version = (base_image_npm(base_image) if args.runner == "docker"
                       else subprocess.run(["npm", "--version"], capture_output=True, text=True).stdout.strip()
                       + " (this machine's)")
        if args.c_attempts is not None:
            c = setups_all["C"]
            c.attempts = args.c_attempts
            c.title = f"workhub's defaults with attempts {args.c_attempts}"
            c.note += f" (attempts overridden: {args.c_attempts})"
        for k in setup_keys:
            if k not in setups_all:
                p.error(f"unknown setup {k!r} (A, B, C or P)")
        ctx = Ctx(upstream, hub, work, args.scale, args.stall_seconds, args.status_5xx_share, env, setups_all,
                  args.runner)
        log(f"runner {args.runner}: npm {npm_version}")
        for k in setup_keys:
            s = setups_all[k]
            log(f"setup {k} ({s.title}): {s.scaled_env(args.scale)} tries={s.attempts} (scaled 1/{args.scale:g})")

        lock_lines = sum(1 for rel in ("package-lock.json", "frontend/package-lock.json")
                         for k, v in json.loads((hub / rel).read_text()).get("packages", {}).items() if k)
        ports = [free_port() for _ in range(args.jobs)]
        seed_n = [0]
        seed_lock = threading.Lock()

        def next_seed() -> int:
            with seed_lock:
                seed_n[0] += 1
                return seed0 + seed_n[0]

        # Solo builds first: fill each cache-mount setup's warm template once per worker port (the
        # cache is keyed by URL), which doubles as single-build timing at 0%.
        templates: dict[tuple[str, int], Path] = {}
        solo: list[dict] = []
        for k in setup_keys:
            s = setups_all[k]
            if not s.persist_cache or args.warm_runs == 0:
                r = run_build(ctx, s, 0.0, "cold", next_seed(), ports[0], None)
                solo.append(r)
                log(f"solo {k} cold 0%: {'ok' if r['ok'] else 'FAILED ' + r['reason']} {r['wall_s']:.1f}s "
                    f"req={r['requests']} tarballs={r['tarball_requests']} {r['bytes'] / 1e6:.1f}MB")
                continue
            for port in ports:
                for _ in range(3):  # bounded: the fill runs at 0% faults and should pass at once
                    tdir = work / f"template-{k}-{port}"
                    shutil.rmtree(tdir, ignore_errors=True)
                    r = fill_template(ctx, s, next_seed(), port, tdir)
                    log(f"solo {k} cold 0% (warm template, port {port}): {'ok' if r['ok'] else 'FAILED ' + r['reason']} "
                        f"{r['wall_s']:.1f}s req={r['requests']} tarballs={r['tarball_requests']} {r['bytes'] / 1e6:.1f}MB")
                    if r["ok"]:
                        templates[(k, port)] = tdir
                        solo.append(r)
                        break
                else:
                    raise SystemExit(f"bench: could not fill the warm cache of setup {k} at 0% faults")
            r = run_build(ctx, s, 0.0, "warm", next_seed(), ports[0], templates[(k, ports[0])])
            solo.append(r)
            log(f"solo {k} warm 0%: {'ok' if r['ok'] else 'FAILED ' + r['reason']} {r['wall_s']:.1f}s "
                f"req={r['requests']} tarballs={r['tarball_requests']} {r['bytes'] / 1e6:.1f}MB")

        # The plan: every cell's cold and warm builds, in a seeded random order, except that runs
        # beyond 30 of an enlarged cell come last (so a budget cut takes them first).
        overrides = {(k, lv): n for k, lv, n in args.cell_runs}
        first, rest = [], []
        for k in setup_keys:
            for lv in args.levels:
                for fk in (["none"] if lv == 0 else level_kinds.get(lv, kinds)):
                    n = overrides.get((k, lv), args.runs)
                    for i in range(n):
                        (first if i < max(args.runs, 30) else rest).append((k, lv, "cold", fk))
                    if setups_all[k].persist_cache:
                        first += [(k, lv, "warm", fk)] * args.warm_runs
        rnd = random.Random(seed0)
        rnd.shuffle(first)
        rnd.shuffle(rest)
        plan = first + rest
        total = len(plan)
        log(f"plan: {total} builds ({len(rest)} extra at the end), jobs={args.jobs}, budget {args.budget_minutes:g} min, "
            f"base seed {seed0}, work dir {work}")

        deadline = started + args.budget_minutes * 60
        results: list[dict] = []
        res_lock = threading.Lock()
        queue = list(enumerate(plan))
        q_lock = threading.Lock()
        skipped = [0]

        def worker(port: int) -> None:
            for _ in range(total):  # bounded
                with q_lock:
                    if not queue:
                        return
                    if time.monotonic() > deadline:
                        skipped[0] += len(queue)
                        queue.clear()
                        return
                    i, (k, lv, kind, fk) = queue.pop(0)
                s = setups_all[k]
                r = run_build(ctx, s, lv, kind, next_seed(), port, templates.get((k, port)) if kind == "warm" else None,
                              fk)
                with res_lock:
                    results.append(r)
                    n = len(results)
                f = r["faults"]
                log(f"{n:3d}/{total} {k} {kind:4s} {lv:g}% {fk}: {'ok    ' if r['ok'] else 'FAILED'} {r['wall_s']:6.1f}s "
                    f"tries={r['tries']} req={r['requests']} tgz={r['tarball_requests']} {r['bytes'] / 1e6:.1f}MB "
                    f"faults r{f['reset']}/c{f['cut']}/s{f['stall']}/5xx{f['status_5xx']} seed={r['seed']}"
                    + ("" if r["ok"] else f" ({r['reason']})"))

        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as ex:
            futs = [ex.submit(worker, port) for port in ports]
            for fu in futs:
                fu.result()
        if skipped[0]:
            log(f"budget reached: {skipped[0]} planned builds were not run")

        rows = summarize(results, setup_keys, args.levels)
        elapsed = (time.monotonic() - started) / 60
        doc = {
            "date": date, "elapsed_min": elapsed, "machine": machine_info(),
            "config": {
                "setup_keys": setup_keys, "levels": args.levels, "scale": args.scale, "stall_s": args.stall_seconds,
                "status_5xx_share": args.status_5xx_share, "jobs": args.jobs, "base_seed": seed0,
                "hub_name": hub.name, "json": args.json, "budget_minutes": args.budget_minutes,
                "planned": total, "skipped": skipped[0], "kinds": kinds,
                "level_kinds": {f"{lv:g}": ks for lv, ks in level_kinds.items()}, "runner": args.runner,
                "npm_version": npm_version, "base_image": base_image,
                "docker_cache": (os.environ.get("WORKHUB_BENCH_CACHE") or "empty") if args.runner == "docker" else None,
                "workdir_kind": "/dev/shm (tmpfs)" if str(work).startswith("/dev/shm") else str(work.parent),
                "tarballs_hint": f"{lock_lines} lockfile entries; about "
                                 f"{statistics.median([r['tarball_requests'] for r in solo if r['kind'] == 'cold']):.0f} "
                                 f"tarball requests and "
                                 f"{statistics.median([r['bytes'] for r in solo if r['kind'] == 'cold']) / 1e6:.0f} MB "
                                 "of registry traffic in a clean cold install" if solo else f"{lock_lines} lockfile entries",
                "setups": {k: dataclasses.asdict(v) for k, v in setups_all.items()},
                "transient_function": TRANSIENT_SH,
            },
            "rows": rows, "solo": solo, "results": results,
        }
        for r in rows:
            lo, hi = r["ci"]
            log(f"{r['setup']} {faults_label(r)}: cold {r['cold_ok']}/{r['cold_n']} [{pct(lo) if r['cold_n'] else '-'}"
                f" - {pct(hi) if r['cold_n'] else '-'}] median {fmt_s(r['cold_median_ok_s'])}; warm {r['warm_ok']}/{r['warm_n']} "
                f"{fmt_s(r['warm_median_s'])}")
        if args.json:
            Path(args.json).write_text(json.dumps(doc, indent=1, default=str) + "\n")
            log(f"wrote {args.json}")
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            write_section(Path(args.out), "npm-faults", render(doc))
            log(f"wrote {args.out}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fill_template(ctx: Ctx, setup: Setup, seed: int, port: int, tdir: Path) -> dict:
    """A cold 0% build whose npm cache is kept in tdir (the warm template)."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"{setup.key}-fill-", dir=ctx.work))
    try:
        hub = run_dir / "hub"
        copy_hub(ctx.hub, hub)
        tdir.mkdir(parents=True)
        env = dict(ctx.env)
        env.update(setup.scaled_env(ctx.scale))
        env["NPM_CONFIG_CACHE"] = str(tdir)
        ok, reason = True, ""
        t0 = time.monotonic()
        with running_proxy(ctx.upstream, Faults(), seed=seed, listen_port=port) as (url, stats):
            env["NPM_CONFIG_REGISTRY"] = url
            for name, argv, _sub in STEPS:
                r = subprocess.run(argv, cwd=hub, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
                if r.returncode != 0:
                    ok, reason = False, f"{name}: {error_code(r.stdout + r.stderr)}"
                    break
            wall = time.monotonic() - t0
            snap = stats.snapshot()
        shutil.rmtree(tdir / "_logs", ignore_errors=True)
        return {"setup": setup.key, "level_pct": 0.0, "kind": "cold", "seed": seed, "ok": ok, "wall_s": round(wall, 2),
                "tries": 1, "reason": reason, "requests": snap["requests"],
                "tarball_requests": snap["tarball_requests"], "bytes": snap["bytes_sent"], "faults": snap["faults"]}
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
