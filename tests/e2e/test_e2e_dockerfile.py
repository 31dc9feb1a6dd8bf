"""End to end on the real Docker engine: the Dockerfiles `dockerfile conform` fixed for real-world
layouts build, with workhub's build args, against the local npm registry, and their images carry
the packages each folder installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from components.config.models import BuildSettings, Hub
from components.render.host.build import build_args
from tests.e2e_fixtures import RUN_ID, docker

pytestmark = [pytest.mark.e2e]

LAYOUTS = Path(__file__).resolve().parents[1] / "fixtures" / "dockerfiles" / "layouts"
FRONTEND = "docker/dockerfile:1"  # the frontend the test host imports; production hosts pull the pinned ones


@pytest.mark.parametrize("layout, checks", [
    # backend/ + frontend/ with no root manifest: each folder's packages in its own node_modules.
    ("backend-frontend", [["sh", "-c", "cd /app/backend && node server.js"], ["cat", "/app/frontend/dist/index.html"]]),
    # root + frontend/, whose original cache mount over /app/node_modules shipped no packages.
    ("root-frontend", [["node", "/app/server.js"], ["cat", "/app/frontend/dist/index.html"]]),
    # a build stage and a runtime stage, the runtime's sources brought by ADD after its install.
    ("multistage", [["node", "/app/app/server.js"], ["cat", "/app/app/public/index.html"]]),
])
def test_fixed_layout_dockerfiles_build_and_ship_their_packages(tmp_path, test_host, npm_registry, layout, checks):
    context = tmp_path / layout
    shutil.copytree(LAYOUTS / layout, context)
    (context / "Dockerfile").write_text((context / "fixed.Dockerfile").read_text())
    pin = (context / "Dockerfile").read_text().split("\n", 1)[0].split("=", 1)[1]
    tag, alias = f"workhub-e2e-layout-{layout}:{RUN_ID}", pin != FRONTEND
    if alias:  # no image can be pulled here: the pinned frontend name is the local one
        docker("tag", FRONTEND, pin)
    try:
        hub = Hub.model_validate({"name": layout, "context": layout, "port": 3000})
        built = subprocess.run(
            ["/usr/bin/docker", "build", "--network=host", "--progress=plain", "--tag", tag,
             *build_args(hub, BuildSettings(), npm_registry), str(context)],
            env={**os.environ, "DOCKER_BUILDKIT": "1"}, capture_output=True, text=True)
        assert built.returncode == 0, built.stderr[-4000:]
        assert "--mount=type=cache,target=/root/.npm,sharing=locked" in built.stderr
        ran = [docker("run", "--rm", "--network=none", tag, *command) for command in checks]
        assert ran == ["ok 4", "<p>1m</p>"], ran
    finally:
        docker("image", "rm", "--force", tag, check=False)
        if alias:
            docker("image", "rm", pin, check=False)
