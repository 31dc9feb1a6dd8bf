#!/usr/bin/env python3
"""docs/benchmarks.md, all of it, from the committed results files: the one command that writes it.

    python bench/render.py            # write docs/benchmarks.md
    python bench/render.py --check    # exit 1 (with a diff) when docs/benchmarks.md is not what it renders

Every figure in the page comes from a results file below, so none can be edited by hand without
tests/unit/project/test_benchmarks.py failing. After a new benchmark run (`--json` to a results file), add or
replace its file here and run this again.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
DOC = Path("docs/benchmarks.md")

# bench/npm_faults.py: the main run, then the other runs shown beside it, each with its name in the
# page's table of runs and how the page introduces it (a run's own JSON cannot know what came after it).
NPM_FAULTS_MAIN = "bench/results.json"
NPM_FAULTS_ALSO = [
    ("bench/results-10pct-host.json", "10% faults, each kind apart",
     "A run at 10% of tarball requests faulted, one fault kind per cell (resets, cuts and stalls apart), "
     "installs outside Docker with this machine's npm as in the main run; a small run, few builds per cell "
     "(see the first table), so its intervals are wide"),
    ("bench/results-10pct-host-2.json", "10% faults, each kind apart, again",
     "The same at 10%, run again right after with up to 5 builds per cell and a 14 min budget, while an "
     "end-to-end test shared the machine (so its times are longer)"),
    ("bench/results-10pct-docker.json", "10% faults, inside real builds",
     "The same cells at 10%, with the installs inside real BuildKit builds of the hub's Dockerfile: its base "
     "image's npm (the first table says which) and its cache mounts, a new one per build "
     "(`WORKHUB_BENCH_CACHE=fresh`); 2 builds per cell"),
    ("bench/results-faster-under-faults.json", "Faster under faults: previous vs new defaults",
     "Side by side in one run (issue 13, item 9): P, workhub's previous defaults (npm fetch-timeout 30 s, retry "
     "pauses 2-15 s, a cut download retried only by a new build try after a 10 s x try pause), and C, today's "
     "(fetch-timeout 5 s, retry pauses 1-4 s, the install retried inside its step by `eval \"$WORKHUB_RETRY\" npm "
     "ci`), with the installs inside real BuildKit builds of WBFinHub's Dockerfile, a new empty cache mount per "
     "build, at real time (no scaling: `--scale 1`, the stall 120 s), while other work loaded the 2 CPUs"),
    ("bench/results-cut-fill.json", "Cut downloads: the cache fill vs the retry before it",
     "Side by side in one run (issue 13, item 9, the cut cells): F, workhub's defaults without the cache fill "
     "(`build.installFillCache: false`: after a cut, the install retry runs the whole `npm ci` again, and npm "
     "extracts everything else before a cut fails it, then removes it), and C, today's (the try stops at its first "
     "cut tarball, the lockfile's packages are fetched into the npm cache by npm's own pacote, each download tried "
     "again on its own, then one `npm ci` installs from the cache); inside real BuildKit builds of WBFinHub's "
     "Dockerfile (137 root and 265 front-end lockfile entries), a new empty cache mount per build, at real time, "
     "the cells interleaved in random order, while three other sessions' tests loaded the 2 CPUs (so single times "
     "vary by 2x: compare medians of the same run)"),
    ("bench/results-stalls-resets.json", "Stalls and resets: the project's settings before issue 22 vs today's",
     "Side by side in one run (issue 22): Y, what every stack built with until then (the project's Pulumi.yaml "
     "still pinned npm's fetch-timeout 30 s and retry pauses 2 s then 15 s over the defaults; the install retry "
     "and the cache fill as today), and C, today's (Pulumi.yaml holds the defaults: fetch-timeout 5 s, pauses 1 s "
     "then 4 s); a 1% stall cell with 30 s stalls and a 10% reset cell, inside real BuildKit builds of WBFinHub's "
     "Dockerfile, a new empty cache mount per build, at real time, 2 builds a cell, the cells in random order. Its "
     "first four builds (C: 55.3 s fault-free, 56.4 s at 10% reset, 38.1 s at 1% stall; Y: 74.6 s at 10% reset, "
     "for half of it) ran while this session's unit suite loaded the 2 CPUs, so C's fault-free median is high: "
     "C's builds without that load took 35.9 s fault-free, 39.9 s at 1% stall and 32.6 s at 10% reset, Y's "
     "25.0 s and 35.1 s fault-free, 43.9 s and 56.5 s at 1% stall and 54.4 s at 10% reset"),
    ("bench/results-stalls-resets-2.json", "Stalls and resets again, 3 builds a cell",
     "The same cells again right after, 3 builds a cell, with nothing else of this session on the CPUs (the "
     "other sessions' tests wait for the same lock). One of C's three builds at 1% stall drew no stall (its "
     "others drew 5 and 4, 26.0 s and 31.0 s); Y's three drew 3, 4 and 8 stalls, each costing its install the "
     "whole 30 s"),
    ("bench/results-whatif-attempts5.json", "What-if: 5 tries",
     "What-if run, before 5 tries became the default: C with `build.attempts` 5, which is today's default"),
    ("bench/results-3attempts.json", "Earlier: 3 tries",
     "Earlier run, when workhub's defaults allowed only 3 tries (`workhub:build.attempts: 3`); its C rows "
     "are that old default, not today's. Its 3% cell is why the default is now 5 tries"),
]
# bench/deploys.py
DEPLOYS = "bench/results-deploys.json"
# bench/noop_up.py
NOOP_UP = "bench/results-noop-up.json"
# bench/swarm_scaling.py
SWARM = "bench/results-swarm.json"


def load(path: str) -> dict:
    doc = json.loads((REPO / path).read_text())
    doc["path"] = path
    return doc


def sections() -> list[tuple[str, str]]:
    """(section name, Markdown) of every benchmark, in page order."""
    import deploys
    import noop_up
    import npm_faults
    import swarm_scaling

    main = load(NPM_FAULTS_MAIN)
    main["also"] = [dict(load(path), name=name, caption=caption) for path, name, caption in NPM_FAULTS_ALSO]
    return [("npm-faults", npm_faults.render(main)), ("deploys", deploys.render(load(DEPLOYS))),
            ("noop-up", noop_up.render(load(NOOP_UP))), ("swarm", swarm_scaling.render(load(SWARM)))]


def page() -> str:
    """The whole of docs/benchmarks.md: each benchmark's section between its markers."""
    return "\n".join(f"<!-- bench:{name} -->\n{text.strip()}\n<!-- /bench:{name} -->\n" for name, text in sections())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only compare with docs/benchmarks.md")
    args = p.parse_args(argv)
    text, path = page(), REPO / DOC
    if args.check:
        old = path.read_text() if path.exists() else ""
        if old != text:
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                                       str(DOC), "rendered"))
            print(f"{DOC} is not what `python bench/render.py` renders from the results files", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
