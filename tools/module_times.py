"""The "Time per module" table of tests/README.md from what `pytest --durations=0` printed.

    scripts/test --durations=0 --durations-min=0 | tee run.log
    .venv/bin/python -m tools.module_times run.log

(--durations-min=0: pytest leaves out durations under 5 ms otherwise, and with them their tests.)

Each `12.34s call|setup|teardown tests/x.py::test` line counts toward its module: a module's
seconds are its tests' calls plus their fixtures' setup and teardown (a module fixture's cost lands
on the test that first or last used it). Tests are counted once each, by their call line.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

# The test's id runs to the end of the line: a parameter's id may hold spaces.
LINE = re.compile(r"^(\d+(?:\.\d+)?)s (call|setup|teardown) +(\S+?\.py)::(.+?)\s*$")


def module_times(log: str) -> dict[str, tuple[int, float]]:
    """Per module: (tests, seconds), slowest module first."""
    tests: dict[str, set] = defaultdict(set)
    seconds: dict[str, float] = defaultdict(float)
    for match in filter(None, map(LINE.match, log.splitlines())):
        took, when, module, test = match.groups()
        seconds[module] += float(took)
        if when == "call":
            tests[module].add(test)
    return {m: (len(tests[m]), seconds[m]) for m in sorted(seconds, key=lambda m: -seconds[m])}


def table(times: dict[str, tuple[int, float]]) -> str:
    rows = ["| module | tests | seconds |", "| --- | ---: | ---: |"]
    rows += [f"| `{module}` | {count} | {took:.0f} |" for module, (count, took) in times.items()]
    count, took = sum(c for c, _ in times.values()), sum(t for _, t in times.values())
    rows.append(f"| all | {count} | {took:.0f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table(module_times(Path(sys.argv[1]).read_text())))
