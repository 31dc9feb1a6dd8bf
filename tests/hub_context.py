"""Hub build contexts for unit tests: the canonical hub Dockerfile and the manifests it installs from."""

from __future__ import annotations

from pathlib import Path

from components.plan.dockerfile import MANIFESTS

CANONICAL = Path(__file__).parent / "fixtures" / "dockerfiles" / "canonical.Dockerfile"


def manifests(root: Path, *folders: str) -> None:
    """package.json and package-lock.json in each folder ("" for the root) of a build context."""
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in MANIFESTS:
            (root / folder / name).write_text("{}\n")


def write_hub_context(context: Path, server: str) -> None:
    """A context the canonical Dockerfile builds from: its manifests (root and frontend/) and server.js."""
    manifests(context, "", "frontend")
    (context / "Dockerfile").write_text(CANONICAL.read_text())
    (context / "server.js").write_text(server)
