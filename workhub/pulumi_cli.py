"""scripts/workhub pulumi ARGS...: the project's Pulumi CLI, set up the way workhub runs it.

The CLI is the one scripts/toolchain.sh made ready (it need not be on PATH), run in the project
directory with the engine environment workhub gives it. For the embedded `local` stack (named
with `--stack local`, or no stack named) it uses that stack's file backend and the checkout's
passphrase file (`.workhub/passphrase`, unless you set PULUMI_CONFIG_PASSPHRASE(_FILE)); for
any other stack (`--stack staging`) the backend you are logged in to and your own passphrase, as
`scripts/workhub preview --stack staging` does. `login`, `logout` and `whoami` are always about
your own login.

Programs run inline in workhub, so `up`/`preview` go through `scripts/workhub up|preview`; this
is for everything else: `config`, `stack`, `state`, `cancel`, `login`.
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

from . import engine as eng

# Commands about who you are logged in as, never about the local stack's backend.
LOGIN_COMMANDS = {"login", "logout", "whoami"}
# `pulumi stack <sub> NAME` name their stack as a positional argument.
STACK_POSITIONAL = {"select", "init", "rm"}
# Flags whose value may follow as the next word (so it is not taken for a command).
VALUE_FLAGS = {"--stack", "-s", "--cwd", "-C", "--color", "--tracing", "--profiling", "--memprofilerate",
               "--verbose", "-v", "--config-file", "--secrets-provider"}


def _positionals(args: Sequence[str]) -> list[str]:
    """The words of `args` that are neither flags nor a flag's value."""
    words, skip = [], False
    for word in args:
        if skip:
            skip = False
        elif word in VALUE_FLAGS:
            skip = True
        elif not word.startswith("-"):
            words.append(word)
    return words


def stack_named(args: Sequence[str]) -> Optional[str]:
    """The stack `args` name (`--stack X`, `--stack=X`, `-s X`, `-s=X`, or `stack select|init|rm X`),
    None when they name none. An `org/project/stack` name counts by its last part."""
    words = list(args)
    named: Optional[str] = None
    for i, word in enumerate(words):
        if word in ("--stack", "-s") and i + 1 < len(words):
            named = words[i + 1]
        elif word.startswith(("--stack=", "-s=")):
            named = word.split("=", 1)[1]
    commands = _positionals(words)
    if named is None and len(commands) >= 3 and commands[0] == "stack" and commands[1] in STACK_POSITIONAL:
        named = commands[2]
    return named.rsplit("/", 1)[-1] if named else None


def uses_local_backend(args: Sequence[str]) -> bool:
    """True when `args` are about the local stack, so they get its backend and passphrase."""
    commands = _positionals(args)
    if commands and commands[0] in LOGIN_COMMANDS:
        return False
    return stack_named(args) in (None, eng.LOCAL_STACK)


def environment(args: Sequence[str], base: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The environment the CLI runs `args` in: `base` (the caller's) plus workhub's engine
    settings, and for the local stack its backend and passphrase."""
    base = dict(os.environ if base is None else base)
    engine = eng.Engine()
    if uses_local_backend(args):
        # The checkout's passphrase file, unless the user gives a passphrase of their own (it wins).
        engine = eng.local_engine(environ=base)
    return {**base, **engine.env()}


def main(args: Sequence[str]) -> int:
    """Replace this process with the project's `pulumi ARGS...` (its exit code is the command's)."""
    # What the CLI writes here (the local stack's state, Pulumi.<stack>.yaml) is its user's alone.
    os.umask(0o077)
    bin_dir = eng.ensure_toolchain()
    try:
        env = environment(args)
    except eng.PassphraseError as error:
        print(f"workhub: pulumi {' '.join(args)} did not run: {error}", file=sys.stderr)
        return 1
    # The local stack is this checkout's; any other is in the project directory (WORKHUB_PROJECT_DIR).
    os.chdir(eng.REPO if uses_local_backend(args) else eng.project_dir())
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(str(bin_dir / "pulumi"), ["pulumi", *args], env)
    return 127  # not reached
