"""python -m workhub dockerfile check|conform PATH...

`check` prints every way each hub Dockerfile departs from the npm cache pattern, with the fix,
and exits 1 if there is any. `conform` rewrites each file in place to follow it, printing what it
fixed ("already conforms" when there was nothing to fix); it exits 1 only when a file cannot be
read, parsed or rewritten safely, and then leaves that file as it was.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components.dockerfile import DockerfileError, check_text, conform


def _check(path: Path) -> bool:
    """Print the file's violations; True when it has none."""
    violations = check_text(path.read_text(), str(path))
    for violation in violations:
        print(violation)
    return not violations


def _conform(path: Path) -> bool:
    """Rewrite the file to follow the pattern and say what changed; True when it now does."""
    text = path.read_text()
    fixed, rewritten = check_text(text, str(path)), conform(text, str(path))
    if rewritten == text:
        print(f"{path}: already conforms")
        return True
    left = check_text(rewritten, str(path))
    if left:
        raise DockerfileError("\n".join(str(v) for v in left) + f"\n{path}: left unchanged: conform cannot "
                              "fix the above; fix them by hand")
    path.write_text(rewritten)
    print(f"{path}: fixed {len(fixed)} problem(s):")
    for violation in fixed:
        print(f"  - line {violation.line} ({violation.rule}): {violation.message}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workhub dockerfile", description=__doc__.split("\n\n")[0])
    parser.add_argument("operation", choices=["check", "conform"])
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="a hub Dockerfile")
    args = parser.parse_args(argv)
    ok = True
    for path in args.paths:
        try:
            ok = (_check(path) if args.operation == "check" else _conform(path)) and ok
        except OSError as error:
            print(f"{path}: cannot read it ({error.strerror}); fix: pass the path of a hub Dockerfile", file=sys.stderr)
            ok = False
        except DockerfileError as error:
            print(error, file=sys.stderr)
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
