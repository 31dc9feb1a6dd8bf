"""shellcheck finds nothing in workhub's bash: the scripts under scripts/ (every `*.sh`, and every other
file there whose shebang runs bash or sh) and every remote script workhub renders (each golden that is
a shell script, plus the rendered scripts no golden holds, rendered here from the same typed configs
as the golden tests).

shellcheck runs at its default severity, style: every finding, notes included. The rendered scripts
are small programs that run on someone's server with the Docker socket at hand, so a "note" (an
unquoted word, a single-quoted `$`) is as much a bug candidate as a warning; where one is meant, the
template says so at the spot with a one-line `# shellcheck disable=SCxxxx  # reason`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from components.render.host.deploy import prune_copies_script
from components.ssh import with_secrets
from components.render.host.build import build_runner, not_promoted_script
from components.render.shell import script
from components.render.swarm.scripts import join_script, join_token_script
from tests.unit.render.test_scripts import BUILD, GOLDEN, HUB, IMAGE
from tests.unit.render.test_swarm import config_and_runtimes

REPO = Path(__file__).resolve().parents[3]
SCRIPTS = REPO / "scripts"
_SHEBANG = re.compile(r"#!\s*(/usr/bin/env\s+)?(\S*/)?(ba)?sh\b")


def shell_files() -> list[Path]:
    """scripts/**/*.sh, and every other file under scripts/ with a bash or sh shebang."""
    found = set(SCRIPTS.rglob("*.sh"))
    for path in SCRIPTS.rglob("*"):
        if path.is_file() and path.suffix != ".sh":
            with path.open("rb") as file:
                first = file.readline().decode("utf-8", "replace")
            if _SHEBANG.match(first):
                found.add(path)
    return sorted(found)


def rendered() -> dict[str, str]:
    """The rendered scripts no golden holds (the build runner travels inside build.sh in a quoted
    here-document, where shellcheck does not look), and the Swarm join as it runs: its token, a
    secret, put in front of it as the variable join_token (swarm_member.join)."""
    config, _ = config_and_runtimes()
    first, second = config.swarm.nodes[0], config.swarm.nodes[1]
    return {
        "build-runner.sh": build_runner(HUB, "staging", IMAGE, "0123456789ab", BUILD, "http://127.0.0.1:4873/"),
        "prune-copies.sh": prune_copies_script("staging"),
        "not-promoted.sh": not_promoted_script(HUB),
        "swarm-join-token.sh": join_token_script("worker"),
        "swarm-join-as-run.sh": with_secrets(join_script(second, first, "worker"), {"join_token": "SWMTKN-1-abc"}),
    }


def shellcheck(*args: str, text: str | None = None) -> subprocess.CompletedProcess[str]:
    """The pinned shellcheck from requirements.txt (scripts/setup.sh installs it in .venv/bin)."""
    binary = Path(sys.executable).parent / "shellcheck"
    if not binary.exists():
        pytest.fail(f"no shellcheck next to {sys.executable}: run scripts/setup.sh (it installs requirements.txt)")
    return subprocess.run([str(binary), "--format=gcc", *args], input=text, capture_output=True, text=True,
                          cwd=REPO)


def assert_clean(name: str, done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, f"shellcheck finds something in {name}:\n{done.stdout}{done.stderr}"


def test_every_kind_of_shell_file_is_checked():
    """The lists below are not empty by accident: the scripts without a suffix and the sourced libraries
    are in, as are the goldens of one host and of the Swarm."""
    names = {path.relative_to(REPO).as_posix() for path in shell_files()}
    assert {"scripts/test", "scripts/workhub", "scripts/setup.sh", "scripts/lib/logged.sh"} <= names
    goldens = {path.name for path in GOLDEN.glob("*.sh")}
    assert {"run.sh", "restore.sh", "swarm-deploy.sh", "swarm-join.sh"} <= goldens


@pytest.mark.parametrize("path", shell_files(), ids=lambda path: path.relative_to(REPO).as_posix())
def test_scripts_pass_shellcheck(path):
    """Each script under scripts/ (its shebang or `# shellcheck shell=` names the shell; `source`d files
    are followed)."""
    assert_clean(path.relative_to(REPO).as_posix(), shellcheck("--external-sources", str(path.relative_to(REPO))))


@pytest.mark.parametrize("name", sorted(path.name for path in GOLDEN.glob("*.sh")))
def test_rendered_scripts_pass_shellcheck(name):
    """Each golden rendered script (the golden tests keep them equal to what the builders render);
    they have no shebang: the provider runs them with bash."""
    assert_clean(f"tests/golden/{name}", shellcheck("--shell=bash", f"tests/golden/{name}"))


@pytest.mark.parametrize("name", sorted(rendered()))
def test_scripts_without_a_golden_pass_shellcheck(name):
    """Each rendered script that no golden holds."""
    assert_clean(name, shellcheck("--shell=bash", "-", text=rendered()[name]))


# Any text a config value may hold; mostly short runs of the characters shellcheck reads as slips
# in single quotes (`$`, a backquote, a backslash before a quote, a leading tilde, typographic
# quotes), so that each comes up in a few examples.
_VALUES = st.one_of(st.text(alphabet=st.sampled_from("$`\\~'\"\n a\u2018\u2019\u201c"), max_size=5),
                    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12))


@settings(max_examples=40, deadline=None)
@given(value=_VALUES | st.sampled_from(["then", "done", "cat", "export", "test", "wait"]),
       items=st.lists(_VALUES | st.sampled_from([",", "a,b"]), max_size=3))
def test_any_config_value_passes_shellcheck(value, items):
    """Whatever a value holds, its assignment (a word or an array) gives shellcheck nothing to say."""
    text = script({"value": value, "items": items}, r'printf "%s\n" "$value" "${items[@]}"')
    assert_clean(repr(text), shellcheck("--shell=bash", "-", text=text))
