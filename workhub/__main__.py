"""python -m workhub [up|preview|refresh|destroy|outputs] [--stack NAME]
   python -m workhub dockerfile check|conform PATH...

With no stack, or `--stack local`, it works on the embedded default: it starts the throwaway
SSH + Docker test host on 127.0.0.1 and points the `local` stack at it. Any other stack uses the
backend you are logged in to (`pulumi login`) and the config its operator set.
"""

from __future__ import annotations

import argparse
import sys

from pulumi import automation as auto

from . import engine as eng


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["dockerfile"]:
        from . import dockerfiles

        return dockerfiles.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m workhub", description=__doc__.split("\n\n")[0])
    parser.add_argument("operation", nargs="?", default="up",
                        choices=["up", "preview", "refresh", "destroy", "outputs"])
    parser.add_argument("--stack", default=eng.LOCAL_STACK, help="stack name (default: local)")
    args = parser.parse_args(argv)

    print(f"workhub: {args.operation} of stack {args.stack!r}", file=sys.stderr, flush=True)
    eng.ensure_toolchain()
    if args.stack == eng.LOCAL_STACK:
        engine = eng.local_engine()
        host = eng.testhost_up()
        print(f"workhub: test host ready: {host['user']}@{host['host']}:{host['port']}", file=sys.stderr)
        npm_registry = eng.registry_up()
        print(f"workhub: local npm registry cache ready: {npm_registry}", file=sys.stderr)
        stack = engine.stack(args.stack)
        eng.configure_local(engine, stack, host, eng.local_config(host, npm_registry))
    else:
        engine = eng.Engine()
        stack = engine.stack(args.stack)

    if args.operation == "outputs":
        print(eng.outputs_summary(stack.outputs()))
        return 0
    try:
        result = eng.run(args.operation, stack)
    except auto.errors.CommandError as error:
        print(f"workhub: {args.operation} of {args.stack!r} failed:\n{error}", file=sys.stderr)
        return 1
    if args.operation == "up":
        print(f"\nworkhub: stack {args.stack!r} is up; what changed: {result.summary.resource_changes}")
        print(eng.outputs_summary(result.outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
