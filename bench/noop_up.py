#!/usr/bin/env python3
"""A no-op `scripts/workhub up` against an `up` of an empty Pulumi program on the same CLI, in
paired, interleaved runs, with the time of each step of the no-op.

Run on demand (not a test), while no end-to-end test runs (it starts the test host):
``python bench/noop_up.py --runs 6 --out docs/benchmarks.md``. It starts its own test host (its
own state directory) and the local npm registry, deploys the sample hubs to a `bench` stack (its
own project, file backend and free host ports, so no developer's `local` stack is touched) and an
empty inline program to a stack beside it, then runs each N times, alternating which goes first.
Every run is a fresh process, as a user's command is:

- ``empty``: Python starts, imports the Automation API and runs `up` of a program with no
  resources (same CLI, same engine environment, same kind of backend);
- ``workhub``: `scripts/setup.sh`, then what `python -m workhub up` does for the local stack, step
  by step: the toolchain check, the test host and the registry (`up`: idempotent), the stack's
  config, the lock check and the `up` itself (policy pack, dynamic provider, program).

The totals are timed from outside the process, the steps inside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
START = time.monotonic()
from pulumi import automation as auto  # noqa: E402

IMPORTED = time.monotonic()
STACK, EMPTY = "bench", "bench-empty"


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


class Steps:
    """Seconds per named step, from the start of the process."""

    def __init__(self) -> None:
        self.seconds = {"python + imports": IMPORTED - START}

    @contextmanager
    def step(self, name: str):
        began = time.monotonic()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - began


def empty_child(work: Path) -> dict[str, float]:
    from workhub import engine as eng

    steps = Steps()
    with steps.step("engine up"):
        engine = eng.local_engine(work_dir=work / "empty", state_dir=work)
        workspace = auto.LocalWorkspace(work_dir=str(work / "empty"), program=lambda: None, env_vars=engine.env())
        auto.Stack.create_or_select(EMPTY, workspace).up(color="never")
    return steps.seconds


def workhub_child(work: Path) -> dict[str, float]:
    """The steps of `python -m workhub up` for the local stack, on the bench stack."""
    steps = Steps()
    with steps.step("python + imports"):
        from workhub import engine as eng, locks
    with steps.step("toolchain"):
        eng.ensure_toolchain()
    with steps.step("test host"):
        host = eng.testhost_up(state_dir=work / "host")
    with steps.step("registry"):
        eng.registry_up()
    with steps.step("stack config"):
        engine = eng.local_engine(work_dir=work / "project", state_dir=work)
        values = json.loads((work / "values.json").read_text())
        stack = eng.local_stack(engine, STACK, host, values)
    with steps.step("lock check"):
        locks.prepare(stack, engine.env(), engine.work_dir, engine.backend_url, say=log)
    with steps.step("engine up"):
        result = eng.run("up", stack, on_output=lambda line: None)
    changed = {op: n for op, n in (result.summary.resource_changes or {}).items() if op != "same"}
    if changed:
        raise SystemExit(f"the no-op up changed something: {changed}")
    return steps.seconds


def plain_values(stack_file: Path) -> dict[str, str]:
    """The plain config of a stack file as `--path` keys (what `python -m workhub up` sets each time)."""
    import yaml

    values: dict[str, str] = {}

    def flatten(prefix: str, value) -> None:
        if isinstance(value, dict) and set(value) != {"secure"}:
            for key, inner in value.items():
                flatten(f"{prefix}.{key}", inner)
        elif not isinstance(value, dict):
            values[prefix] = str(value)

    for key, value in (yaml.safe_load(stack_file.read_text()).get("config") or {}).items():
        flatten(key, value)
    return values


def setup(work: Path) -> None:
    from tests.e2e_fixtures import new_local_stack  # the e2e tests' throwaway stacks
    from workhub import engine as eng

    eng.ensure_toolchain()
    host = eng.testhost_up(state_dir=work / "host")
    registry = eng.registry_up()
    engine, _ = new_local_stack(work, host, registry, name=STACK, project="project")
    values = plain_values(work / "project" / f"Pulumi.{STACK}.yaml")
    (work / "values.json").write_text(json.dumps(values))
    # As the last `up` of the stack through workhub left it: its config fingerprint written.
    stack = eng.local_stack(engine, STACK, host, values)
    log("first up of the bench stack (builds and deploys the sample hubs)")
    stack.up(color="never")
    (work / "empty").mkdir()
    (work / "empty" / "Pulumi.yaml").write_text("name: empty\nruntime: python\n")
    log("first up of the empty program")
    empty_child(work)


def timed(kind: str, work: Path) -> dict:
    if kind == "empty":
        argv = [sys.executable, __file__, "--child", kind, str(work)]
    else:
        argv = ["bash", "-c", f'WORKHUB_TOOLCHAIN_BIN="$("{REPO}/scripts/setup.sh" --print-toolchain)" && '
                'export WORKHUB_TOOLCHAIN_BIN && exec "$0" "$@"', sys.executable, __file__,
                "--child", kind, str(work)]
    began = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    total = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{done.stderr[-3000:]}")
    return {"total": total, "steps": json.loads(done.stdout.splitlines()[-1])}


def render(doc: dict) -> str:
    """The section of docs/benchmarks.md (bench/render.py) from a results file, with its notes."""
    machine = doc.get("machine_line") or ", ".join(f"{k}: {v}" for k, v in doc["machine"].items())
    text = report(doc["runs"], machine, doc["when"])
    return text + ("\n\n" + doc["notes"] if doc.get("notes") else "")


def report(runs: list[dict], machine: str, when: str) -> str:
    empty = [r["empty"]["total"] for r in runs]
    whole = [r["workhub"]["total"] for r in runs]
    ratios = [w / e for w, e in zip(whole, empty)]
    engine = [r["workhub"]["steps"]["engine up"] / r["empty"]["steps"]["engine up"] for r in runs]
    steps = list(runs[0]["workhub"]["steps"])
    setup_s = [r["workhub"]["total"] - sum(r["workhub"]["steps"].values()) for r in runs]
    lines = [
        "## No-op `scripts/workhub up` against an empty program's `up`",
        "",
        f"{when}; {machine}",
        f"`python bench/noop_up.py --runs {len(runs)}`: {len(runs)} pairs, interleaved (the order alternates),",
        "each run a fresh process; the sample hubs deployed to a `bench` stack on the test host.",
        "",
        "| | median s | min s | max s |",
        "| --- | ---: | ---: | ---: |",
        f"| empty program `up` | {statistics.median(empty):.2f} | {min(empty):.2f} | {max(empty):.2f} |",
        f"| no-op workhub `up` (whole command) | {statistics.median(whole):.2f} | {min(whole):.2f} | {max(whole):.2f} |",
        f"| ratio, per pair | {statistics.median(ratios):.2f} | {min(ratios):.2f} | {max(ratios):.2f} |",
        f"| ratio of the engine `up` alone | {statistics.median(engine):.2f} | {min(engine):.2f} | {max(engine):.2f} |",
        "",
        "Where the no-op's time goes (median s per step):",
        "",
        "| step | median s |",
        "| --- | ---: |",
        f"| scripts/setup.sh and process start | {statistics.median(setup_s):.2f} |",
        *(f"| {step} | {statistics.median(r['workhub']['steps'][step] for r in runs):.2f} |" for step in steps),
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--out", type=Path, help="write the results into this Markdown file (its noop-up section)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, work = args.child
        print(json.dumps((empty_child if kind == "empty" else workhub_child)(Path(work))))
        return 0
    from report import machine_info

    info, when = machine_info(), f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
    with tempfile.TemporaryDirectory(prefix="workhub-bench-noop-") as tmp:
        work = Path(tmp)
        setup(work)
        runs = []
        try:
            for i in range(args.runs):
                order = ["empty", "workhub"] if i % 2 == 0 else ["workhub", "empty"]
                pair = {kind: timed(kind, work) for kind in order}
                log(f"pair {i + 1}/{args.runs}: empty {pair['empty']['total']:.2f} s, "
                    f"workhub {pair['workhub']['total']:.2f} s")
                runs.append(pair)
        finally:
            from workhub import engine as eng

            stack = eng.local_engine(work_dir=work / "project", state_dir=work).stack(STACK)
            stack.destroy(color="never")
            eng.testhost("down", "--purge", state_dir=work / "host")
    text = report(runs, ", ".join(f"{k}: {v}" for k, v in info.items()), when)
    (REPO / "bench" / "results-noop-up.json").write_text(json.dumps({"machine": info, "when": when, "runs": runs},
                                                                    indent=2))
    print(text)
    if args.out:
        from report import write_section

        write_section(args.out, "noop-up", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
