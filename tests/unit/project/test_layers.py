"""The tree's layers hold: import-linter checks the contracts in .importlinter (a module imports only
its own layer or earlier ones, one host and Swarm are peers, no import cycle), and every module of
components/ is in one of them."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_the_imports_keep_the_layer_contracts():
    lint = Path(sys.executable).parent / "lint-imports"
    run = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_module_of_components_is_in_a_layer():
    """A module added at the top of components/ is named in the layers contract, or the contract
    would not look at it."""
    config = configparser.ConfigParser()
    config.read(REPO / ".importlinter")
    layers = config["importlinter:contract:layers"]["layers"]
    named = {name.strip() for line in layers.split("\n") for name in line.split("|") if name.strip()}
    modules = {f"components.{path.stem}" for path in (REPO / "components").iterdir()
               if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists()}
    assert modules - named == set()
