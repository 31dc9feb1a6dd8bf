"""The workhub-guardrails policy pack (policy/), as the runner hands it to the engine:

    stack.preview(..., policy_packs=policy_packs())
    stack.up(..., policy_packs=policy_packs())

The pack is given as its executable, `policy/analyzer`, which the engine starts directly (Pulumi
v3.274 runs a policy pack given as an executable file). The pack directory itself needs the Python
language host, which the CLI that scripts/toolchain.sh builds does not have, and v3.274's engine
no longer falls back to a `pulumi-analyzer-policy-python` plugin for Python packs. The launcher
runs `__main__.py` with the runner's Python (PULUMI_PYTHON_CMD), else the project's .venv.
With a standard Pulumi install, `pulumi preview --policy-pack policy` runs the same pack.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
POLICY_PACK = REPO / "policy"
ANALYZER = POLICY_PACK / "analyzer"
PACK_NAME = "workhub-guardrails"


def policy_packs() -> list[str]:
    """The `--policy-pack` paths for every preview and update."""
    return [str(ANALYZER)]
