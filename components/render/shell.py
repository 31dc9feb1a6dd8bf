"""Remote scripts as data. Quoting happens here, once, when a script is rendered.

A script is a fixed body of shell text written in this repository, preceded by variable
assignments that carry every config value. No config value is ever formatted into shell text
any other way, so a value can hold quotes, spaces or `$(...)` and still reach the host as data.
"""

from __future__ import annotations

import re
import shlex
from typing import Mapping, Sequence, Union

Scalar = Union[str, int, bool]
Value = Union[Scalar, Sequence[Scalar]]

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
PRELUDE = "set -eu"


def quote(value: Scalar) -> str:
    """One shell word holding `value` literally."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    return shlex.quote(str(value))


def assignments(values: Mapping[str, Value]) -> str:
    """`name='value'` lines, in the given order, for a script body to read as "$name".

    A list becomes a bash array, read as "${name[@]}"."""
    lines = []
    for name, value in values.items():
        if not _NAME.match(name):
            raise ValueError(f"not a shell variable name: {name!r}")
        if isinstance(value, (list, tuple)):
            lines.append(f"{name}=(" + " ".join(quote(item) for item in value) + ")")
        else:
            lines.append(f"{name}={quote(value)}")
    return "\n".join(lines)


def script(values: Mapping[str, Value], body: str) -> str:
    """A whole script: strict mode, the quoted values, then the fixed body."""
    parts = [PRELUDE]
    if values:
        parts.append(assignments(values))
    parts.append(body.strip("\n"))
    return "\n".join(parts) + "\n"
