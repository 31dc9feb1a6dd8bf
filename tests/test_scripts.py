"""Rendered remote scripts: exact text (golden files), and config values reaching them only as data."""

import os
import subprocess
from pathlib import Path

import pytest

from components.scripts import host_facts_script
from components.shell import assignments, quote, script

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str, text: str) -> None:
    """Compare with tests/golden/<name>; WORKHUB_UPDATE_GOLDEN=1 rewrites the file instead."""
    path = GOLDEN / name
    if os.environ.get("WORKHUB_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; review, then rerun with WORKHUB_UPDATE_GOLDEN=1"


def test_host_facts_script_golden():
    """The host facts script, exactly."""
    golden("host_facts.sh", host_facts_script("node:20-bookworm-slim"))


def test_scripts_are_valid_bash():
    """bash -n accepts every rendered script."""
    subprocess.run(["bash", "-n"], input=host_facts_script("node:20-bookworm-slim"), text=True, check=True)


@pytest.mark.parametrize("value", ["a b", "it's", "$(touch /tmp/pwned)", "`id`", "x; rm -rf /", "\n", ""])
def test_values_reach_the_shell_as_data(value):
    """Whatever a value holds, the script sees exactly that string."""
    text = script({"value": value}, 'printf "%s" "$value"')
    out = subprocess.run(["bash", "-c", text], capture_output=True, text=True, check=True).stdout
    assert out == value


def test_assignments_render_in_order_and_quote():
    assert assignments({"b": "x y", "a": 3, "c": True}) == "b='x y'\na=3\nc=true"
    assert quote("plain") == "plain"


def test_bad_variable_names_are_refused():
    with pytest.raises(ValueError):
        assignments({"bad-name": "x"})
