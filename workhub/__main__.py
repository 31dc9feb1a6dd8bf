"""scripts/workhub VERB [--stack NAME] [the verb's options]   (no VERB: up; `VERB --help`: its options)
   scripts/workhub dockerfile check|conform PATH...
   scripts/workhub pulumi ARGS...   (the project's Pulumi CLI; see workhub/pulumi_cli.py)
   (`python -m workhub ...` with the project's .venv is the same, from any directory.)

With no stack, or `--stack local`, it works on the embedded default: it starts the throwaway
SSH + Docker test host on 127.0.0.1 and points the `local` stack at it. Any other stack uses the
backend you are logged in to (`scripts/workhub pulumi login`) and the config its operator set, in
this checkout's Pulumi.yaml and Pulumi.<stack>.yaml (or those in WORKHUB_PROJECT_DIR when it is set).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Optional

from pulumi import automation as auto

from components.config.models import StackConfig
from components.plan.base_images import missing_base_images
from components.render.host.deploy import prune_script, status_script
from components.ssh import RemoteCommandError

from . import data, guards, locks, swarm_status
from . import engine as eng
from .outputs import aligned, changes, outputs_table
from .lean import masked_outputs

# Operations on a deployed stack: for the local stack they start nothing, they only connect.
CONNECT_ONLY = {"outputs", "status", "prune", "backup", "restore"}


def last_attempt(row: dict) -> str:
    """The last attempt of a hub since its running container was made (a build, a pull, or a deploy
    that failed): its result, its image and its log; "-" when there was none (a build from before it,
    which a later deploy such as a revert superseded, is not one)."""
    if not row.get("last_attempt"):
        return "-"
    log = f" (log {row['last_log']})" if row.get("last_log") else ""
    return f"{row['last_attempt']}: {row.get('last_image') or '?'}{log}"


def format_status(rows: list[dict]) -> str:
    """The status lines as an aligned table: the build (result, attempts, log) is the one that made
    the running image; a later attempt (a build, or a deploy that failed) shows apart, in LAST_ATTEMPT."""
    columns = ["hub", "container", "image", "since", "health", "proxy", "build", "attempts", "log", "last_attempt"]
    rows = [{**row, "last_attempt": last_attempt(row)} for row in rows]
    table = [[c.upper() for c in columns]] + [[str(row.get(c) or "-") for c in columns] for row in rows]
    return "\n".join(aligned(table, indent=""))


def destroyed_message(stack: str, purged: bool, config: Optional[StackConfig] = None,
                      removed: Mapping[str, list[str]] = {}) -> str:
    """What a destroy removed from the host (or the Swarm: `config`, and with `purged` the volumes
    `removed` on each node), and what it keeps and why."""
    if config is not None and config.swarm is not None:
        return swarm_destroyed_message(stack, purged, config, removed)
    kept = [] if purged else ["the hubs' named volumes (their data; `scripts/workhub destroy --purge-data` removes them)"]
    kept += ["the build cache with its npm cache mounts (so a new stack builds fast; "
             "`scripts/workhub prune --reset-cache` empties it)",
             "the build logs and records under ~/.workhub/builds (the history `status` reads)",
             "the base and proxy images (other stacks use them)"]
    removed_text = "containers, proxies, Compose and env files, images and build context uploads"
    if purged:
        removed_text += ", and its volumes"
    return "\n".join([f"workhub: stack {stack!r} destroyed: its {removed_text} are gone from the host; it keeps:",
                      *(f"  - {item}" for item in kept)])


def swarm_destroyed_message(stack: str, purged: bool, config: StackConfig, removed: Mapping[str, list[str]]) -> str:
    """A Swarm stack's destroy: its services are off the Swarm; its volumes stay on their nodes (or,
    purged, the ones removed, by node); the Swarm, its nodes, the images and the build node's cache stay."""
    swarm = config.swarm
    assert swarm is not None
    holders = [f"{hub.name} on {node.name}" for hub in config.hubs
               if hub.volumes and (node := swarm.data_node(hub.name)) is not None]
    gone = "its hubs' and its proxy's services, its network, configs and secrets are off its Swarm"
    if purged:
        volumes = [f"{volume} on {node}" for node, names in removed.items() for volume in names]
        gone += f", and its volumes are gone: {', '.join(volumes)}" if volumes else "; no volume of it was on its nodes"
    kept = [] if purged or not holders else [
        f"the hubs' volumes (their data) on their data nodes: {', '.join(holders)} "
        f"(`scripts/workhub destroy --stack {stack} --purge-data` removes them)"]
    build = swarm.build_node()
    kept += [f"the Swarm: {', '.join(node.name for node in swarm.nodes)} stay in it, with their labels "
             "(docs/swarm.md, \"Going back to one host\": how to take them out)",
             "the hubs' images in the registry and on the nodes, and the base and proxy images"]
    if build is not None:
        kept.append(f"on the build node {build.name}: the build cache with its npm cache mounts and the build logs "
                    "under ~/.workhub/builds (`scripts/workhub prune --reset-cache` empties the cache)")
    return "\n".join([f"workhub: stack {stack!r} destroyed: {gone}; it keeps:", *(f"  - {item}" for item in kept)])


def connect_local(engine: eng.Engine, needs_host: bool) -> auto.Stack:
    """The deployed local stack, and with `needs_host` a check that the test host it points at
    runs; starts nothing (NotRunning says what is missing and what starts it)."""
    try:
        stack = eng.existing_stack(engine, eng.LOCAL_STACK)
    except eng.NoSuchStack as error:
        raise eng.NotRunning(str(error)) from None
    if needs_host:
        host = eng.testhost_running(engine.state_dir)
        config = eng.flat_config(stack.get_all_config())
        if (config.get("workhub:host.port"), config.get("workhub:host.hostKey")) != (str(host["port"]),
                                                                                  host["host_public_key"]):
            raise eng.NotRunning(f"the local stack points at another test host than the one on "
                                     f"127.0.0.1:{host['port']}; 'scripts/workhub up' points it there")
    return stack


def guard_destroy(stack: auto.Stack, args: argparse.Namespace) -> None:
    """Before a destroy touches anything: a stack with protected resources is refused, saying how
    to unprotect them; then the stack's name must be typed back or given with --yes (guards)."""
    protected = eng.protected_resources(stack)
    if protected:
        raise guards.Refused(guards.protected_message(stack.name, protected))
    guards.confirm_destroy(stack.name, args.purge_data, args.yes)


def say_test_host(engine: eng.Engine, host: Mapping[str, Any], builds: bool) -> None:
    """The test host is ready, and (it cannot pull) which images its builds can start FROM; with
    `builds`, before any build, each hub Dockerfile's FROM of another image, whose build would fail."""
    images = host.get("base_images") or []
    can = f"; it cannot pull images: its builds can start FROM {', '.join(images)}" if images else ""
    print(f"workhub: test host ready: {host['user']}@{host['host']}:{host['port']}{can}", file=sys.stderr)
    if builds and images:
        for line in missing_base_images(eng.local_dockerfiles(engine.work_dir), images, engine.work_dir):
            print(f"workhub: warning: {line}", file=sys.stderr)


def open_stack(args: argparse.Namespace) -> tuple[eng.Engine, auto.Stack]:
    """The engine and the stack the operation works on. A stack that does not exist is refused
    (NoSuchStack), but for `up` of the local stack, which creates it; a destroy is guarded before
    anything starts (guards.Refused). For the local stack, `up`, `preview`, `refresh` and `destroy`
    start the test host and the npm registry cache and point the stack at them; the other
    operations only connect (NotRunning when there is nothing to connect to)."""
    if args.stack == eng.LOCAL_STACK and args.operation in CONNECT_ONLY:
        engine = eng.local_engine()
        return engine, connect_local(engine, needs_host=args.operation != "outputs")
    if args.stack == eng.LOCAL_STACK:
        engine = eng.local_engine()
        if args.operation != "up":
            stack = eng.existing_stack(engine, args.stack)
            if args.operation == "destroy":
                guard_destroy(stack, args)
        host = eng.testhost_up()
        say_test_host(engine, host, builds=args.operation in ("up", "preview"))
        npm_registry = eng.registry_up()
        for_builds = eng.registry_for_builds()
        print(f"workhub: local npm registry cache ready: {npm_registry} (builds: {for_builds})", file=sys.stderr)
        return engine, eng.local_stack(engine, args.stack, host, eng.local_config(host, for_builds),
                                       create=args.operation == "up")
    engine = eng.Engine(work_dir=eng.project_dir())
    stack = eng.existing_stack(engine, args.stack)
    if args.operation == "destroy":
        guard_destroy(stack, args)
    return engine, stack


def show_outputs(args: argparse.Namespace, engine: eng.Engine, stack: auto.Stack) -> int:
    print(outputs_table(masked_outputs(stack)))
    return 0


def show_status(args: argparse.Namespace, engine: eng.Engine, stack: auto.Stack) -> int:
    config, key = eng.stack_config(stack)
    if config.swarm is not None:
        try:
            print(swarm_status.status(config, args.stack, key, log=lambda line: print(line, file=sys.stderr)))
        except RemoteCommandError as error:
            print(f"workhub: status of {args.stack!r} failed: {error}", file=sys.stderr)
            return 1
        return 0
    out = eng.on_host(stack, lambda c: status_script(args.stack, c.hubs, c.host_ports, c.publish_address),
                      "status", log=lambda line: None)
    print(format_status([json.loads(line) for line in out.splitlines() if line.strip()]))
    return 0


def prune(args: argparse.Namespace, engine: eng.Engine, stack: auto.Stack) -> int:
    config, key = eng.stack_config(stack)
    # A Swarm's pre-restore copies are on its data nodes, each pruned there; the build host's images here.
    eng.on_host(stack, lambda c: prune_script(args.stack, c.hubs, args.keep, args.reset_cache,
                                              copies=config.swarm is None), "prune")
    if config.swarm is not None:
        try:
            data.swarm_prune_copies(config, key, args.stack, log=lambda line: print(line, file=sys.stderr))
        except data.DataError as error:
            print(f"workhub: prune of {args.stack!r} failed: {error}", file=sys.stderr)
            return 1
    return 0


def move_data(args: argparse.Namespace, engine: eng.Engine, stack: auto.Stack) -> int:
    """backup and restore of the hubs' volumes."""
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    try:
        if args.operation == "backup":
            manifest = data.backup(stack, args.out or data.default_out_dir(args.stack), args.hub, log)
            print(f"workhub: backup of {args.stack!r} written: {manifest}")
            return 0
        count = data.restore(stack, args.source, args.hub, args.volume, log, args.from_stack, args.from_hub)
        print(f"workhub: {count} volume(s) of {args.stack!r} restored from {args.source}")
        return 0
    except (data.DataError, RemoteCommandError) as error:
        # A script on the host that failed said why in its last line; this repeats it once, last,
        # with the step and the host, and no traceback.
        print(f"workhub: {args.operation} of {args.stack!r} failed: {error}", file=sys.stderr)
        return 1


def run_engine(args: argparse.Namespace, engine: eng.Engine, stack: auto.Stack) -> int:
    """up, preview, refresh and destroy: the Pulumi engine on the stack, then what it did."""
    try:
        if args.operation in ("up", "refresh", "destroy"):
            locks.prepare(stack, engine.env(), engine.work_dir, engine.backend_url, args.force_unlock,
                          say=lambda line: print(line, file=sys.stderr))
            result = eng.run_reported(args.operation, stack, debug=args.debug)
            if result is None:
                return 1
        else:
            result = eng.run(args.operation, stack)
    except locks.LockHeld as error:
        print(f"workhub: {args.operation} of {args.stack!r} did not start: {error}", file=sys.stderr)
        return 1
    except auto.errors.CommandError:
        # The preview: the engine's own display (its diff, then its diagnostics) said why, last.
        print(f"workhub: {args.operation} of {args.stack!r} failed (the engine's message is above)", file=sys.stderr)
        return 1
    if args.operation == "destroy":
        config, _ = eng.stack_config(stack)
        removed: Mapping[str, list[str]] = {}
        if args.purge_data:
            try:
                removed = data.purge(stack, lambda line: print(line, file=sys.stderr))
            except (data.DataError, RemoteCommandError) as error:
                print(f"workhub: destroy of {args.stack!r}: the stack is destroyed, but its volumes were not "
                      f"purged: {error}", file=sys.stderr)
                return 1
        print(destroyed_message(args.stack, args.purge_data, config, removed))
    if args.operation == "refresh":
        print(f"\nworkhub: refresh of {args.stack!r}: {eng.drift_summary(eng.drift_found(stack))}")
    if args.operation == "up":
        print(f"\nworkhub: stack {args.stack!r} is up ({changes(result.summary.resource_changes or {})})")
        print(outputs_table(masked_outputs(stack)))
    return 0


# Each verb on a stack: what it does (its --help line) and the handler that runs it once the stack is open.
VERBS = {
    "up": ("create or update the stack (the default verb)", run_engine),
    "preview": ("show what an up would change, changing nothing", run_engine),
    "refresh": ("read what runs on the host into the stack's state, and report drift", run_engine),
    "destroy": ("remove what the stack runs from its host or Swarm (its volumes stay, but with --purge-data)",
                run_engine),
    "outputs": ("print the stack's outputs", show_outputs),
    "status": ("what runs of each hub (container or service, image, health, build), read on the host", show_status),
    "prune": ("remove all but each hub's newest images and pre-restore copies (--reset-cache: the build cache)",
              prune),
    "backup": ("copy the hubs' volumes to a directory here", move_data),
    "restore": ("put a backup's volumes back on the host", move_data),
}
# Verbs handled by their own parsers (workhub/dockerfiles.py, workhub/pulumi_cli.py); they come first.
TOOLS = {
    "dockerfile": "check or rewrite hub Dockerfiles: dockerfile check|conform PATH... (see dockerfile --help)",
    "pulumi": "the project's Pulumi CLI with this stack's backend: pulumi ARGS...",
}


class VerbParser(argparse.ArgumentParser):
    """A verb's parser: it refuses, with its own usage, a word that is not one of its options (argparse
    leaves that to the command's parser, whose usage lists no verb's options). One of TOOLS refuses to
    parse at all: it comes first, and its own parser reads the rest."""

    def __init__(self, *args, tool: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.tool = tool

    def parse_known_args(self, args=None, namespace=None):
        if self.tool:
            self.error(f"it comes first, before any option: {self.prog} ...")
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def stack_option(default: str) -> argparse.ArgumentParser:
    """The options every verb on a stack takes, as a parent parser; given before the verb too."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stack", default=default, help=f"stack name (default: {eng.LOCAL_STACK})")
    return common


def verb_options(verb: str, parser: argparse.ArgumentParser) -> None:
    """The options of `verb` alone."""
    add = parser.add_argument
    if verb in ("up", "refresh", "destroy"):
        add("--force-unlock", action="store_true",
            help="clear the stack's lock even if another machine holds it")
        add("--debug", action="store_true", help="a failure shows the Python traceback of the step that failed")
    if verb == "destroy":
        add("--purge-data", action="store_true", help="also remove the hubs' volumes (their data) from the host")
        add("--yes", metavar="STACK",
            help="go ahead without asking, for this stack only (--yes=<the stack's name>); a destroy of any "
                 "stack but local, and any --purge-data, asks for the name otherwise")
    if verb == "prune":
        add("--keep", type=int, default=3, help="images kept per hub (default 3)")
        add("--reset-cache", action="store_true", help="also empty the whole build cache, npm cache mounts included")
    if verb in ("backup", "restore"):
        add("--hub", help="only this hub's volumes")
    if verb == "backup":
        add("--out", type=Path, help="the directory to write (default .workhub/backups/<stack>/<time>)")
    if verb == "restore":
        add("--volume", help="only this volume")
        add("--from", dest="source", type=Path, required=True, help="the backup directory (or its manifest.json)")
        add("--from-stack", metavar="STACK",
            help="the backup is of this other stack (without it, another stack's backup is refused)")
        add("--from-hub", metavar="HUB",
            help="put this hub's archives into the hub --hub names (without it, an archive restores only into "
                 "the hub of its own name)")


def parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The command's parser and each verb's: a subparser per verb with its own options; --stack is on
    all of them, and before the verb too (a verb's --stack, unset, leaves the one given before it)."""
    top = argparse.ArgumentParser(prog="scripts/workhub", description=__doc__.split("\n\n")[1],
                                  parents=[stack_option(eng.LOCAL_STACK)])
    subparsers = top.add_subparsers(dest="operation", metavar="VERB", title="verbs", parser_class=VerbParser)
    verbs = {}
    for verb, (summary, _) in VERBS.items():
        verbs[verb] = subparsers.add_parser(verb, help=summary, description=summary,
                                            parents=[stack_option(argparse.SUPPRESS)])
        verb_options(verb, verbs[verb])
    for verb, summary in TOOLS.items():
        subparsers.add_parser(verb, help=summary, add_help=False, tool=True)
    return top, verbs


def parse(argv: list[str]) -> argparse.Namespace:
    """The verb and its options; no verb is `up`. A wrong word exits 2 with the usage and one line
    saying what is wrong (argparse)."""
    top, verbs = parsers()
    args = top.parse_args(argv)
    if args.operation is None:
        args = top.parse_args([*argv, "up"])
    if args.operation == "restore" and args.from_hub is not None and args.hub is None:
        verbs["restore"].error("--from-hub needs --hub <the hub to restore its data into>")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["dockerfile"]:
        from . import dockerfiles

        return dockerfiles.main(argv[1:])
    if argv[:1] == ["pulumi"]:
        from . import pulumi_cli

        return pulumi_cli.main(argv[1:])
    args = parse(argv)

    print(f"workhub: {args.operation} of stack {args.stack!r}", file=sys.stderr, flush=True)
    # What workhub and the CLI write here (state, Pulumi.<stack>.yaml, backups, secrets) is the user's alone.
    os.umask(0o077)
    eng.ensure_toolchain()
    try:
        engine, stack = open_stack(args)
    except (eng.NotRunning, eng.NoSuchStack, eng.PassphraseError, guards.Refused) as error:
        print(f"workhub: {args.operation} of stack {args.stack!r} did not run: {error}", file=sys.stderr)
        return 1
    _, handler = VERBS[args.operation]
    return handler(args, engine, stack)


if __name__ == "__main__":
    sys.exit(main())
