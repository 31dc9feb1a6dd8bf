"""The local npm registry cache is filled with every lockfile a local hub's Dockerfile can install
from, whatever folders the hub keeps them in."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from workhub import engine as eng

REPO = Path(__file__).resolve().parents[3]


def _manifests(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "package.json").write_text("{}\n")
    (folder / "package-lock.json").write_text("{}\n")


def test_every_lockfile_folder_of_each_hubs_context_is_warmed_as_docker_sends_it(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    hubs = [{"name": "split", "context": "Split", "port": 4000}, {"name": "plain", "context": "Plain", "port": 4001},
            {"name": "gone", "context": "Missing", "port": 4002}]
    (project / "Pulumi.yaml").write_text(yaml.safe_dump({"name": "workhub", "config": {"workhub:hubs": {"value": hubs}}}))
    template = tmp_path / "local.yaml"
    template.write_text("workhub:sourceRoot: ../src\n")
    split, plain = tmp_path / "src" / "Split", tmp_path / "src" / "Plain"
    for folder in ("backend", "frontend", "packages/shared", "docs", "backend/node_modules/dep"):
        _manifests(split / folder)
    (split / "notes").mkdir()
    (split / "notes" / "package-lock.json").write_text("{}\n")  # no package.json beside it: npm ci refuses it
    (split / ".dockerignore").write_text("docs\n")
    _manifests(plain)

    assert eng.lockfile_dirs(project, template) == [
        split / "backend", split / "frontend", split / "packages" / "shared", plain]


def test_the_sample_hubs_warm_every_folder_their_dockerfiles_install_from():
    """Each `npm ci` (with or without --prefix) of each sample Dockerfile has its folder warmed."""
    warmed = set(eng.lockfile_dirs())
    for hub in eng.project_hubs(REPO):
        context = REPO / "examples" / hub["context"]
        text = (context / hub.get("dockerfile", "Dockerfile")).read_text()
        installs = re.findall(r"npm (?:--prefix[= ](\S+) )?ci\b", text)
        assert installs, f"{hub['name']}: no npm ci found"
        for prefix in installs:
            assert (context / prefix).resolve() in warmed, f"{hub['name']}: {prefix or '.'} is not warmed"
