"""The install retry's cache fill with the real npm and node (components.render.host.build._STOP_AT_CUT,
_FILL_CACHE): `eval "$WORKHUB_RETRY" npm ci` against a tiny registry of our own on 127.0.0.1 behind
tools/faultproxy.py, which cuts the first download of one tarball. npm does not fetch a cut download
again; the first try stops at the cut, the fill fetches that tarball again on its own (and reads the
others from the cache), and the second try installs with no tarball download at all.
The install retry's own logic with a stand-in npm: tests/unit/render/test_install_retry.py."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import random
import shutil
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from components.config.models import BuildSettings
from components.render.host.build import build_arg_values, install_retry
from tools.faultproxy import Faults, running_proxy

NPM, NODE = shutil.which("npm"), shutil.which("node")
REPO = Path(__file__).resolve().parents[3]

PACKAGES = ("wh-alpha", "wh-beta", "wh-gamma")


def tarball(name: str) -> bytes:
    """A package tarball as a registry serves it: package/package.json and some bulk."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for path, data in ((f"package/package.json", json.dumps({"name": name, "version": "1.0.0"}).encode()),
                           ("package/bulk.bin", random.Random(name).randbytes(60_000))):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


TARBALLS = {name: tarball(name) for name in PACKAGES}
# Tarballs whose next download sends its headers and half its body, then nothing for 30 s.
BODY_STALL_ONCE: set[str] = set()
INTEGRITY = {name: "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode() for name, data in TARBALLS.items()}


class _Registry(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        name = self.path.lstrip("/").split("/")[0]
        if name not in TARBALLS:
            body, ctype, status = b'{"error":"not found"}', "application/json", 404
        elif "/-/" in self.path and name in BODY_STALL_ONCE:
            BODY_STALL_ONCE.discard(name)
            self.send_response(200)
            self.send_header("Content-Length", str(len(TARBALLS[name])))
            self.end_headers()
            self.wfile.write(TARBALLS[name][:len(TARBALLS[name]) // 2])
            self.wfile.flush()
            time.sleep(30)
            return
        elif "/-/" in self.path:
            body, ctype, status = TARBALLS[name], "application/octet-stream", 200
        else:
            url = f"http://{self.headers['Host']}/{name}/-/{name}-1.0.0.tgz"
            body = json.dumps({"name": name, "dist-tags": {"latest": "1.0.0"}, "versions": {"1.0.0": {
                "name": name, "version": "1.0.0", "dist": {"tarball": url, "integrity": INTEGRITY[name]}}}}).encode()
            ctype, status = "application/json", 200
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # the proxy drops cut downloads


@pytest.fixture
def registry():
    server = _Server(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d/" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def project(path: Path) -> Path:
    """A project depending on the three packages, with its lockfile (no `resolved`, as the sample
    hubs' lockfiles)."""
    path.mkdir()
    deps = {name: "1.0.0" for name in PACKAGES}
    (path / "package.json").write_text(json.dumps({"name": "app", "version": "1.0.0", "dependencies": deps}))
    packages = {"": {"name": "app", "version": "1.0.0", "dependencies": deps}}
    packages.update({f"node_modules/{name}": {"version": "1.0.0", "integrity": INTEGRITY[name]} for name in PACKAGES})
    (path / "package-lock.json").write_text(json.dumps(
        {"name": "app", "version": "1.0.0", "lockfileVersion": 3, "requires": True, "packages": packages}))
    return path


def install(tmp_path: Path, registry_url: str, build: BuildSettings,
            faults: Faults = Faults(cut_first=("wh-beta@1.0.0",))) -> tuple[subprocess.CompletedProcess, dict]:
    """`eval "$WORKHUB_RETRY" npm ci` through the fault proxy, with the npm fetch settings `build`
    gives a build (build_arg_values: what a hub's Dockerfile hands npm)."""
    # Not a skip: the machine's Node.js and npm are part of what these tests need (as Docker is).
    assert NPM and NODE, "these tests run the real npm and node: install Node.js with npm on the PATH"
    app = project(tmp_path / "app")
    (tmp_path / "npmrc").touch()
    (tmp_path / "npmrc-global").touch()
    hub = type("TestHub", (), {"build_args": {}})()
    fetch = {k: v for k, v in build_arg_values(hub, build, None).items() if k.startswith("NPM_CONFIG_FETCH_")}
    with running_proxy(registry_url, faults, seed=1) as (url, stats):
        env = {**fetch, "PATH": f"{Path(NPM).parent}:{Path(NODE).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
               "NPM_CONFIG_USERCONFIG": str(tmp_path / "npmrc"), "NPM_CONFIG_GLOBALCONFIG": str(tmp_path / "npmrc-global"),
               "NPM_CONFIG_CACHE": str(tmp_path / "cache"), "NPM_CONFIG_REGISTRY": url,
               "NPM_CONFIG_PREFER_OFFLINE": "true", "NPM_CONFIG_AUDIT": "false", "NPM_CONFIG_FUND": "false",
               "NPM_CONFIG_UPDATE_NOTIFIER": "false", "NPM_CONFIG_LOGLEVEL": "http", "NODE_OPTIONS": "--max-old-space-size=512",
               "WORKHUB_RETRY": install_retry(build)}
        done = subprocess.run(["sh", "-c", 'eval "$WORKHUB_RETRY" npm ci'], cwd=app, env=env, capture_output=True,
                              text=True, timeout=240)
        return done, stats.snapshot()


def test_a_cut_download_costs_one_fetch_of_that_tarball_and_no_second_download_round(tmp_path, registry):
    done, stats = install(tmp_path, registry, BuildSettings())
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "workhub: the download of /wh-beta/-/wh-beta-1.0.0.tgz was cut short (ECONNRESET)" in out
    assert "npm error network aborted" not in out, "the try stopped at the cut, before npm's own failure"
    assert "workhub: 3 of the 3 packages of package-lock.json are in the npm cache (0 downloads tried again)" in out
    assert out.count("workhub: try ") == 1, "one try failed, the next one installed"
    assert stats["faults"]["cut"] == 1
    # The fill fetched the cut tarball again (and any the stopped try had not finished); the second
    # try (npm's http log after the retry's line) downloaded no tarball: each came from the cache.
    assert stats["tarballs"]["wh-beta@1.0.0"] == 2, stats["tarballs"]
    assert all(count <= 2 for count in stats["tarballs"].values()), stats["tarballs"]
    second_try = out.split("workhub: try 1 of npm ci failed from the network", 1)[1]
    fetched = [line for line in second_try.splitlines() if ".tgz" in line and "http fetch GET" in line]
    # "cache stale": prefer-offline took the cached copy without asking the registry
    assert len(fetched) == 3 and all(line.endswith(("(cache hit)", "(cache stale)")) for line in fetched), fetched
    for name in PACKAGES:
        assert json.loads((tmp_path / "app" / "node_modules" / name / "package.json").read_text())["name"] == name


def test_without_the_fill_npm_fails_the_try_itself_and_the_next_try_fetches_again(tmp_path, registry):
    """The same cut with build.installFillCache false: the retry as it was."""
    done, stats = install(tmp_path, registry, BuildSettings(installFillCache=False))
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "npm error network aborted" in out and "was cut short" not in out and "are in the npm cache" not in out
    assert stats["tarballs"]["wh-beta@1.0.0"] == 2


def project_build_settings() -> BuildSettings:
    """workhub:build as the project's Pulumi.yaml sets it: what every stack builds with."""
    config = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"]
    return BuildSettings(**config["workhub:build"]["value"])


def test_a_stalled_tarball_costs_one_fetch_timeout_with_the_projects_settings_not_the_stall(tmp_path, registry):
    """Issue 22: a tarball whose registry sends nothing for 30 s. npm's fetch-timeout (from the first
    byte of the request to the response's headers, minipass-fetch's request timeout) cuts it and npm
    fetches it again; with the project's settings that must cost a few seconds, not the 30 s stall
    (Pulumi.yaml once pinned fetch-timeout 30000 over the 5000 the benchmark measured)."""
    settings = project_build_settings()
    started = time.monotonic()
    done, stats = install(tmp_path, registry, settings, Faults(stall_first=("wh-beta@1.0.0",), stall_seconds=30))
    took = time.monotonic() - started
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert stats["faults"]["stall"] == 1 and stats["tarballs"]["wh-beta@1.0.0"] == 2, stats
    assert "wh-beta-1.0.0.tgz attempt 1 failed" in out, "npm's own retry fetched it again, in the same try"
    assert out.count("workhub: try ") == 0, "no second try of the install"
    assert took < 15, f"the install took {took:.1f} s for one stalled tarball: npm waited for the stall"


def test_a_download_that_stalls_after_its_headers_costs_one_fetch_timeout_too(tmp_path, registry):
    """A body stall: headers and half the body, then silence. npm's fetch-timeout is also its
    agent's idle timeout (@npmcli/agent: a socket silent that long is destroyed), so the download
    ends like a cut one: the try stops there, the fill fetches it again, the next try installs."""
    BODY_STALL_ONCE.add("wh-beta")
    started = time.monotonic()
    done, stats = install(tmp_path, registry, project_build_settings(), Faults())
    took = time.monotonic() - started
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "workhub: the download of /wh-beta/-/wh-beta-1.0.0.tgz was cut short (ECONNRESET)" in out
    assert stats["tarballs"]["wh-beta@1.0.0"] == 2, stats
    assert took < 15, f"the install took {took:.1f} s for one tarball stalled after its headers"
