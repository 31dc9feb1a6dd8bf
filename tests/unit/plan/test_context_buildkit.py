"""workhub's build context against BuildKit's own code for it: moby/patternmatcher reads the
.dockerignore and tonistiigi/fsutil walks the tree with it, as buildx sends a context
(tools/buildkit-context, built once at its pinned versions from the Go module proxy). For the
tricky cases and for generated trees and .dockerignore files (hypothesis), the entries are the same
and a .dockerignore one refuses the other refuses too."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from components.plan.context import DockerignoreError
from tests.context_cases import CASES, IGNORES, TREES, build_tree, make_tree, workhub_view
from tests.unit.project.test_workflows import CACHE

TOOL = Path(__file__).resolve().parents[3] / "tools" / "buildkit-context"


@pytest.fixture(scope="session")
def buildkit_context() -> Path:
    """The tool, built once per version of its source into the workhub cache."""
    digest = hashlib.sha256(b"".join((TOOL / name).read_bytes() for name in ("go.mod", "go.sum", "main.go")))
    binary = CACHE / "toolchain" / f"buildkit-context-{digest.hexdigest()[:12]}" / "buildkit-context"
    if not binary.exists():
        if not shutil.which("go"):
            pytest.fail(f"{binary} is not built and there is no `go` to build it with")
        built = subprocess.run(["go", "build", "-o", str(binary), "."], cwd=TOOL, capture_output=True, text=True)
        if built.returncode != 0:
            pytest.fail(f"go build in {TOOL} failed:\n{built.stderr}")
    return binary


def buildkit_view(binary: Path, tree: Path) -> set[str] | None:
    """The entries BuildKit's client sends of `tree`; None when it refuses the .dockerignore."""
    walked = subprocess.run([str(binary), str(tree)], capture_output=True, text=True)
    return set(walked.stdout.splitlines()) if walked.returncode == 0 else None


def workhub_or_refused(tree: Path) -> set[str] | None:
    try:
        return workhub_view(tree)
    except DockerignoreError:
        return None


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_context_of_each_tricky_case_is_buildkits(case, tmp_path, buildkit_context):
    tree = make_tree(tmp_path, case)
    assert workhub_view(tree) == buildkit_view(buildkit_context, tree)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=TREES, ignore=IGNORES)
def test_any_tree_and_dockerignore_give_buildkits_context(tree, ignore, buildkit_context):
    with tempfile.TemporaryDirectory() as scratch:
        root = build_tree(Path(scratch), tree, ignore)
        assert workhub_or_refused(root) == buildkit_view(buildkit_context, root)
