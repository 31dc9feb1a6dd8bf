"""scripts/workhub dockerfile check|conform [--context DIR] [--base-image IMAGE] PATH...

`check` prints every way each hub Dockerfile departs from the npm cache pattern, with the fix,
and exits 1 if there is any; warnings (a base image other than workhub:baseImage, OS package
downloads without a cache mount) are printed too but do not fail it. `conform` rewrites each file
in place to follow the pattern, printing what it fixed ("already conforms" when there was nothing
to fix) and the warnings it leaves; it exits 1 only when a file cannot be read, parsed or
rewritten safely, and then leaves that file as it was.

It works from any directory: paths are taken relative to the directory it was started from.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

import yaml

from components.config.models import DEFAULT_BASE_IMAGE, NAMESPACE
from components.plan.dockerfile import DockerfileError, Violation, check_text, conform

PROJECT = Path(__file__).resolve().parent.parent / "Pulumi.yaml"


def project_base_image() -> str:
    """workhub:baseImage as the project's Pulumi.yaml sets it, else its default."""
    try:
        value = ((yaml.safe_load(PROJECT.read_text()) or {}).get("config") or {}).get(f"{NAMESPACE}:baseImage")
    except (OSError, yaml.YAMLError):
        value = None
    value = value.get("value") if isinstance(value, dict) else value
    return value if isinstance(value, str) else DEFAULT_BASE_IMAGE


def _split(violations: list[Violation]) -> tuple[list[Violation], list[Violation]]:
    return [v for v in violations if v.severity != "warning"], [v for v in violations if v.severity == "warning"]


def _check(shown: str, path: Path, context: Path, base_image: str) -> bool:
    """Print the file's violations and warnings; True when it has no violation."""
    violations = check_text(path.read_text(), shown, context, base_image)
    for violation in violations:
        print(violation)
    return not _split(violations)[0]


def _conform(shown: str, path: Path, context: Path, base_image: str) -> bool:
    """Rewrite the file to follow the pattern and say what changed; True when it now does."""
    text = path.read_text()
    fixed, _ = _split(check_text(text, shown, context, base_image))
    rewritten = conform(text, shown, context)
    left, warnings = _split(check_text(rewritten, shown, context, base_image))
    if left:
        # Named as the original file has them (the rewrite's lines may differ), where check named them too.
        found = {(v.rule, v.message): v for v in fixed}
        left = [found.get((v.rule, v.message), v) for v in left]
        raise DockerfileError("\n".join(str(v) for v in left) + f"\n{shown}: left unchanged: conform cannot "
                              "fix the above; fix them by hand")
    if rewritten == text:
        print(f"{shown}: already conforms")
    else:
        path.write_text(rewritten)
        print(f"{shown}: fixed {len(fixed)} problem(s):")
        for violation in fixed:
            print(f"  - line {violation.line} ({violation.rule}): {violation.message}")
    for warning in warnings:
        print(warning)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/workhub dockerfile", description=__doc__.split("\n\n")[1])
    parser.add_argument("operation", choices=["check", "conform"])
    parser.add_argument("paths", nargs="+", metavar="PATH", help="a hub Dockerfile")
    parser.add_argument("--context", metavar="DIR",
                        help="the build context (default: the Dockerfile's directory); the manifests an install "
                             "needs are the ones this directory has")
    parser.add_argument("--base-image", metavar="IMAGE", default=None,
                        help="warn about a FROM of another image (default: workhub:baseImage of this project)")
    args = parser.parse_args(argv)
    # scripts/workhub runs from the project root; the paths the user typed are relative to where they were.
    caller = Path(os.environ.get("WORKHUB_CALLER_DIR") or os.getcwd())
    base_image = args.base_image or project_base_image()
    ok = True
    for shown in args.paths:
        path = caller / shown
        context: Optional[Path] = caller / args.context if args.context else path.parent
        try:
            if not context.is_dir():
                raise DockerfileError(f"{shown}: its build context {args.context or context} is not a directory\n"
                                      "    fix: pass the hub's context directory with --context")
            run = _check if args.operation == "check" else _conform
            ok = run(shown, path, context, base_image) and ok
        except OSError as error:
            print(f"{shown}: cannot read it ({error.strerror}); fix: pass the path of a hub Dockerfile",
                  file=sys.stderr)
            ok = False
        except DockerfileError as error:
            print(error, file=sys.stderr)
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
