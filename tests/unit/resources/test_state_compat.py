"""Every dynamic provider that workhub before the layer move (tests/before_the_move.py) pickled into a
stack's state loads with the code under test, as the engine's provider process loads it for a
refresh, an update or a destroy: so a Swarm stack's SwarmMember, whose full deploy costs minutes,
is proven here, and the one-host stack end to end in tests/e2e/test_e2e_state_compat.py. What the
moved code pickles differs only in the module path, and a diff does not see that change."""

from __future__ import annotations

import base64
import importlib
import json
import os
import pickletools
import subprocess
import sys
from pathlib import Path

import dill
import pytest
from pulumi.dynamic.dynamic import serialize_provider

from tests.before_the_move import before_the_move  # noqa: F401 (a fixture)
from workhub import engine as eng

# Where the providers' classes were (a one-host stack's commands and key, a Swarm stack's members).
PROVIDERS = ["components.remote.RemoteCommandProvider", "components.stack_key.StackKeyProvider",
             "components.swarm_member.SwarmMemberProvider"]

# In the old tree: each ResourceProvider its components/ define, as the SDK pickles it into the
# state (the `__provider` input of each resource), with the methods it defines.
PICKLE_OLD = """
import importlib, inspect, json, pkgutil
import components
from pulumi.dynamic import ResourceProvider
from pulumi.dynamic.dynamic import serialize_provider
found = {}
for info in pkgutil.iter_modules(components.__path__):
    module = importlib.import_module(f"components.{info.name}")
    for name, kind in vars(module).items():
        if inspect.isclass(kind) and issubclass(kind, ResourceProvider) and kind.__module__ == module.__name__:
            methods = sorted(m for m in ("create", "diff", "update", "delete", "read") if m in vars(kind))
            found[f"{module.__name__}.{name}"] = {"blob": serialize_provider(kind()), "methods": methods}
print(json.dumps(found))
"""

# In a fresh process set up as the engine's provider process is: load one blob as the SDK's
# provider process does (pulumi/dynamic/__main__.py: dill.loads of the base64-decoded value).
LOAD_NEW = """
import base64, json, sys
import dill
from pulumi.dynamic import ResourceProvider
provider = dill.loads(base64.b64decode(sys.stdin.read()))
kind = type(provider)
print(json.dumps({"provider": isinstance(provider, ResourceProvider),
                  "methods": sorted(m for m in ("create", "diff", "update", "delete", "read")
                                    if getattr(kind, m) is not getattr(ResourceProvider, m))}))
"""


@pytest.fixture(scope="module")
def old_providers(before_the_move: Path) -> dict[str, dict]:  # noqa: F811 (the fixture)
    done = subprocess.run([sys.executable, "-c", PICKLE_OLD], cwd=before_the_move, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(before_the_move)})
    assert done.returncode == 0, f"the old tree's providers could not be pickled:\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)


def test_the_old_tree_pickled_every_provider_a_stack_may_hold(old_providers):
    """The pins themselves: the providers of a one-host stack and of a Swarm stack, by module path."""
    assert set(old_providers) == set(PROVIDERS)
    for path, old in old_providers.items():
        assert old["blob"], path


@pytest.mark.parametrize("path", PROVIDERS)
def test_a_provider_pickled_before_the_move_loads_with_the_code_under_test(old_providers, tmp_path, path):
    """The provider process of a refresh or a destroy of a stack deployed before the move finds the
    provider's class by its old module path, and it does all the old one did."""
    old = old_providers[path]
    env = {**os.environ, **eng.Engine(work_dir=tmp_path).env()}
    python = env.get("PULUMI_PYTHON_CMD") or sys.executable
    done = subprocess.run([python, "-c", LOAD_NEW], cwd=tmp_path, input=old["blob"], capture_output=True, text=True,
                          env=env)
    assert done.returncode == 0, (f"the state of a stack deployed before the move names {path}, which the code under "
                                  f"test cannot load; keep that module path importable (a shim that re-exports the "
                                  f"class):\n{done.stderr[-3000:]}")
    loaded = json.loads(done.stdout)
    assert loaded["provider"], f"{path} loads as something other than a ResourceProvider"
    assert set(old["methods"]) <= set(loaded["methods"]), f"{path} lost methods: {old['methods']} -> " \
                                                          f"{loaded['methods']}"


def provider_at(path: str) -> type:
    """The class an old module path names in the code under test (a shim's re-export)."""
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def opcodes(blob: bytes, module: str) -> list[tuple[str, object]]:
    """A pickle's opcodes and their arguments, `module` written as MODULE (and no frame lengths)."""
    return [(op.name, "MODULE" if arg == module else arg)
            for op, arg, _ in pickletools.genops(blob) if op.name != "FRAME"]


@pytest.mark.parametrize("path", PROVIDERS)
def test_a_new_provider_blob_differs_from_the_old_one_only_in_its_module_path(old_providers, path):
    """What the moved code writes names the class where it lives now (so the old path is needed only
    for state written before the move), and loads as the class the old blob loads as."""
    provider = provider_at(path)
    old, new = (base64.b64decode(blob) for blob in (old_providers[path]["blob"], serialize_provider(provider())))
    assert opcodes(old, path.rsplit(".", 1)[0]) == opcodes(new, provider.__module__)
    assert type(dill.loads(new)) is type(dill.loads(old)) is provider


@pytest.mark.parametrize("path", PROVIDERS)
def test_a_new_provider_blob_alone_is_no_change(old_providers, path):
    """An `up` with the moved code gives each resource a new `__provider` input; its diff must not see
    it, or every command of an existing stack would run again."""
    provider = provider_at(path)
    props = {"label": "hub-run", "create": "true", "connection": {"host": "h"}, "privateKey": "k", "role": "worker",
             "manager": {"host": "m"}, "triggers": [], "key": "ab", "__provider": old_providers[path]["blob"]}
    moved = {**props, "__provider": serialize_provider(provider())}
    assert provider().diff("id", props, moved).changes is False
