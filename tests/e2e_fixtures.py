"""Fixtures for end-to-end tests: the real Pulumi toolchain, a throwaway SSH + Docker host, the
local npm registry cache, and `local` stacks in project directories and file backends of their own.
Nothing here skips: a missing part is a failure that says what is missing. When an e2e test
fails, the host's sshd and dockerd logs are attached to its report."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional, TypeVar

import pytest
import yaml
from pulumi import automation as auto

from components.render.host.build import arg_words
from tools.procwatch import Watcher
from workhub import engine as eng
from workhub.engine import print_line

if TYPE_CHECKING:
    from tools.forward import Forward
    from tools.prober import ProbeReport

RUN_ID = uuid.uuid4().hex[:8]
SAMPLE_HUBS = ["wbhubmanager", "wbsaleshub", "wbfinhub"]


@pytest.fixture(scope="session")
def toolchain() -> Path:
    try:
        return eng.ensure_toolchain()
    except (subprocess.CalledProcessError, OSError) as error:
        pytest.fail(f"the Pulumi toolchain could not be made ready ({error}); run scripts/toolchain.sh to see why")


# Under pytest-xdist (scripts/test -n 2 --dist loadgroup: the groups below), each worker is a session
# of its own; what a session starts once (the test host, and the Docker engine and npm registry it
# starts) is then started by the first worker that needs it and stopped by the last one done with it.
T = TypeVar("T")


def _run_file(name: str, run: str) -> Path:
    """A file of xdist run `run` that the workers and the controller share (removed at the run's end)."""
    return Path(tempfile.gettempdir()) / f"workhub-xdist-{run}-{name}"


def _run_dir(tmp_path_factory) -> Optional[Path]:
    """The directory every worker of this xdist run shares (xdist's own pattern); None without xdist."""
    return tmp_path_factory.getbasetemp().parent if os.environ.get("PYTEST_XDIST_WORKER") else None


@contextlib.contextmanager
def _flocked(path: Path, how: int = fcntl.LOCK_EX) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, how)
        yield


@contextlib.contextmanager
def once_per_run(tmp_path_factory, name: str, start: Callable[[], T], stop: Callable[[], None]) -> Iterator[T]:
    """`start()`'s answer, `stop()` after the last user: this session's, or every xdist worker's that
    asked for `name` while it ran (workers count their use in a file beside it, under its lock)."""
    shared = _run_dir(tmp_path_factory)
    if shared is None:
        value = start()
        try:
            yield value
        finally:
            stop()
        return
    users, lock = shared / f"{name}.users", shared / f"{name}.lock"
    with _flocked(lock):
        value = start()  # idempotent: a later worker gets the running one's answer
        users.write_text(str(int(users.read_text()) + 1 if users.exists() else 1))
    try:
        yield value
    finally:
        with _flocked(lock):
            left = int(users.read_text()) - 1
            users.write_text(str(left))
            if left == 0:
                stop()


def _run_lock(name: str, how: int = fcntl.LOCK_EX) -> contextlib.AbstractContextManager:
    """Under xdist, the lock `name` of this run (`how`: exclusive or shared); without it, nothing to
    hold (one process runs every test in turn)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    return _flocked(_run_file(name, run), how) if run else contextlib.nullcontext()


def build_cache_to_itself() -> contextlib.AbstractContextManager:
    """Under xdist, the test host engine's build cache to this worker while held: every build there
    shares its npm cache mount (/root/.npm), so a test that counts a cold build's downloads holds
    it, and so does a build of the Swarm tests' CI stand-in (BedCi)."""
    return _run_lock("build-cache.lock")


@pytest.fixture
def own_build_cache():
    """The test host engine's build cache to this test alone (build_cache_to_itself)."""
    with build_cache_to_itself():
        yield


def _state_of(tmp_path_factory, name: str) -> Path:
    """A test host's state directory: this session's, or the one every xdist worker of the run shares."""
    shared = _run_dir(tmp_path_factory)
    if shared is None:
        return tmp_path_factory.mktemp(f"{name}-{RUN_ID}")
    state = shared / name
    state.mkdir(exist_ok=True)
    return state


@contextlib.contextmanager
def _running_test_host(tmp_path_factory, name: str, state: Path, user: str) -> Iterator[dict]:
    """The test host `name` (its own sshd, keys and deploy user `user`; the Docker engine is the
    machine's, shared) for as long as this run's workers use it."""
    def start() -> dict:
        try:
            return json.loads(subprocess.run(
                [str(eng.REPO / "scripts" / "testhost.sh"), "up"], check=True, stdout=subprocess.PIPE, text=True,
                env={**os.environ, "WORKHUB_STATE_DIR": str(state), "WORKHUB_TESTHOST_USER": user}).stdout)
        except subprocess.CalledProcessError as error:
            pytest.fail(f"the SSH + Docker test host did not start ({error}); run scripts/testhost.sh up to see why")

    with once_per_run(tmp_path_factory, name, start,
                      lambda: eng.testhost("down", "--purge", state_dir=state)) as host:
        yield host


@pytest.fixture(scope="session")
def first_host_state(tmp_path_factory) -> Path:
    return _state_of(tmp_path_factory, "testhost")


@pytest.fixture(scope="session")
def first_test_host(tmp_path_factory, first_host_state: Path):
    """The test host for this run: its own keys and sshd port; the Docker engine is shared (and
    started by this host when it was not running, so stopped only once no worker uses this host)."""
    with _running_test_host(tmp_path_factory, "testhost", first_host_state, "deploy") as host:
        yield host


# What a test asks for: the first test host, unless its module runs on the side host (on_the_side_host).
@pytest.fixture(scope="session")
def host_state(first_host_state: Path) -> Path:
    return first_host_state


@pytest.fixture(scope="session")
def test_host(first_test_host: dict) -> dict:
    return first_test_host


# The side host: a second test host (its own sshd and deploy user, whose home keeps its own build
# lock and records; the same Docker engine), for modules whose tests may run beside the one-host
# tests, in the other xdist worker (on_the_side_host): a test there may stop the first host's sshd
# (test_e2e_interrupts) or hold its build lock, and none of that reaches the side host.
SIDE_USER = "side-deploy"


@pytest.fixture(scope="session")
def side_host_state(tmp_path_factory) -> Path:
    return _state_of(tmp_path_factory, "sidehost")


@pytest.fixture(scope="session")
def side_host(tmp_path_factory, side_host_state: Path, first_test_host: dict):
    """After the first test host, which starts the Docker engine and stops it when it is done."""
    with _running_test_host(tmp_path_factory, "sidehost", side_host_state, SIDE_USER) as host:
        yield host


def engine_shared() -> contextlib.AbstractContextManager:
    """Under xdist, this machine's Docker engine kept running while held (shared with the other
    holders); engine_to_itself waits for every holder, then may stop and start it."""
    return _run_lock("engine.lock", fcntl.LOCK_SH)


def engine_to_itself() -> contextlib.AbstractContextManager:
    """Under xdist, this machine's Docker engine to this test alone (it stops and starts it)."""
    return _run_lock("engine.lock")


def on_the_side_host() -> tuple:
    """Fixtures that put a module's tests on the side host: `test_host` and `host_state` are the side
    host's, and for the whole module the engine keeps running and its build cache is the module's
    (build_cache_to_itself). Such a module's tests are an xdist group of their own (`side-host`), so
    they run beside the one-host tests. In the module: `test_host, host_state, beside = on_the_side_host()`."""
    @pytest.fixture(scope="session", name="test_host")
    def side_test_host(side_host):
        return side_host

    @pytest.fixture(scope="session", name="host_state")
    def side_state(side_host_state):
        return side_host_state

    @pytest.fixture(scope="module", autouse=True, name="beside_the_one_host")
    def beside():
        with engine_shared(), build_cache_to_itself():
            yield

    return side_test_host, side_state, beside


@pytest.fixture(scope="session")
def npm_registry(test_host) -> str:
    """The local npm registry cache, warm with the sample hubs' packages: its URL on loopback (a
    stack's builds reach it through the forward on Docker's bridge: for_builds). After the test
    host, whose Docker engine the forward needs."""
    try:
        return eng.registry_up()
    except subprocess.CalledProcessError as error:
        pytest.fail(f"the local npm registry did not start ({error}); run scripts/registry.sh up to see why")


# Forwards on Docker's bridge to registries of a test's own on loopback (fault proxies), by port.
_BUILD_FORWARDS: dict[int, "Forward"] = {}


def docker_bridge() -> tuple[str, str]:
    """The gateway address and network of the test host engine's default bridge (where builds run)."""
    address, network = docker("network", "inspect", "bridge", "--format",
                              "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}").split()
    return address, network


def for_builds(url: str) -> str:
    """`url`, an npm registry on this machine's loopback, as a build on Docker's bridge network
    reaches it: the local cache through the forward scripts/registry.sh keeps, any other (a fault
    proxy of the test's) through a forward of this session's, from the bridge's network only."""
    from tools.forward import Forward

    parts = urllib.parse.urlsplit(url)
    if parts.hostname != "127.0.0.1" or parts.port is None:
        return url
    if url == eng.registry("url").strip():
        return eng.registry_for_builds()
    forward = _BUILD_FORWARDS.get(parts.port)
    if forward is None:
        address, network = docker_bridge()
        forward = Forward(address, 0, ("127.0.0.1", parts.port), allow=[network])
        assert forward.port, f"cannot listen on {address} for builds: {forward.error}"
        atexit.register(forward.close)
        _BUILD_FORWARDS[parts.port] = forward
    return urllib.parse.urlunsplit((parts.scheme, f"{forward.listen}:{forward.port}", parts.path, "", ""))


@pytest.fixture(scope="session")
def image_registry(host_state: Path, test_host: dict):
    """A throwaway image registry with a login on 127.0.0.1 (Debian's docker-registry), for the
    registry build mode: the CI stand-in pushes there and the test host pulls."""
    try:
        registry = json.loads(eng.image_registry("up", state_dir=host_state))
    except subprocess.CalledProcessError as error:
        pytest.fail(f"the image registry did not start ({error}); run scripts/image-registry.sh up to see why")
    yield registry
    eng.image_registry("down", "--purge", state_dir=host_state)


class CiStandIn:
    """Stands in for CI's pulumi-docker build in registry mode (the docker provider plugin cannot
    be built here): builds each hub with BuildKit and the same args, cache and tags that
    components.resources.host.registry_image.push_with_docker gives docker.Image, pushes it with a login, and
    then forgets the image locally, so the host (which shares this Docker engine) has to pull it."""

    def __init__(self, registry: dict):
        self.registry = registry
        self.pushed: list[str] = []

    def docker(self, *args: str, config: Optional[Path] = None, stdin: Optional[bytes] = None) -> None:
        """Run the Docker CLI, echoing its output (the build log) as CI's would show."""
        env = {**os.environ, "DOCKER_BUILDKIT": "1", **({"DOCKER_CONFIG": str(config)} if config else {})}
        done = subprocess.run(["/usr/bin/docker", *args], env=env, input=stdin, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
        output = done.stdout.decode("utf-8", "replace")
        print(f"ci: docker {args[0]}\n{output}", file=sys.stderr)
        if done.returncode != 0:
            raise RuntimeError(f"the CI stand-in's docker {' '.join(args[:2])} failed:\n{output[-3000:]}")

    def __call__(self, push, opts) -> list:
        if push.remote in self.pushed:
            return []
        with tempfile.TemporaryDirectory() as config:
            password = Path(self.registry["password_file"]).read_bytes()
            self.docker("login", "--username", self.registry["username"], "--password-stdin", push.registry.server,
                        config=Path(config), stdin=password)
            self.docker("build", f"--network={push.network}", "--progress=plain", "--file",
                        str(push.plan.context / push.plan.hub.dockerfile), "--tag", push.remote,
                        "--cache-from", push.cache, *arg_words(push.args), str(push.plan.context), config=Path(config))
            self.docker("push", push.remote, config=Path(config))
            self.docker("tag", push.remote, push.cache)
            self.docker("push", push.cache, config=Path(config))
            self.docker("image", "rm", push.remote, push.cache)
        self.pushed.append(push.remote)
        return []


def health(url: str) -> int:
    """The HTTP status a hub's health path answers with at `url`."""
    try:
        with urllib.request.urlopen(url + "/health", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def deploy_home(user: str = "deploy") -> Path:
    """The home of a deploy user on this machine: the test host's (`deploy`), or the Swarm test
    bed's (its env's `user`), whose nodes share this machine's file system."""
    entry = subprocess.run(["getent", "passwd", user], capture_output=True, text=True, check=True).stdout
    return Path(entry.split(":")[5])


def docker(*args: str, check: bool = True) -> str:
    """The test host's Docker CLI (Debian's client); its stdout."""
    return subprocess.run(["/usr/bin/docker", *args], capture_output=True, text=True, check=check).stdout.strip()


def serving_container(hub: str, stack: str, user: str = "deploy") -> str:
    """The container a hub's proxy sends its requests to (the live slot), as its config names it
    (in the home of `user`, the test host's deploy user)."""
    from components.render.host.documents import LIVE_MARK, slot_container

    config = (deploy_home(user) / ".workhub" / "proxy" / f"{hub}-{stack}" / "haproxy.cfg").read_text()
    (live,) = [line[len(LIVE_MARK):] for line in config.splitlines() if line.startswith(LIVE_MARK)]
    return slot_container(hub, stack, live)


def running_image(hub: str, stack: str, user: str = "deploy") -> str:
    """The image a hub serves from on the test host (whose deploy user is `user`)."""
    return docker("inspect", "--format", "{{.Config.Image}}", serving_container(hub, stack, user))


def build_records(user: str = "deploy") -> list[dict]:
    """Every build `user`'s (the test host's deploy user, by default) host has recorded, oldest first."""
    records = deploy_home(user) / ".workhub" / "builds.jsonl"
    if not records.exists():
        return []
    return [json.loads(line) for line in records.read_text().splitlines() if line.strip()]


def records_since(before: int) -> list[dict]:
    return build_records()[before:]


def npm_steps_cached(log: str) -> dict[str, bool]:
    """For each `npm ... ci` step of a BuildKit plain-progress log (after its mounts, the npm cache's
    and the retry's secret; under workhub's retry or not, which BuildKit shows as
    `eval "sh /run/secrets/workhub-retry" npm ci`, or the retry's text without the secret; after
    the words before it, `set -eux && cd app && npm ci --omit=dev`): whether it was CACHED."""
    steps = {}
    for match in re.finditer(r'^#(\d+) \[[^\]]*\] RUN (?:--mount=\S+ )+(?:eval ".*" )?((?:\S+ )*?npm .*\bci\b.*)$',
                             log, re.M):
        number, command = match.groups()
        steps[command] = re.search(rf"^#{number} CACHED$", log, re.M) is not None
    return steps


def forget_local_images() -> None:
    """Start from no image of the sample hubs, so every build in the test really runs."""
    listed = subprocess.run(["/usr/bin/docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
                            capture_output=True, text=True, check=True).stdout.split()
    stale = [ref for ref in listed if ref.split(":")[0] in SAMPLE_HUBS and ref.split(":")[1].startswith("e2e-")]
    if stale:
        subprocess.run(["/usr/bin/docker", "image", "rm", "--force", *stale], capture_output=True, check=True)


@pytest.fixture
def sources(tmp_path_factory) -> Path:
    """A copy of the sample hubs that the test may edit. Not under `tmp_path`, which new_local_stack
    makes its stacks' state directory: workhub takes every permission of group and others from
    what it finds there once (engine.private_state), and a registry-mode build sends its context's
    files with their modes as they are, so the hub's own uid could not read its sources."""
    root = tmp_path_factory.mktemp("sources") / "examples"
    shutil.copytree(eng.REPO / "examples", root, ignore=shutil.ignore_patterns("node_modules", "dist"))
    return root


def break_frontend(sources: Path, context: str) -> None:
    """Make a hub's front-end build fail (a syntax error), as a bad commit would."""
    app = sources / context / "frontend" / "src" / "App.tsx"
    app.write_text(app.read_text() + "\nexport const broken = ;\n")


def set_build_setting(work_dir: Path, key: str, value) -> None:
    """Change one `workhub:build` setting in a test project's Pulumi.yaml."""
    project = yaml.safe_load((work_dir / "Pulumi.yaml").read_text())
    project["config"]["workhub:build"]["value"][key] = value
    (work_dir / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))


def edit_server(sources: Path, context: str, old: str, new: str) -> None:
    """Change one statement of a sample hub's server.js (`old` is a regular expression), as a commit would."""
    server = sources / context / "server.js"
    text, count = re.subn(old, lambda _: new, server.read_text(), count=1)
    assert count == 1, f"{server} has nothing matching {old!r}"
    server.write_text(text)


HEALTH_ANSWER = r"res(\.status\(\d+\))?\.json\(\{ status: '\w+', hub: HUB[^;]*\);"
LISTEN = r"app\.listen\(PORT, HOST, "


def mark_version(sources: Path, context: str, rev: str) -> None:
    """A new version of the hub, told apart by its health answer (which says `rev`)."""
    edit_server(sources, context, HEALTH_ANSWER, f"res.json({{ status: 'ok', hub: HUB, version: pkg.version, rev: '{rev}' }});")


def break_health(sources: Path, context: str) -> None:
    """A new version that starts and listens, but answers its health path with 500."""
    edit_server(sources, context, HEALTH_ANSWER, "res.status(500).json({ status: 'broken', hub: HUB });")


def listen_elsewhere(sources: Path, context: str) -> None:
    """A new version that never listens on its PORT (it reads the wrong one)."""
    edit_server(sources, context, LISTEN, "app.listen(PORT + 1, HOST, ")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def new_local_stack(
    tmp_path: Path,
    host: dict,
    npm_registry: Optional[str] = None,
    hubs: Optional[list[dict]] = None,
    source_root: Path = eng.REPO / "examples",
    overrides: Optional[dict[str, str]] = None,
    name: str = "e2e",
    project: str = "project",
    secrets: Optional[dict[str, dict[str, str]]] = None,
    deploy: Optional[dict[str, int]] = None,
):
    """A stack configured like the embedded `local` one, in a fresh project directory and file
    backend, pointed at `host`.

    `npm_registry` is on loopback (the local cache, or a test's fault proxy in front of it): the
    stack's builds reach it through a forward on Docker's bridge (for_builds).
    `hubs` replaces the project's hub catalog (None keeps Pulumi.yaml's), `deploy` changes some of
    its workhub:deploy settings, and `secrets` gives the hubs' secrets (None: random values kept in
    `tmp_path`). The stack has its own
    name and each hub a free host port, so a test never touches a developer's own local stack
    (its containers are named after the stack). Stacks made with one `tmp_path` share a backend,
    so one can promote from another."""
    work = tmp_path / project
    work.mkdir()
    project = yaml.safe_load((eng.REPO / "Pulumi.yaml").read_text())
    if hubs is not None:
        project["config"]["workhub:hubs"]["value"] = hubs
    project["config"]["workhub:deploy"]["value"].update(deploy or {})
    (work / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    names = [hub["name"] for hub in project["config"]["workhub:hubs"]["value"]]
    # The template's host ports are a developer's local stack's; this one takes free ones instead.
    # Without a registry (a stack that builds nothing), one that refuses every connection.
    registry = for_builds(npm_registry) if npm_registry else "http://127.0.0.1:9/"
    values = {k: v for k, v in eng.local_config(host, registry).items() if not k.startswith("workhub:hostPorts.")}
    if "user" in host:  # the side host's deploy user is not the template's
        values["workhub:host.user"] = host["user"]
    values["workhub:sourceRoot"] = str(source_root)
    values.update({f"workhub:hostPorts.{name}": str(port) for name, port in zip(names, free_ports(len(names)))})
    # The template's per-stack settings are for the sample hubs' own; a test's hubs get a value each.
    values = {k: v for k, v in values.items() if not k.startswith("workhub:env.")}
    for hub in project["config"]["workhub:hubs"]["value"]:
        values.update({f"workhub:env.{hub['name']}.{key}": f"http://127.0.0.1/{hub['name']}/{key.lower()}"
                       for key in hub.get("stackEnv") or []})
    values.update(overrides or {})
    engine = eng.local_engine(work_dir=work, state_dir=tmp_path)
    stack = engine.stack(name)
    eng.configure_local(engine, stack, host, values, secrets)
    return engine, stack


@pytest.fixture
def local_stack(tmp_path: Path, toolchain: Path, test_host: dict):
    """A local stack with no hubs: the host, its facts, preflight and setup only."""
    engine, stack = new_local_stack(tmp_path, test_host, hubs=[])
    yield stack
    # Leave nothing behind on the host even when the test failed half-way.
    stack.destroy(color="never")


@pytest.fixture(scope="module")
def process_watch(tmp_path_factory):
    """Every process on this machine (the test host's and the Swarm test bed's with them) watched
    from the first test that asks for it to the module's end (tools/procwatch.py): the module's
    tests add the secret values they use to `process_watch.secrets`, and its last test calls
    `assert_no_secret_in_any_process`."""
    watcher = Watcher(tmp_path_factory.mktemp("procwatch") / "seen.json")
    watcher.start()
    yield watcher
    watcher.stop()


def secret_values(stack: auto.Stack) -> dict[str, str]:
    """Every secret value in the stack's config, by its key (`workhub:secrets.<hub>.<NAME>` for a
    hub's secret): the SSH key, the hubs' secrets, the registry password, the webhook URL."""
    values: dict[str, str] = {}

    def add(key: str, value) -> None:
        if isinstance(value, dict):
            for inner, leaf in value.items():
                add(f"{key}.{inner}", leaf)
        elif value is not None:
            values[key] = value if isinstance(value, str) else json.dumps(value)

    for key, value in stack.get_all_config().items():
        if value.secret:
            try:
                parsed = json.loads(value.value)
            except ValueError:
                parsed = value.value
            add(key, parsed if isinstance(parsed, dict) else value.value)
    # The stack's passphrase, which the CLI reads from its file (PULUMI_CONFIG_PASSPHRASE_FILE).
    passphrase_file = stack.workspace.env_vars.get("PULUMI_CONFIG_PASSPHRASE_FILE")  # type: ignore[attr-defined]
    if passphrase_file:
        values["the stack's passphrase"] = Path(passphrase_file).read_text().strip()
    return values


def key_headers() -> list[str]:
    """Private keys of each kind an SSH key may be (in the OpenSSH format the test keys have): what
    every key of a kind shares (its header, its first lines) is no part of a secret to look for."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    keys = [ed25519.Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1()),
            rsa.generate_private_key(public_exponent=65537, key_size=2048)]
    return [key.private_bytes(serialization.Encoding.PEM, format_, serialization.NoEncryption()).decode()
            for key in keys for format_ in (serialization.PrivateFormat.OpenSSH, serialization.PrivateFormat.PKCS8)]


def workhub(engine: eng.Engine, *args: str) -> subprocess.CompletedProcess:
    """`scripts/workhub ARGS` as the stack's operator runs it: `python -m workhub` with the stack's
    project (WORKHUB_PROJECT_DIR), backend and passphrase in its environment. What it printed goes
    to this test's report; a traceback fails the test."""
    env = {**os.environ, **engine.env(), eng.PROJECT_DIR_ENV: str(engine.work_dir),
           "WORKHUB_STATE_DIR": str(engine.state_dir), eng.TOOLCHAIN_BIN_ENV: str(eng.ensure_toolchain())}
    done = subprocess.run([sys.executable, "-m", "workhub", *args], cwd=eng.REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    print(f"$ scripts/workhub {' '.join(args)}  (exit {done.returncode})\n{done.stderr}{done.stdout}", file=sys.stderr)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done


def assert_no_secret_in_any_process(watcher: Watcher) -> list:
    """Stop the watcher; fail naming each process that had one of `watcher.secrets` in its command
    line or environment (a one-host hub container's environment left out: it holds the hub's
    secrets by design: those findings are returned). The stacks' own passphrases are among the
    secrets (`secret_values`: the CLI reads them from a file); where a passphrase the user gave in
    PULUMI_CONFIG_PASSPHRASE was is said, not failed: that is where the user put it."""
    assert watcher.secrets, "the module's tests named no secret value to look for"
    passphrase = os.environ.get("PULUMI_CONFIG_PASSPHRASE", "")
    return watcher.assert_clean(watcher.secrets, common=key_headers(),
                                noted={"the stacks' passphrase": passphrase} if passphrase else {})


# Groups for `--dist loadgroup` (scripts/test -n 2): the end-to-end tests on the Swarm test bed (one
# per machine) run in one worker, in order; those on the side host (on_the_side_host) in one worker;
# every other end-to-end test (the one test host, its fixed stack and container names) in one other;
# unit tests go to whichever worker is free. xdist 3.8 marks a group by appending it to the test's
# node id, which pytest 9.2 no longer lets a plugin change (pytest-dev/pytest-xdist#1386), so each
# worker writes the groups to a file of this run and the scheduler below reads them there. Without
# -n none of this runs.
def pytest_configure(config) -> None:
    if config.pluginmanager.hasplugin("xdist") and not os.environ.get("PYTEST_XDIST_WORKER") \
            and config.getoption("testrunuid", None) is None:
        config.option.testrunuid = uuid.uuid4().hex  # the workers' PYTEST_XDIST_TESTRUNUID: the file's name


def pytest_collection_modifyitems(config, items) -> None:
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not os.environ.get("PYTEST_XDIST_WORKER") or not run:
        return
    groups = {item.nodeid: "swarm-bed" if "bed" in item.fixturenames else
              "side-host" if "beside_the_one_host" in item.fixturenames else "one-host"
              for item in items if item.get_closest_marker("e2e")}
    written = _run_file(f"groups.{os.getpid()}", run)
    written.write_text(json.dumps(groups))
    written.replace(_run_file("groups.json", run))  # every worker collects the same tests: the same file


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    run = config.getoption("testrunuid")
    for name in ("groups.json", "build-cache.lock", "engine.lock"):
        atexit.register(_run_file(name, run).unlink, missing_ok=True)

    class ByGroupFile(LoadGroupScheduling):
        """loadgroup with the groups the workers wrote (read once every worker has collected)."""

        groups: Optional[dict] = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:
                self.groups = json.loads(_run_file("groups.json", run).read_text())
            return self.groups.get(nodeid) or super()._split_scope(nodeid)

    return ByGroupFile(config, log)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and item.get_closest_marker("e2e") and "host_state" in item.fixturenames:
        state = item.funcargs.get("host_state")
        try:
            logs = eng.testhost("logs", state_dir=state) if state else ""
        except subprocess.CalledProcessError as error:
            logs = f"(could not read the test host's logs: {error})"
        report.sections.append(("test host logs (sshd, dockerd)", logs))


@dataclass
class ProbedDeploy:
    """What clients saw during one `up`: the prober's report, the slow requests kept in flight
    through it, and the `up`'s result (or, when it failed, its message)."""

    report: "ProbeReport"
    slow: list
    result: Optional[auto.UpResult] = None
    error: str = ""

    def switch_time(self, body_part: str) -> float:
        """When the first answer containing `body_part` (the new version's) came, in prober time."""
        times = [window.first for body, window in self.report.bodies.items() if body_part in body]
        assert times, f"no answer with {body_part!r}:\n{self.report.summary()}"
        return min(times)


def deploy_under_probe(stack: auto.Stack, url: str, fails: bool = False, rate: float = 25.0,
                       slow_ms: int = 3000, keep_alive: bool = False) -> ProbedDeploy:
    """Run `up` (expected to fail when `fails`) while a prober requests the hub's health path at
    `rate` per second (on a fresh connection each, or on kept-alive ones) and a request of
    `slow_ms` to /slow starts every half second."""
    from tools.prober import Prober

    stop = threading.Event()
    slow: list = []
    with Prober(url, rate=rate, keep_alive=keep_alive) as prober:
        def keep_slow() -> None:
            while not stop.is_set():
                slow.append(prober.side_request(f"/slow?ms={slow_ms}"))
                stop.wait(0.5)

        thread = threading.Thread(target=keep_slow, daemon=True)
        thread.start()
        outcome = ProbedDeploy(report=None, slow=[])  # type: ignore[arg-type]
        try:
            if fails:
                with pytest.raises(auto.errors.CommandError) as caught:
                    stack.up(on_output=print_line, color="never")
                outcome.error = str(caught.value)
            else:
                outcome.result = stack.up(on_output=print_line, color="never")
        finally:
            stop.set()
            thread.join()
        outcome.slow = [future.result() for future in slow]
    outcome.report = prober.report()
    print(outcome.report.summary())
    return outcome
