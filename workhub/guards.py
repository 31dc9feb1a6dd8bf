"""Guards on what cannot be undone: before `destroy` of any stack but the throwaway `local` one, and
before any `--purge-data` (the hubs' data), the stack's name is typed back on the terminal, or named
in a script with `--yes=<stack>`; with neither, nothing runs. A stack holding protected resources
(production's volumes, workhub:protectData) is not destroyed at all until someone unprotects them
on purpose, and the refusal says how.
"""

from __future__ import annotations

import sys
from typing import Optional, TextIO

LOCAL_STACK = "local"


class Refused(Exception):
    """The operation did not start and nothing was changed; the message says why and how to go ahead."""


def needs_confirmation(stack: str, purge_data: bool) -> bool:
    """Whether a destroy must have the stack's name typed back (or given with --yes)."""
    return purge_data or stack != LOCAL_STACK


def what_goes(stack: str, purge_data: bool) -> str:
    gone = f"destroy of stack {stack!r} removes its hubs' containers, proxies, images and files from the host"
    return gone + (", and --purge-data deletes their volumes: the hubs' data" if purge_data else
                   " (their volumes stay)")


def confirm_destroy(stack: str, purge_data: bool, yes: Optional[str], terminal: Optional[TextIO] = None,
                    prompt: Optional[TextIO] = None) -> None:
    """Go ahead (return) only when the destroy needs no confirmation, when `yes` names the stack, or
    when the stack's name is typed back exactly on `terminal` (stdin, when it is a terminal); raise
    Refused otherwise. The question goes to `prompt` (stderr)."""
    if yes is not None:
        if yes != stack:
            raise Refused(f"--yes={yes} does not name the stack {stack!r}; nothing was changed")
        return
    if not needs_confirmation(stack, purge_data):
        return
    terminal = sys.stdin if terminal is None else terminal
    prompt = sys.stderr if prompt is None else prompt
    if not terminal.isatty():
        raise Refused(f"{what_goes(stack, purge_data)}, so it asks for the stack's name on a terminal, and there "
                      f"is none; nothing was changed. In a script, name the stack: --yes={stack}")
    prompt.write(f"workhub: {what_goes(stack, purge_data)}.\nType the stack's name ({stack}) to go ahead: ")
    prompt.flush()
    answer = terminal.readline()
    if answer.rstrip("\r\n") != stack:
        typed = answer.rstrip("\r\n")
        raise Refused(f"{typed!r} is not the stack's name {stack!r}; nothing was changed" if typed
                      else "no stack name was typed; nothing was changed")


def protected_message(stack: str, protected: list[str]) -> str:
    """Why a stack with protected resources is not destroyed, and how to unprotect them on purpose."""
    return "\n".join([
        f"it holds protected resources (workhub:protectData): {', '.join(protected)}; nothing was changed, "
        "and their data stays. To destroy it on purpose, unprotect them first:",
        f"  scripts/workhub pulumi config set --stack {stack} workhub:protectData false",
        f"  scripts/workhub up --stack {stack}        # records the change of protection",
        f"then `scripts/workhub destroy --stack {stack}` again; or, keeping the setting for the next `up`:",
        f"  scripts/workhub pulumi state unprotect --all --yes --stack {stack}",
    ])
