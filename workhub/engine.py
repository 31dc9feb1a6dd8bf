"""Running the real Pulumi engine on workhub's program through the Automation API.

The program runs inline (in this process) while the engine, the state backend and the provider
plugins are the real ones. That way one code path serves `python -m workhub`, the end-to-end
tests and CI, and no Python language-host binary is needed next to the CLI.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import os
import posixpath
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pulumi import automation as auto

from components.resources.host.build_host import connection_for
from components.plan.context import context_files
from components.config.models import SSH_KEY, StackConfig
from components.config.parse import namespaced, parse_stack_config
from components.program import program_for
from components.resources.host.registry_image import Pusher, push_with_docker
from components.ssh import run_script
from workhub import locks
from workhub.lean import lean
from workhub.display import Display, command_stderr, failure_report, print_err
from workhub.policy import policy_packs

REPO = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("WORKHUB_STATE_DIR", REPO / ".workhub"))
LOCAL_STACK = "local"
# The local stacks' secrets passphrase: random, one per checkout, kept in this file of the state
# directory (mode 0600), made once. The CLI reads it from there (PULUMI_CONFIG_PASSPHRASE_FILE), so
# it is in no process's environment. A user's own PULUMI_CONFIG_PASSPHRASE(_FILE) wins.
PASSPHRASE_FILE = "passphrase"
# The fixed passphrase local stacks had before each checkout had its own (it was in this file, so
# anyone could read their secrets): a stack still encrypted with it is moved to the checkout's own.
FORMER_LOCAL_PASSPHRASE = "workhub-local-test-host"


# The project the commands work on (Pulumi.yaml, each stack's Pulumi.<stack>.yaml): this checkout,
# unless it names another directory (stacks' config kept apart from workhub's code, a test's project).
PROJECT_DIR_ENV = "WORKHUB_PROJECT_DIR"


def project_dir() -> Path:
    """The project directory of the stacks other than `local` (WORKHUB_PROJECT_DIR, or this checkout)."""
    return Path(os.environ.get(PROJECT_DIR_ENV) or REPO)


# scripts/workhub sets it to what scripts/setup.sh's toolchain check printed a moment before.
TOOLCHAIN_BIN_ENV = "WORKHUB_TOOLCHAIN_BIN"


def ensure_toolchain() -> Path:
    """Build or find the Pulumi CLI and put its directory first on PATH (progress on stderr). When
    scripts/workhub's setup has just checked it (WORKHUB_TOOLCHAIN_BIN names a directory with a
    runnable `pulumi`), that directory is used without checking again."""
    checked = os.environ.get(TOOLCHAIN_BIN_ENV, "")
    if checked and os.access(Path(checked) / "pulumi", os.X_OK):
        bin_dir = checked
    else:
        bin_dir = subprocess.run(
            [str(REPO / "scripts" / "toolchain.sh")], check=True, stdout=subprocess.PIPE, text=True
        ).stdout.strip()
    os.environ["PATH"] = os.pathsep.join([bin_dir, str(Path(sys.executable).parent), os.environ["PATH"]])
    return Path(bin_dir)


@contextlib.contextmanager
def private_files() -> Iterator[None]:
    """What this process and the commands it starts meanwhile write (the Pulumi CLI: a stack's state,
    its Pulumi.<stack>.yaml) is its user's alone: umask 077."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


class KnownStackWorkspace(auto.LocalWorkspace):
    """A workspace whose stacks are known to exist: selecting one runs no CLI (`pulumi stack select`
    costs a CLI start, and the selection is not needed: every operation of the Automation API names
    its stack with `--stack`)."""

    def select_stack(self, stack_name: str) -> None:
        pass


@functools.cache
def pulumi_command(path: str) -> auto.PulumiCommand:
    """The Pulumi CLI at `path`. Making one runs `pulumi version` (the SDK checks it), a CLI start that
    costs about 0.3 s of CPU, so each binary is checked once per process, not once per stack or engine."""
    return auto.PulumiCommand(root=str(Path(path).parent.parent)) if os.sep in path else auto.PulumiCommand()


@dataclass
class Engine:
    """Where a stack's project files and state live, and what the engine's environment holds."""

    work_dir: Path = REPO
    backend_url: Optional[str] = None
    passphrase: Optional[str] = None
    """A passphrase given as a value (PULUMI_CONFIG_PASSPHRASE): tests' own stacks."""
    passphrase_file: Optional[Path] = None
    """The file the CLI reads the passphrase from (PULUMI_CONFIG_PASSPHRASE_FILE): the local stacks'."""
    extra_env: dict[str, str] = field(default_factory=dict)
    pusher: Pusher = push_with_docker
    """How registry-mode hubs are built and pushed (pulumi-docker; the e2e tests stand in for CI)."""
    state_dir: Path = STATE_DIR
    """Where local files of the runner live (the local stacks' generated secrets among them)."""

    def env(self) -> dict[str, str]:
        env = {
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            # The dynamic provider plugin runs this Python, which can import components/.
            "PULUMI_PYTHON_CMD": sys.executable,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        if self.backend_url:
            env["PULUMI_BACKEND_URL"] = self.backend_url
        if self.passphrase is not None:
            env["PULUMI_CONFIG_PASSPHRASE"] = self.passphrase
        elif self.passphrase_file is not None:
            env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(self.passphrase_file)
        env.update(self.extra_env)
        return env

    @property
    def command(self) -> auto.PulumiCommand:
        """The Pulumi CLI on PATH, its version checked once in this process (pulumi_command)."""
        return pulumi_command(shutil.which("pulumi") or "pulumi")

    def program(self) -> Callable[[], None]:
        """workhub's program, to run inline with this engine's environment."""
        return program_for(self.work_dir, self.pusher, self.env(), self.command)

    def workspace(self, known: bool = False) -> auto.LocalWorkspace:
        """The project's workspace; `known`: one for stacks known to exist (KnownStackWorkspace)."""
        kind = KnownStackWorkspace if known else auto.LocalWorkspace
        return kind(work_dir=str(self.work_dir), program=self.program(), env_vars=self.env(),
                    pulumi_command=self.command)

    def stack(self, name: str, create: bool = True) -> auto.Stack:
        """The stack `name`; with `create=False` only one that exists (else StackNotFoundError). In
        a local file backend, whose files say which stacks exist, one that exists is selected with no
        CLI run and a new one made with one (`stack init`), where the Automation API's
        create-or-select runs `stack select` first and then `stack init`."""
        held = self.file_backend_stacks()
        if held is not None and create:
            if name in held:
                return self.known_stack(name)
            with private_files():
                return lean(auto.Stack.create(name, self.workspace(known=True)))
        options = auto.LocalWorkspaceOptions(work_dir=str(self.work_dir), env_vars=self.env(),
                                             pulumi_command=self.command)
        select = auto.create_or_select_stack if create else auto.select_stack
        with private_files():
            return lean(select(name, project_name=project_name(self.work_dir), program=self.program(), opts=options))

    def file_backend_stacks(self) -> Optional[list[str]]:
        """The project's stacks in this engine's local file backend; None when the backend is not a
        local file one (or the project has no name), so only the CLI knows."""
        url = self.backend_url or ""
        if not url.startswith("file://") or not project_name(self.work_dir):
            return None
        return backend_stacks(Path(url.removeprefix("file://")).expanduser(), self.work_dir)

    def known_stack(self, name: str) -> auto.Stack:
        """The stack `name`, known to exist (its config fingerprint matched and its state is in the
        local backend), without the CLI run `stack select` costs: every operation of the Automation
        API names its stack (`--stack`). A stack not known to exist goes through `stack()`."""
        return lean(auto.Stack.select(name, self.workspace(known=True)))

    def set_secret(self, stack: str, key: str, value: str, path: bool = False) -> None:
        """Set a secret through stdin, so its value is in no process's arguments; with `path`, `key`
        is a path into an object (workhub:secrets.<hub>.<NAME>)."""
        with private_files():
            subprocess.run(
                ["pulumi", "config", "set", "--secret", "--stack", stack, *(["--path"] if path else []), key],
                input=value,
                text=True,
                check=True,
                cwd=self.work_dir,
                env={**os.environ, **self.env()},
                stdout=subprocess.DEVNULL,
            )

    def passphrase_in_use(self) -> Optional[str]:
        """The passphrase the CLI gets: given, from its file, or the user's own (None: not known)."""
        if self.passphrase is not None:
            return self.passphrase
        file = self.passphrase_file or os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")
        if not file:
            return os.environ.get("PULUMI_CONFIG_PASSPHRASE")
        try:
            return Path(file).read_text().strip()
        except OSError:
            return None


class NoSuchStack(Exception):
    """The stack named does not exist; nothing was created (the message says how to create it)."""


def existing_stack(engine: Engine, name: str) -> auto.Stack:
    """The stack `name` if it exists (the Automation API's select); NoSuchStack otherwise, naming the
    stacks there are and the command that creates one on purpose. A mistyped name creates nothing."""
    try:
        return engine.stack(name, create=False)
    except auto.errors.StackNotFoundError:
        pass
    if name == LOCAL_STACK and engine.backend_url == f"file://{engine.state_dir / 'state'}":
        raise NoSuchStack("the local stack was never deployed; 'scripts/workhub up' deploys it")
    try:
        names = sorted({summary.name.rsplit("/", 1)[-1] for summary in engine.workspace().list_stacks()})
    except auto.errors.CommandError:
        names = []
    backend = engine.backend_url or os.environ.get("PULUMI_BACKEND_URL")
    where = f"the backend {backend}" if backend else "the backend you are logged in to"
    listed = f"its stacks: {', '.join(names)}" if names else "it holds no stack of this project"
    raise NoSuchStack(f"there is no stack {name!r} in {where} ({listed}); nothing was created. To create it on "
                      f"purpose: scripts/workhub pulumi stack init {name}")


def local_engine(work_dir: Path = REPO, state_dir: Path = STATE_DIR,
                 say: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
                 environ: Optional[Mapping[str, str]] = None) -> Engine:
    """The embedded default: state in a local file backend next to the test host's files, in a
    state directory only its user can read, encrypted with the checkout's own passphrase (unless
    the user gives one: PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE). A local stack
    still encrypted with the former fixed passphrase is moved to the checkout's own first."""
    private_state(state_dir, work_dir)
    backend = state_dir / "state"
    with private_files():
        backend.mkdir(parents=True, exist_ok=True)
    own = users_passphrase(os.environ if environ is None else environ)
    engine = Engine(work_dir=work_dir, backend_url=f"file://{backend}", state_dir=state_dir,
                    passphrase_file=None if own else local_passphrase(state_dir))
    move_from_former_passphrase(engine, say)
    return engine


def users_passphrase(environ: Mapping[str, str]) -> bool:
    """Whether the user gives a passphrase of their own (which wins over the checkout's)."""
    return "PULUMI_CONFIG_PASSPHRASE" in environ or bool(environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"))


def local_passphrase(state_dir: Path) -> Path:
    """The checkout's passphrase file (state_dir/passphrase): 32 random bytes, base64url, mode 0600,
    made once. It appears whole or not at all (written aside, then linked into place), so two
    processes starting at once end up with the same one."""
    path = state_dir / PASSPHRASE_FILE
    if path.is_file() and path.stat().st_size:
        return path
    with private_files(), tempfile.NamedTemporaryFile("w", dir=state_dir, prefix=".passphrase-") as made:
        made.write(secrets.token_urlsafe(32) + "\n")
        made.flush()
        try:
            os.link(made.name, path)
        except FileExistsError:
            pass  # another process made it first: theirs it is
    return path


# Marks a state directory whose files were made private once (before, they were written with the
# caller's umask); from then on workhub writes everything there with umask 077.
TIGHTENED_MARK = ".modes-tightened"


def private_state(state_dir: Path, work_dir: Path) -> None:
    """The state directory exists and only its user can enter it (0700). Once, everything earlier
    versions wrote in it, and the local stacks' Pulumi.<stack>.yaml, lose every permission of group
    and others (symbolic links are left as they are)."""
    with private_files():
        state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    mark = state_dir / TIGHTENED_MARK
    if mark.exists():
        return
    paths = [Path(root) / name for root, dirs, files in os.walk(state_dir) for name in [*dirs, *files]]
    paths += [Path(work_dir) / f"Pulumi.{name}.yaml" for name in backend_stacks(state_dir / "state", work_dir)]
    for path in paths:
        try:
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
                os.chmod(path, stat.S_IMODE(mode) & ~0o077)
        except OSError:
            continue  # gone meanwhile, or not this user's
    with private_files():
        mark.write_text("workhub made the files here private to their user once; it writes them with umask 077\n")


def project_name(work_dir: Path) -> str:
    """The project's name (Pulumi.yaml's `name`); empty when there is no Pulumi.yaml."""
    try:
        return (yaml.safe_load((Path(work_dir) / "Pulumi.yaml").read_text()) or {}).get("name", "")
    except OSError:
        return ""


def backend_stacks(backend: Path, work_dir: Path) -> list[str]:
    """The stacks of the project in `work_dir` that the local file backend at `backend` holds."""
    project = project_name(work_dir)
    if not project:
        return []
    folder = backend / ".pulumi" / "stacks" / project
    return sorted({path.name.removesuffix(".gz").removesuffix(".json") for path in folder.glob("*.json*")
                   if path.name.endswith((".json", ".json.gz"))})


# Hashes of the salts (Pulumi.<stack>.yaml's encryptionsalt) found to open with the checkout's passphrase.
CHECKED_FILE = "passphrase.checked"


class PassphraseError(Exception):
    """A local stack's secrets open with neither the checkout's passphrase nor the former one."""


def opens(encryption_salt: str, passphrase: str) -> bool:
    """Whether `passphrase` opens a stack whose Pulumi.<stack>.yaml has this `encryptionsalt`.

    Written here because the CLI has no command that only checks a passphrase (one that decrypts
    the config needs a secret in it, and a CLI start): this is the check its passphrase secrets
    manager makes (pkg/secrets/passphrase), with the same primitives from well-kept libraries:
    `v1:<salt>:v1:<nonce>:<ciphertext>`, the key PBKDF2-HMAC-SHA256 of the passphrase and the salt
    (1,000,000 rounds, 32 bytes), and AES-256-GCM that must give back "pulumi"."""
    try:
        version, salt, text = encryption_salt.split(":", 2)
        text_version, nonce, data = text.split(":")
        if version != "v1" or text_version != "v1":
            return False
        key = hashlib.pbkdf2_hmac("sha256", passphrase.encode(), base64.b64decode(salt), 1_000_000, 32)
        return AESGCM(key).decrypt(base64.b64decode(nonce), base64.b64decode(data), None) == b"pulumi"
    except (ValueError, InvalidTag):
        return False


def _salt(work_dir: Path, name: str) -> Optional[str]:
    try:
        salt = (yaml.safe_load((Path(work_dir) / f"Pulumi.{name}.yaml").read_text()) or {}).get("encryptionsalt")
    except (OSError, yaml.YAMLError):
        return None
    return salt if isinstance(salt, str) else None


def move_from_former_passphrase(engine: Engine, say: Callable[[str], None] = print) -> list[str]:
    """Every local stack still encrypted with the former fixed passphrase, moved to the checkout's
    own: its config and its state re-encrypted by the CLI (`pulumi stack change-secrets-provider
    passphrase`, the former passphrase read from a file of its own, the new one on stdin). A stack
    found to open with the checkout's passphrase is not checked again while its salt stays. The
    names of the stacks moved."""
    if engine.passphrase_file is None:
        return []
    checked_file = engine.state_dir / CHECKED_FILE
    checked = set(checked_file.read_text().split()) if checked_file.is_file() else set()
    passphrase = engine.passphrase_file.read_text().strip()
    moved, good = [], set()
    for name in backend_stacks(engine.state_dir / "state", engine.work_dir):
        salt = _salt(engine.work_dir, name)
        if salt is None:
            continue
        digest = hashlib.sha256(salt.encode()).hexdigest()
        if digest in checked or opens(salt, passphrase):
            good.add(digest)
            continue
        if not opens(salt, FORMER_LOCAL_PASSPHRASE):
            raise PassphraseError(
                f"the secrets of local stack {name!r} (Pulumi.{name}.yaml) open neither with this checkout's "
                f"passphrase ({engine.passphrase_file}) nor with workhub's former fixed one; if you encrypted them "
                "with your own, set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) to it again")
        _change_passphrase(engine, name, passphrase)
        new_salt = _salt(engine.work_dir, name)
        if new_salt is None or not opens(new_salt, passphrase):
            raise PassphraseError(f"local stack {name!r} was not moved to this checkout's passphrase "
                                  f"({engine.passphrase_file}); its Pulumi.{name}.yaml has no salt that opens with it")
        good.add(hashlib.sha256(new_salt.encode()).hexdigest())
        moved.append(name)
        say(f"workhub: local stack {name!r} was encrypted with workhub's former fixed passphrase; its config and "
            f"state are now encrypted with this checkout's own ({engine.passphrase_file}, mode 0600)")
    if good - checked:
        with private_files():
            checked_file.write_text("".join(f"{digest}\n" for digest in sorted(good | checked)))
    return moved


def _change_passphrase(engine: Engine, name: str, passphrase: str) -> None:
    """`pulumi stack change-secrets-provider passphrase` of stack `name`: the CLI reads the former
    passphrase from a file (PULUMI_CONFIG_PASSPHRASE_FILE) and, not on a terminal, the new one from
    one line of its stdin."""
    env = {key: value for key, value in {**os.environ, **engine.env()}.items()
           if key not in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")}
    with private_files(), tempfile.NamedTemporaryFile("w", dir=engine.state_dir, prefix=".former-") as former:
        former.write(FORMER_LOCAL_PASSPHRASE)
        former.flush()
        done = subprocess.run(["pulumi", "stack", "change-secrets-provider", "passphrase", "--stack", name],
                              input=passphrase + "\n", text=True, capture_output=True, cwd=engine.work_dir,
                              env={**env, "PULUMI_CONFIG_PASSPHRASE_FILE": former.name})
    if done.returncode != 0:
        raise PassphraseError(f"could not move local stack {name!r} to this checkout's passphrase: "
                              f"{(done.stderr or done.stdout).strip()}")


def _script(name: str, *args: str, env: Mapping[str, str] = {}) -> str:
    """Run scripts/<name> (progress on stderr); its stdout."""
    return subprocess.run(
        [str(REPO / "scripts" / name), *args], check=True, stdout=subprocess.PIPE, text=True,
        env={**os.environ, **env},
    ).stdout


def testhost(*args: str, state_dir: Path = STATE_DIR) -> str:
    """Run scripts/testhost.sh (up, env, down, logs) for one state directory; its stdout."""
    return _script("testhost.sh", *args, env={"WORKHUB_STATE_DIR": str(state_dir)})


def image_registry(*args: str, state_dir: Path = STATE_DIR) -> str:
    """Run scripts/image-registry.sh (up, env, down, logs) for one state directory; its stdout."""
    return _script("image-registry.sh", *args, env={"WORKHUB_STATE_DIR": str(state_dir)})


def registry(*args: str) -> str:
    """Run scripts/registry.sh (up, warm, url, mark, stats, down, logs); its stdout."""
    return _script("registry.sh", *args)


def registry_up() -> str:
    """Start the local npm registry cache (and, once the test host's Docker engine runs, its forward
    on Docker's bridge for builds), fill it with the local hubs' packages; its URL on loopback."""
    url = registry("up").strip()
    dirs = lockfile_dirs()
    if dirs:
        registry("warm", *map(str, dirs))
    return url


def registry_for_builds() -> str:
    """The local npm registry cache's URL as a build on Docker's bridge network reaches it: the
    forward scripts/registry.sh keeps on the bridge's gateway (builds cannot reach loopback)."""
    return registry("url", "--bridge").strip()


def local_contexts(work_dir: Path = REPO, template: Path = REPO / "stacks" / "local.yaml") -> list[tuple[dict, Path]]:
    """Each hub of the project in `work_dir` with its build context on the local stack
    (`template`'s workhub:sourceRoot), read from the committed files: no CLI runs."""
    source_root = (yaml.safe_load(template.read_text()) or {}).get("workhub:sourceRoot", "..")
    return [(hub, (work_dir / source_root / hub["context"]).resolve()) for hub in project_hubs(work_dir)]


def local_dockerfiles(work_dir: Path = REPO, template: Path = REPO / "stacks" / "local.yaml") -> list[tuple[str, Path]]:
    """Each hub of the local stack by name, with its Dockerfile's path."""
    return [(hub["name"], context / hub.get("dockerfile", "Dockerfile"))
            for hub, context in local_contexts(work_dir, template)]


def lockfile_dirs(work_dir: Path = REPO, template: Path = REPO / "stacks" / "local.yaml") -> list[Path]:
    """Every folder of a local hub's build context with a package.json and package-lock.json, as
    Docker sends the context (.dockerignore honoured, no node_modules): every lockfile the hub's
    Dockerfile can install from (root, frontend/, backend/, packages/...), whichever it uses."""
    found = []
    for _, context in local_contexts(work_dir, template):
        files = set(context_files(context)) if context.is_dir() else set()
        for path in sorted(files):
            folder, name = posixpath.split(path)
            if (name == "package-lock.json" and "node_modules" not in folder.split("/")
                    and posixpath.join(folder, "package.json") in files):
                found.append(context / folder)
    return found


def testhost_up(state_dir: Path = STATE_DIR) -> dict[str, Any]:
    """Start the throwaway SSH + Docker host (idempotent); how to reach it."""
    return json.loads(testhost("up", state_dir=state_dir))


class NotRunning(Exception):
    """The local stack or its test host is not there (the message says what is not, and what starts it)."""


def testhost_running(state_dir: Path = STATE_DIR) -> dict[str, Any]:
    """How to reach the test host when it runs; NotRunning otherwise. Starts nothing."""
    done = subprocess.run([str(REPO / "scripts" / "testhost.sh"), "check"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env={**os.environ, "WORKHUB_STATE_DIR": str(state_dir)})
    if done.returncode == 3:
        raise NotRunning(done.stderr.strip().removeprefix("testhost: "))
    if done.returncode != 0:
        raise NotRunning(f"scripts/testhost.sh check failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def local_config(
    host: Mapping[str, Any], npm_registry: str, template: Path = REPO / "stacks" / "local.yaml"
) -> dict[str, str]:
    """The local stack's plain config: the committed template plus the test host's port and key,
    and the npm registry's URL as the builds reach it (registry_for_builds)."""
    values: dict[str, str] = {}

    def flatten(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                flatten(f"{prefix}.{key}", inner)
        else:
            values[prefix] = str(value)

    for key, value in (yaml.safe_load(template.read_text()) or {}).items():
        flatten(key, value)
    values["workhub:host.port"] = str(host["port"])
    values["workhub:host.hostKey"] = host["host_public_key"]
    values["workhub:npmRegistry"] = npm_registry
    return values


def project_hubs(work_dir: Path) -> list[dict[str, Any]]:
    """The hub catalog (`workhub:hubs`) of the project in `work_dir`."""
    project = yaml.safe_load((work_dir / "Pulumi.yaml").read_text()) or {}
    return ((project.get("config") or {}).get("workhub:hubs") or {}).get("value") or []


def local_secrets(hubs: list[dict[str, Any]], state_dir: Path = STATE_DIR) -> dict[str, dict[str, str]]:
    """A value for every secret the hubs declare, for stacks on the throwaway test host: random,
    made once and kept (mode 0600) in the state directory, so a second `up` changes nothing. A
    secret whose name ends in _KEY gets a PEM-shaped value with line breaks, as a real key has."""
    path = state_dir / "local-secrets.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    wanted = {hub["name"]: {name: known.get(hub["name"], {}).get(name) or _random_secret(name)
                            for name in hub.get("secrets") or []} for hub in hubs}
    if wanted != known:
        with private_files():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**known, **wanted}, indent=2, sort_keys=True))
    return {name: values for name, values in wanted.items() if values}


def _random_secret(name: str) -> str:
    token = secrets.token_urlsafe(32)
    if not name.endswith("_KEY"):
        return token
    body = base64.b64encode(secrets.token_bytes(96)).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    # No final line break: `pulumi config set` drops the last one of a value read from stdin.
    return "-----BEGIN TEST KEY-----\n" + "\n".join(lines) + "\n-----END TEST KEY-----"


# What reaches the test host `scripts/testhost.sh` started: set from it on every full `up`, whatever
# was set by hand (the local commands that only connect check the first two against it).
TEST_HOST_KEYS = ("workhub:host.port", "workhub:host.hostKey", f"workhub:{SSH_KEY}")


def configure_local(engine: Engine, stack: auto.Stack, host: Mapping[str, Any], values: Mapping[str, str],
                    hub_secrets: Optional[Mapping[str, Mapping[str, str]]] = None,
                    say: Callable[[str], None] = print_err) -> None:
    """Point the local stack at the test host: the plain `values` (see local_config), then the
    test host's SSH key and the hubs' secrets (by default local_secrets' values) as secrets. The
    config is read once and only what differs is set, so a no-op `up` runs no `config set`.

    What workhub wrote is recorded (written_path): a value set by hand since (`scripts/workhub pulumi
    config set`) is the user's and stays, until `config rm` gives the key back to workhub (but for
    TEST_HOST_KEYS); a key workhub wrote and no longer makes (a hub or a value gone from Pulumi.yaml or
    stacks/local.yaml) is removed, unless it too was set by hand. Both are said, by key, never by value."""
    if hub_secrets is None:
        hub_secrets = local_secrets(project_hubs(engine.work_dir), engine.state_dir)
    # `pulumi config set` drops the last line break of a value read from stdin.
    secret = {f"workhub:{SSH_KEY}": Path(host["private_key_path"]).read_text().removesuffix("\n")}
    secret.update({f"workhub:secrets.{hub}.{name}": value.removesuffix("\n")
                   for hub, named in hub_secrets.items() for name, value in named.items()})
    made = {**values, **secret}
    current = flat_config(stack.get_all_config())
    written = _read_written(engine, stack.name)

    def by_hand(key: str) -> bool:
        """Set since workhub last wrote it (nothing is known to be before the first record); the
        test host's own keys always follow the test host."""
        return (written is not None and key in current and key not in TEST_HOST_KEYS
                and written.get(key) != _digest(current[key]))

    own = sorted(key for key, value in made.items() if current.get(key, value) != value and by_hand(key))
    stale = sorted(key for key in written or {} if key in current and key not in made and not by_hand(key))
    for key in own:
        say(f"workhub: stack {stack.name!r} keeps {key} as you set it (workhub's own value comes back after "
            f"`scripts/workhub pulumi config rm --stack {stack.name} --path '{key}'`)")
    if stale:
        with private_files():
            stack.remove_all_config(_removal_paths(stale, set(current) - set(stale)), path=True)
        say(f"workhub: stack {stack.name!r}: removed {', '.join(stale)} "
            "(no longer in Pulumi.yaml or stacks/local.yaml)")
    plain = {key: value for key, value in values.items() if key not in own and current.get(key) != value}
    if plain:
        with private_files():
            stack.set_all_config({key: auto.ConfigValue(value) for key, value in plain.items()}, path=True)
    for key, value in secret.items():
        if key not in own and current.get(key) != value:
            engine.set_secret(stack.name, key, value, path=key != f"workhub:{SSH_KEY}")
    with private_files():
        path = written_path(engine, stack.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({key: _digest(value) for key, value in made.items()}, indent=1, sort_keys=True))


def written_path(engine: Engine, name: str) -> Path:
    """Where what workhub last wrote to stack `name`'s config is recorded: each key with a SHA-256 of
    its value (the values themselves are in stacks/local.yaml and the state directory already)."""
    return engine.state_dir / "config-fingerprints" / f"{name}.written.json"


def _read_written(engine: Engine, name: str) -> Optional[dict[str, str]]:
    path = written_path(engine, name)
    return json.loads(path.read_text()) if path.is_file() else None


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _removal_paths(stale: list[str], kept: set[str]) -> list[str]:
    """The `--path` keys that remove every key of `stale` and none of `kept`: the shortest path above
    each that holds nothing kept, so no empty object is left behind (`workhub:env.<hub>` would be
    refused as naming no hub)."""
    paths: list[str] = []
    for key in stale:
        parts = key.split(".")
        for length in range(1, len(parts) + 1):
            path = ".".join(parts[:length])
            if not any(other == path or other.startswith(path + ".") for other in kept):
                break
        if not any(path == done or path.startswith(done + ".") for done in paths):
            paths = [done for done in paths if not done.startswith(path + ".")] + [path]
    return paths


def local_stack(engine: Engine, name: str, host: Mapping[str, Any], values: Mapping[str, str],
                hub_secrets: Optional[Mapping[str, Mapping[str, str]]] = None, create: bool = True) -> auto.Stack:
    """The local stack `name`, created if missing (with `create`; otherwise StackNotFoundError) and
    configured as configure_local does. When the
    config fingerprint kept beside the state says all of it was set already (same values, key,
    secrets and passphrase, the stack's config file untouched since, its state still there, what
    configure_local wrote recorded), no CLI runs at all; otherwise the full path runs and the
    fingerprint is written anew."""
    if hub_secrets is None:
        hub_secrets = local_secrets(project_hubs(engine.work_dir), engine.state_dir)
    private_key = Path(host["private_key_path"]).read_text()
    wanted = config_fingerprint(engine, name, values, private_key, hub_secrets)
    kept = fingerprint_path(engine, name)
    record = _fingerprint_record(engine, name, wanted)
    if (record is not None and kept.is_file() and kept.read_text() == record
            and written_path(engine, name).is_file()):
        return engine.known_stack(name)
    kept.unlink(missing_ok=True)
    stack = engine.stack(name, create=create)
    configure_local(engine, stack, host, values, hub_secrets)
    record = _fingerprint_record(engine, name, wanted)
    if record is not None:
        with private_files():
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_text(record)
    return stack


def config_fingerprint(engine: Engine, name: str, values: Mapping[str, str], private_key: str,
                       hub_secrets: Mapping[str, Mapping[str, str]]) -> str:
    """A SHA-256 of everything configure_local sets on stack `name` (secrets included, so only
    their hash is kept, never their values) and of where: the project and the passphrase."""
    what = {"stack": name, "project": str(Path(engine.work_dir).resolve()), "backend": engine.backend_url,
            "passphrase": engine.passphrase_in_use(), "values": dict(values), "key": private_key,
            "secrets": {hub: dict(named) for hub, named in hub_secrets.items()}}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def fingerprint_path(engine: Engine, name: str) -> Path:
    """Where the config fingerprint of stack `name` is kept: beside the local backend's state."""
    return engine.state_dir / "config-fingerprints" / f"{name}.sha256"


def _fingerprint_record(engine: Engine, name: str, wanted: str) -> Optional[str]:
    """The fingerprint with what must not have changed since it was written: the stack's config
    file (a hand-made `config set` changes it); None when the stack has no state in the local
    backend (never created, or `stack rm` removed it), which no fingerprint may skip."""
    config_file = Path(engine.work_dir) / f"Pulumi.{name}.yaml"
    file_hash = hashlib.sha256(config_file.read_bytes()).hexdigest() if config_file.is_file() else "-"
    backend = locks.backend_dir(engine.backend_url)
    project = (yaml.safe_load((Path(engine.work_dir) / "Pulumi.yaml").read_text()) or {}).get("name", "")
    if backend is None or not any((backend / ".pulumi" / "stacks" / project / f"{name}{suffix}").is_file()
                                  for suffix in (".json", ".json.gz")):
        return None
    return f"{wanted} config={file_hash}\n"


def flat_config(config: Mapping[str, auto.ConfigValue]) -> dict[str, str]:
    """A stack's config (secrets in clear) as `--path` keys and text values, the way they are set:
    {"workhub:host.port": "22", ...}."""
    flat: dict[str, str] = {}

    def add(key: str, value: Any) -> None:
        if isinstance(value, dict):
            for inner, leaf in value.items():
                add(f"{key}.{inner}", leaf)
        elif value is not None:
            flat[key] = value if isinstance(value, str) else json.dumps(value)

    for key, value in config.items():
        try:
            parsed = json.loads(value.value) if value.value.startswith("{") else None
        except ValueError:
            parsed = None
        add(key, parsed if isinstance(parsed, dict) else value.value)
    return flat


def stack_config(stack: auto.Stack) -> tuple[StackConfig, str]:
    """A stack's validated config (project-level values included) and its SSH key, read outside
    the engine for the commands that talk to the host directly (status, prune)."""
    values = stack.get_all_config()
    raw, secrets = namespaced({k: v.value for k, v in values.items()}, [k for k, v in values.items() if v.secret])
    return parse_stack_config(raw, stack=stack.name, secret_keys=secrets), raw[SSH_KEY]


def on_host(stack: auto.Stack, render: Callable[[StackConfig], str], label: str,
            log: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> str:
    """Run the script `render` makes from the stack's config on its build host; its stdout."""
    config, key = stack_config(stack)
    return run_script(connection_for(config.host), key, render(config), label, log)


def print_line(line: str) -> None:
    print(line, end="" if line.endswith("\n") else "\n", flush=True)


def protected_resources(stack: auto.Stack) -> list[str]:
    """The names of the stack's resources its state marks protected (the engine refuses to delete them)."""
    resources = stack.export_stack().deployment.get("resources") or []
    return [resource["urn"].rsplit("::", 1)[-1] for resource in resources if resource.get("protect")]


def drift_found(stack: auto.Stack) -> dict[str, list[str]]:
    """What the last refresh found on the host that differs from what the commands left there, by
    command (a hub's run: its live container or its proxy gone, stopped, replaced): the next `up`
    runs those commands again."""
    resources = stack.export_stack().deployment.get("resources") or []
    return {(resource.get("outputs") or {}).get("label", resource["urn"]): resource["outputs"]["drift"]
            for resource in resources if (resource.get("outputs") or {}).get("drift")}


def drift_summary(found: Mapping[str, list[str]]) -> str:
    """The drift a refresh found, as the last lines the user reads."""
    if not found:
        return "the host is as the last update left it"
    lines = ["the host differs from what the last update left there:"]
    lines += [f"  {command}: {what}" for command, whats in sorted(found.items()) for what in whats]
    lines.append("`scripts/workhub up` runs those commands again (a hub's deploy: beside what serves, health-gated)")
    return "\n".join(lines)


def run_reported(operation: str, stack: auto.Stack, say: Callable[[str], None] = print_line,
                 say_failure: Callable[[str], None] = print_err, debug: bool = False) -> Optional[Any]:
    """Run up, refresh or destroy, printing its progress from the engine's events through `say`;
    its result, or None when it failed, after printing why through `say_failure`, once, last (no
    Python traceback unless `debug`)."""
    display = Display(say)
    try:
        return run(operation, stack, on_output=None, on_event=display)
    except auto.errors.CommandError as error:
        if display.failures:
            say_failure(failure_report(operation, stack.name, display.failures, debug))
        else:
            say_failure(f"workhub: {operation} of stack {stack.name!r} failed:\n{command_stderr(error)}")
        return None


def run(operation: str, stack: auto.Stack, on_output: Optional[Callable[[str], None]] = print_line,
        on_event: Optional[Callable[[auto.events.EngineEvent], None]] = None) -> Any:
    """Run one engine operation, streaming the engine's output; what it writes (the state in a file
    backend) only its user can read."""
    with private_files():
        return _run(operation, stack, on_output, on_event)


def _run(operation: str, stack: auto.Stack, on_output: Optional[Callable[[str], None]],
         on_event: Optional[Callable[[auto.events.EngineEvent], None]]) -> Any:
    if operation == "up":
        return stack.up(on_output=on_output, on_event=on_event, color="never", policy_packs=policy_packs())
    if operation == "preview":
        return stack.preview(on_output=on_output, on_event=on_event, color="never", diff=True,
                             policy_packs=policy_packs())
    if operation == "refresh":
        return stack.refresh(on_output=on_output, on_event=on_event, color="never")
    if operation == "destroy":
        return stack.destroy(on_output=on_output, on_event=on_event, color="never")
    raise ValueError(f"unknown operation {operation!r}")
