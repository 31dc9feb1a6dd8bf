"""The policy pack's check of registry-mode builds (pulumi-docker's Image, which the engine cannot
run here without its provider plugin), on the inputs the engine would hand the pack."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "policy"))

import guardrails as g  # noqa: E402

CANONICAL = Path(__file__).resolve().parents[2] / "fixtures" / "dockerfiles" / "canonical.Dockerfile"


def build(**changes) -> dict:
    """The `build` input push_with_docker gives docker.Image, changed by `changes` (None drops a key)."""
    inputs = {
        "context": str(CANONICAL.parent), "dockerfile": str(CANONICAL), "builderVersion": "BuilderBuildKit",
        "args": {"NODE_OPTIONS": "--max-old-space-size=4096", "BUILDKIT_INLINE_CACHE": "1"},
        "cacheFrom": {"images": ["127.0.0.1:5000/workhub/wbsaleshub:staging"]}, "network": "host",
    }
    inputs.update(changes)
    return {key: value for key, value in inputs.items() if value is not None}


def test_the_image_push_with_docker_declares_passes():
    assert g.image_build_problems("wbsaleshub-image", build()) == []


@pytest.mark.parametrize("changes, words", [
    ({"args": {"BUILDKIT_INLINE_CACHE": "1"}}, "passes no NODE_OPTIONS build arg"),
    ({"args": {"NODE_OPTIONS": "--trace-warnings"}}, "without --max-old-space-size=<MB>"),
    ({"builderVersion": "BuilderV1"}, "builds with the classic builder"),
    ({"cacheFrom": None}, "builds without a registry cache"),
    ({"cacheFrom": {"images": []}}, "builds without a registry cache"),
])
def test_an_image_build_without_the_heap_buildkit_or_cache_fails(changes, words):
    (problem,) = g.image_build_problems("wbsaleshub-image", build(**changes))
    assert problem.startswith("wbsaleshub-image: ") and words in problem and "fix: " in problem


def test_an_image_whose_dockerfile_skips_the_cache_mount_fails(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(CANONICAL.read_text().replace("--mount=type=cache,target=/root/.npm,sharing=locked ", ""))
    problems = g.image_build_problems("wbsaleshub-image", build(dockerfile=str(dockerfile)))
    assert problems and all("wbsaleshub-image: " + str(dockerfile) in p for p in problems)
    assert any("cache" in p for p in problems)


def test_an_image_without_build_settings_fails():
    (problem,) = g.image_build_problems("wbsaleshub-image", None)
    assert "has no build settings" in problem

