"""End to end: the build context workhub uploads is the one the Docker engine sees.

For trees with tricky .dockerignore files and links, the engine builds `FROM scratch` + `COPY . /`
from the tree itself, and its output (every file, link and directory it was sent) must be exactly
workhub's context. Then workhub's archive goes over SSH to the test host like a hub's upload, and
the engine's build of the unpacked copy there must see the same, links made again as links."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from components.plan.context import archive, build_files, context_files
from components.ssh import Connection, run_script
from components.render.shell import quote
from tests.e2e_fixtures import deploy_home
from tests.context_cases import CASES, entries, make_tree, workhub_view

pytestmark = pytest.mark.e2e


# Where Debian's Docker 20.10 client (BuildKit without buildx, the test host's) walks the context
# otherwise than BuildKit's walker today (buildx, tests/unit/plan/test_context_buildkit.py), which workhub
# follows: its old matcher takes a parent directory to match a pattern only as deep as the pattern
# (so `**/b` leaves x/y/b/c in), it does not enter an excluded directory for an exception with a
# wildcard (`!build/**/*.map`), and it has no `**text` shortcut (its `**.log` is only a name
# `.log`). case: (only the old client sends, only BuildKit today sends).
OLD_CLIENT = {
    "exceptions-below-a-parent": ({"x/y/b/c"}, {"build/js/", "build/js/app.js.map"}),
    "comments-and-escapes": ({"deep/app.log"}, set()),
}


def buildx() -> bool:
    return subprocess.run(["/usr/bin/docker", "buildx", "version"], capture_output=True).returncode == 0


def build_command(out: str, context: str) -> str:
    """The host scripts' choice: buildx where it is, else the classic client with BuildKit on."""
    builder = "docker buildx build" if buildx() else "DOCKER_BUILDKIT=1 /usr/bin/docker build"
    return f"{builder} --quiet --output type=local,dest={out} {context} >/dev/null"


def engine_view(tree: Path, out: Path) -> set[str]:
    """What the engine was sent of `tree`: a BuildKit build that copies it all, exported locally."""
    subprocess.run(build_command(quote(str(out)), quote(str(tree))), shell=True, check=True, capture_output=True)
    return entries(out)


@pytest.fixture(scope="module")
def ssh(test_host):
    key = Path(test_host["private_key_path"]).read_text()
    conn = Connection(host="127.0.0.1", port=test_host["port"], user="deploy", host_key=test_host["host_public_key"],
                      dial_error_limit=3, per_dial_timeout=5, keep_alive_interval=30)
    return conn, key


@pytest.mark.parametrize("case", sorted(CASES))
def test_workhub_uploads_exactly_the_context_the_engine_sees(case, tmp_path, ssh):
    tree = make_tree(tmp_path, case)
    seen = engine_view(tree, tmp_path / "engine")
    ours = workhub_view(tree)
    only_old, only_new = OLD_CLIENT.get(case, (set(), set())) if not buildx() else (set(), set())
    assert ours == (seen - only_old) | only_new

    conn, key = ssh
    remote = f".workhub/test-contexts/{uuid.uuid4().hex[:8]}"
    files = context_files(tree)
    try:
        run_script(conn, key, build_command('"$HOME/"' + quote(remote + "-out"), '"$HOME/"' + quote(remote)) + "\n",
                   f"context-{case}", lambda _: None,
                   upload=(archive(tree, sorted([*files, *build_files(tree, files, "Dockerfile")])), remote))
        rebuilt = entries(deploy_home() / (remote + "-out"))
        assert rebuilt == seen - only_old, "the unpacked upload gives the engine the same context, links as links"
    finally:
        for path in (remote, remote + "-out"):
            shutil.rmtree(deploy_home() / path, ignore_errors=True)
