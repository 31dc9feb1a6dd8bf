"""End to end on the real Docker engine: the Dockerfiles `dockerfile conform` fixed for real-world
layouts build, with workhub's build args, against the local npm registry, and their images carry
the packages each folder installed; the Koa + Vite and Express + webpack layouts' fixed files keep
their installs when only sources change, and mount npm's cache where their install's user has it,
so a changed manifest installs again from that cache. And a hub FROM an image the test host lacks:
named before the build, and the build's failed pull is a network failure, never "not from the
network". Beside the one-host tests, on the side host, which holds the engine's build cache for the
module (tests/e2e_fixtures.py: on_the_side_host): the npm cache mounts' downloads are counted."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.config.models import DEFAULT_BASE_IMAGE, BuildSettings, Hub
from components.plan.dockerfile import conform
from components.render.host.build import build_args, build_runner
from tests.e2e_fixtures import RUN_ID, docker, npm_steps_cached, on_the_side_host
from workhub import engine as eng
from workhub.__main__ import say_test_host

pytestmark = [pytest.mark.e2e]

# Beside the one-host tests, on a test host of its own (tests/e2e_fixtures.py: on_the_side_host).
test_host, host_state, beside_the_one_host = on_the_side_host()

LAYOUTS = Path(__file__).resolve().parents[1] / "fixtures" / "dockerfiles" / "layouts"
FRONTEND = "docker/dockerfile:1"  # the frontend the test host imports; production hosts pull the pinned ones


def build(context: Path, tag: str, registry: str) -> str:
    """Build `context` on the engine with workhub's build args against `registry` (on loopback: the
    build's network is the host's); its plain-progress log."""
    hub = Hub.model_validate({"name": "layout", "context": context.name, "port": 3000})
    built = subprocess.run(
        ["/usr/bin/docker", "build", "--network=host", "--progress=plain", "--tag", tag,
         *build_args(hub, BuildSettings(), registry), str(context)],
        env={**os.environ, "DOCKER_BUILDKIT": "1"}, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-4000:]
    return built.stderr


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
        log = build(context, tag, npm_registry)
        assert "--mount=type=cache,target=/root/.npm,sharing=locked" in log
        ran = [docker("run", "--rm", "--network=none", tag, *command) for command in checks]
        assert ran == ["ok 4", "<p>1m</p>"], ran
    finally:
        docker("image", "rm", "--force", tag, check=False)
        if alias:
            docker("image", "rm", pin, check=False)


# The two real apps' own packages (koa, vite, express, webpack) are not in the local registry: each
# of their install folders gets the manifests of backend-frontend's instead (nanoid; ms, with the
# build.js its `npm run build` runs). Then per layout: a source file no install reads, the install
# folder whose manifest changes, that install's command, and where npm caches for its user.
PACKAGES = {"backend": ["package.json", "package-lock.json"], "frontend": ["package.json", "package-lock.json", "build.js"]}
CASES = {
    # USER node: npm caches in /home/node/.npm, mounted with node's uid and gid.
    "koa-vite": ({"backend": "backend", "frontend": "frontend"}, "backend/src/index.js", "backend",
                 "set -eux && npm ci --omit=dev", "/home/node/.npm,uid=1000,gid=1000"),
    # ADD *.js package.json package-lock.json /app/: sources and manifests together, before the installs.
    "express-webpack": ({".": "backend", "app": "frontend"}, "server.js", "app", "cd app && npm ci", "/root/.npm"),
}
# What only the apps' Alpine image has: the test host starts every build FROM its own Node image.
ALPINE_ONLY = ["RUN apk add --no-cache tini\n", 'ENTRYPOINT ["/sbin/tini", "--"]\n']


def for_the_test_host(fixed: str) -> str:
    """The fixed Dockerfile FROM the test host's Node image (it can pull none), without Alpine's tini."""
    for line in ALPINE_ONLY:
        fixed = fixed.replace(line, "")
    return re.sub(r"^FROM \S+", f"FROM {DEFAULT_BASE_IMAGE}", fixed, flags=re.M)


@pytest.mark.parametrize("layout", sorted(CASES))
def test_a_fixed_layout_installs_again_only_for_its_manifests_and_from_the_npm_cache(tmp_path, test_host,
                                                                                      npm_registry, layout):
    """Issue 22 §2: `conform` fixes the layout as its user has it; the fixed file builds with the
    cache mount where the install's user caches, a change to a source file re-runs no install, and a
    change to one install's manifest runs that install alone, which downloads no tarball: every
    package comes from the cache mount (a mount npm does not use would leave it to download them).
    The builds reach the registry through a proxy of the test's own, whose counts are theirs alone."""
    from tools.faultproxy import running_proxy

    folders, source, changed, install, cache = CASES[layout]
    context = tmp_path / layout
    shutil.copytree(LAYOUTS / layout, context)
    for folder, stand_in in folders.items():
        for name in PACKAGES[stand_in]:
            shutil.copy(LAYOUTS / "backend-frontend" / stand_in / name, context / folder / name)
    fixed = conform((context / "Dockerfile").read_text(), "Dockerfile", context)
    (context / "Dockerfile").write_text(for_the_test_host(fixed))

    def describe(path: str, text: str) -> None:
        """A manifest of this run's own (no earlier run's layer has it), the same packages."""
        manifest = json.loads((context / path).read_text())
        (context / path).write_text(json.dumps({**manifest, "description": f"{text} {RUN_ID}"}))

    for folder in folders:
        describe(f"{folder}/package.json", "first")
    tag = f"workhub-e2e-cache-{layout}:{RUN_ID}"
    try:
        with running_proxy(npm_registry) as proxy:
            first = build(context, tag, proxy.url)
            assert f"--mount=type=cache,target={cache},sharing=locked {install}" in first, first[-4000:]

            (context / source).write_text((context / source).read_text() + f"// {RUN_ID}\n")
            steps = npm_steps_cached(build(context, tag, proxy.url))
            assert len(steps) == 2 and all(steps.values()), f"a source change re-ran an install: {steps}"

            describe(f"{changed}/package.json", "changed")
            fetched = dict(proxy.stats.tarballs)
            steps = npm_steps_cached(build(context, tag, proxy.url))
            assert [command for command, cached in steps.items() if not cached] == [install], steps
            assert proxy.stats.tarballs == fetched, "the install downloaded again what the npm cache mount had"
        # npm writes its logs there (`npm run build` too, which has no mount), but no package.
        kept = docker("run", "--rm", "--network=none", tag, "ls", "-A", cache.split(",")[0])
        assert "_cacache" not in kept.split(), "npm cached the packages in the image's layers, not in the mount"
    finally:
        docker("image", "rm", "--force", tag, check=False)


def test_a_base_image_the_test_host_lacks_is_named_before_the_build_whose_pull_fails_from_the_network(
        tmp_path, test_host, capsys):
    """Issue 22 §1: the local stack's test host cannot pull. Before any build, `up` and `preview` name
    a hub Dockerfile's FROM of an image it lacks, with the images it has; that build's pull fails on
    a name that does not resolve, which the build runner takes for a network failure (tried again),
    not one "not from the network"."""
    catalog = {"name": "tasksmd", "context": "tasksmd", "port": 3000}
    hub = Hub.model_validate(catalog)
    project = tmp_path / "project"
    dockerfile = project / "examples" / hub.context / "Dockerfile"  # stacks/local.yaml's sourceRoot
    dockerfile.parent.mkdir(parents=True)
    dockerfile.write_text("FROM node:20-alpine\nRUN true\n")
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(
        {"name": "workhub", "runtime": "python", "config": {"workhub:hubs": {"value": [catalog]}}}))
    say_test_host(eng.Engine(work_dir=project), test_host, builds=True)
    said = capsys.readouterr().err.splitlines()
    assert said[1] == (f"workhub: warning: tasksmd: examples/tasksmd/Dockerfile:1: `FROM node:20-alpine`: the test "
                       "host has no node:20-alpine and cannot pull it, so this build will fail; start FROM an image "
                       f"it has: {', '.join(test_host['base_images'])}"), said

    # The build runner as the build step starts it on the host (with the PATH the test host's sshd
    # gives: Debian's Docker client), in a home of its own, on the real engine.
    home, build_id, image = tmp_path / "home", f"{RUN_ID}0000", f"workhub-e2e-from-missing:{RUN_ID}"
    work = home / ".workhub" / "builds" / f"{hub.name}-e2e-{build_id}"
    shutil.copytree(dockerfile.parent, work / "context")
    runner = build_runner(hub, "e2e", image, build_id, BuildSettings(attempts=2, retryBackoffSeconds=0), None)
    subprocess.run(["bash", "-s"], input=runner, text=True, check=True, timeout=120,
                   env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(home)})
    log = (work / "log").read_text()
    (record,) = [json.loads(line) for line in (home / ".workhub" / "builds.jsonl").read_text().splitlines()]
    assert (record["result"], record["attempts"]) == ("failed", 2), log
    assert "node:20-alpine" in log and "attempt 1 failed from the network (exit code 1)" in log, log
    assert "not from the network" not in log, log
