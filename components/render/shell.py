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
# What shellcheck takes for a slip in a single-quoted word, by the text that makes it say so (an
# expansion that does not expand, a backslash before the closing quote, a leading tilde that does
# not expand, a typographic quote). In a quoted value they are data: the assignment gets a directive
# saying so.
_LITERAL = {"$": "SC2016", "`": "SC2016", "\\'": "SC1003", "'~": "SC2088", "\u2018": "SC1112", "\u2019": "SC1112"}


# Words shellcheck reads as code where a script assigns them: bash's reserved words (`value=then`:
# SC1010) and the POSIX utilities (`value=cat`: SC2209, "use var=$(command)"). The assignment is
# right either way, but the rendered scripts pass shellcheck, so these are quoted like any word with
# a special character. (The list is the POSIX utilities' and bash's keywords; shellcheck keeps its
# own copy of the first.)
_CODE_WORDS = frozenset("""
    if then else elif fi case esac for select while until do done in function time coproc
    admin alias ar asa at awk basename batch bc bg c99 cal cat cd cflow chgrp chmod chown cksum cmp
    comm command compress cp crontab csplit ctags cut cxref date dd delta df diff dirname du echo ed
    env ex expand expr fc fg file find fold fort77 fuser gencat get getconf getopts grep hash head
    iconv ipcrm ipcs jobs join kill lex link ln locale localedef logger logname lp ls m4 mailx make
    man mesg mkdir mkfifo more mv newgrp nice nl nm nohup od paste patch pathchk pax pr printf prs ps
    pwd qalter qdel qhold qmove qmsg qrerun qrls qselect qsig qstat qsub read readonly renice rm
    rmdel rmdir sact sccs sed sh sleep sort split strings strip stty tabs tail talk tee test touch
    tput tr tsort tty type ulimit umask unalias uname uncompress unexpand unget uniq unlink uucp
    uudecode uuencode uustat uux val vi wait wc what who write xargs yacc zcat
    break colon continue dot eval exec exit export return set shift times trap unset
""".split())


def quote(value: Scalar) -> str:
    """One shell word holding `value` literally."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    text = str(value)
    return f"'{text}'" if text in _CODE_WORDS else shlex.quote(text)


def _array_item(value: Scalar) -> str:
    """One word of an array assignment. A bare comma is literal there, but shellcheck reads
    `(a,b)` as a mistaken separator (SC2054), so a word holding one is quoted."""
    word = quote(value)
    return f"'{word}'" if "," in word and not word.startswith("'") else word


def assignments(values: Mapping[str, Value]) -> str:
    """`name='value'` lines, in the given order, for a script body to read as "$name".

    A list becomes a bash array, read as "${name[@]}"."""
    lines = []
    for name, value in values.items():
        if not _NAME.match(name):
            raise ValueError(f"not a shell variable name: {name!r}")
        if isinstance(value, (list, tuple)):
            lines.append(f"{name}=(" + " ".join(_array_item(item) for item in value) + ")")
        else:
            lines.append(f"{name}={quote(value)}")
    return "\n".join(lines)


def script(values: Mapping[str, Value], body: str) -> str:
    """A whole script: strict mode, the quoted values (one that shellcheck would take for a slip
    under a directive that says it is data), then the fixed body."""
    parts = [PRELUDE]
    for name, value in values.items():
        line = assignments({name: value})
        codes = sorted({code for text, code in _LITERAL.items() if text in line})
        if codes:
            parts.append(f"# shellcheck disable={','.join(codes)}  # a config value, taken literally")
        parts.append(line)
    parts.append(body.strip("\n"))
    return "\n".join(parts) + "\n"
