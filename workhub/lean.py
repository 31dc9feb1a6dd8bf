"""Stacks whose operations read their results from the CLI only when the caller uses them.

After the update, the Automation API's `Stack.up` reads the stack's outputs (`pulumi stack output`,
twice: masked, then with secrets) and its last history entry (`pulumi stack history`); `refresh`
and `destroy` read that entry too. Each read is a start of the Pulumi CLI: about 0.4 s of CPU (the
Go start-up of a 170 MB binary) plus the passphrase's key derivation, whether the caller looks at
the result or not. workhub's own `up` reads only the summary (its changes) and a table of the
outputs masked (`masked_outputs`: one start), and most of its tests use one of them at most.

`lean(stack)` keeps the SDK's own reads and makes their results lazy: `result.outputs` and
`result.summary` (and `stack.outputs()`) run the CLI the first time they are used. The SDK has no
option for this, so `lean` sets the two methods on the stack object (the SDK's `Stack` builds its
instances with a private mode argument, so a subclass cannot be made through its public class
methods). It never changes what a result holds: before this process runs the next operation on the
same stack (`up`, `preview`, `refresh`, `destroy`, their previews, import, rename), every lazy
result of that stack still held is read, so it shows the stack as its own operation left it. An
operation run by another process in between (`scripts/workhub up` in a subprocess) is not waited
for: read a result before starting one. `tests/unit/cli/test_lean.py` fails if an SDK upgrade
makes `up` read them another way.
"""

from __future__ import annotations

import functools
import json
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Optional

from pulumi import automation as auto

# The operations that write the stack's state or history: pending reads are settled before each.
OPERATIONS = ("up", "preview", "refresh", "destroy", "preview_refresh", "preview_destroy", "import_resources",
              "rename")

# Lazy results not yet read, by stack (its workspace's directory and its name), held weakly: a
# result the caller dropped is never read.
_pending: dict[tuple[str, str], weakref.WeakValueDictionary] = {}


class _Lazy:
    """A value read by `read` the first time it is needed."""

    def __init__(self, read: Callable[[], Any], key: tuple[str, str]) -> None:
        self._read: Optional[Callable[[], Any]] = read
        self._value: Any = None
        _pending.setdefault(key, weakref.WeakValueDictionary())[id(self)] = self

    def settle(self) -> Any:
        if self._read is not None:
            read, self._read = self._read, None
            self._value = read()
        return self._value


class LazyOutputs(_Lazy, Mapping[str, auto.OutputValue]):
    """A stack's outputs (what `Stack.outputs()` returns), read when first used."""

    def __getitem__(self, key: str) -> auto.OutputValue:
        return self.settle()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.settle())

    def __len__(self) -> int:
        return len(self.settle())

    def __repr__(self) -> str:
        return f"LazyOutputs({dict(self)!r})"


class LazySummary(_Lazy):
    """An operation's summary (what `Stack.info()` returns: an UpdateSummary), read when first used."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.settle(), name)

    def __repr__(self) -> str:
        return f"LazySummary({self.settle()!r})"


def _key(stack: auto.Stack) -> tuple[str, str]:
    return (str(getattr(stack.workspace, "work_dir", "")), stack.name)


def settle(stack: auto.Stack) -> None:
    """Read every lazy result of `stack` still held, before an operation changes what they would show."""
    for lazy in list(_pending.pop(_key(stack), {}).values()):
        lazy.settle()


def lean(stack: auto.Stack) -> auto.Stack:
    """`stack`, its operations' outputs and summary read only when used (this module's docstring)."""
    key = _key(stack)
    outputs, info = stack.outputs, stack.info
    stack.outputs = lambda: LazyOutputs(outputs, key)  # type: ignore[method-assign]
    stack.info = lambda show_secrets=True: LazySummary(lambda: info(show_secrets), key)  # type: ignore[method-assign]
    for name in OPERATIONS:
        setattr(stack, name, _settling(stack, getattr(stack, name)))
    return stack


def _settling(stack: auto.Stack, operation: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(operation)
    def settled(*args: Any, **kwargs: Any) -> Any:
        settle(stack)
        return operation(*args, **kwargs)
    return settled


# What `pulumi stack output --json` prints in place of a secret output's value.
SECRET_SENTINEL = "[secret]"


def masked_outputs(stack: auto.Stack) -> dict[str, auto.OutputValue]:
    """The stack's outputs, each secret one's value masked: one CLI start, where `Stack.outputs()`
    makes two (it reads them masked, to tell which are secret, and again with their values)."""
    workspace = stack.workspace
    result = workspace.pulumi_command.run(["stack", "output", "--json", "--stack", stack.name],
                                          str(getattr(workspace, "work_dir", ".")), dict(workspace.env_vars))
    return {key: auto.OutputValue(value=value, secret=value == SECRET_SENTINEL)
            for key, value in json.loads(result.stdout).items()}
