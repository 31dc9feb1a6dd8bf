"""What a first `scripts/workhub up` prints: one line per setup step (installers' output in a log
file, a heartbeat while a long one runs), nothing from setup on a warm machine, which images the
test host's builds can start FROM (and each hub's FROM of another), and the outputs as a short
table."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

from pulumi import automation as auto

from components.config.models import DEFAULT_BASE_IMAGE, DEFAULT_HELPER_IMAGE, DEFAULT_PROXY_IMAGE
from workhub import engine as eng
from workhub.__main__ import say_test_host
from workhub.outputs import changes, outputs_table

REPO = Path(__file__).resolve().parents[3]


def _logged(tmp_path: Path, command: str, heartbeat: int = 30) -> subprocess.CompletedProcess:
    script = (f"log() {{ printf 'step: %s\\n' \"$*\" >&2; }}\n"
              f"die() {{ log \"error: $*\"; exit 1; }}\n"
              f"source {REPO / 'scripts' / 'lib' / 'logged.sh'}\n"
              f"logged 'installing things' {tmp_path / 'install.log'} bash -c {command!r}\n"
              "echo done\n")
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "WORKHUB_HEARTBEAT_SECONDS": str(heartbeat)})


def test_an_installers_output_goes_to_its_log_not_the_terminal(tmp_path):
    done = _logged(tmp_path, "for i in $(seq 150); do echo \"Selecting package $i\"; echo \"go: downloading m$i\" >&2; done")
    assert (done.returncode, done.stdout, done.stderr) == (0, "done\n", "")
    log = (tmp_path / "install.log").read_text()
    assert "Selecting package 150" in log and "go: downloading m150" in log


def test_a_long_installer_says_it_still_works(tmp_path):
    done = _logged(tmp_path, "echo fetching; sleep 2.5", heartbeat=1)
    beats = done.stderr.splitlines()
    assert len(beats) >= 2 and all(line.startswith("step: installing things: still working (") for line in beats)
    assert "last: fetching" in beats[0]


def test_a_failing_installer_shows_its_log_tail_and_path_and_stops(tmp_path):
    done = _logged(tmp_path, "for i in $(seq 40); do echo line $i; done; exit 3")
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and done.stdout == ""
    assert lines[0] == "line 11" and lines[-2] == "line 40"
    assert lines[-1] == f"step: error: installing things failed (full log: {tmp_path / 'install.log'})"


def test_setup_and_the_toolchain_print_nothing_on_a_warm_machine():
    """No "toolchain: ready" on every run (it was said twice per `up`): a warm setup is silent."""
    setup = subprocess.run([str(REPO / "scripts" / "setup.sh")], capture_output=True, text=True, timeout=300)
    assert (setup.returncode, setup.stdout, setup.stderr) == (0, "", "")
    toolchain = subprocess.run([str(REPO / "scripts" / "toolchain.sh")], capture_output=True, text=True, timeout=300)
    assert toolchain.returncode == 0 and toolchain.stderr == ""
    assert len(toolchain.stdout.splitlines()) == 1 and Path(toolchain.stdout.strip(), "pulumi").is_file()


OUTPUTS = {
    "host": auto.OutputValue("deploy@127.0.0.1:54429", False),
    "hostFacts": auto.OutputValue({"builder": "docker-build", "buildkit": True, "cpus": 2, "disk_free_mb": 76093,
                                   "docker_version": "20.10.24+dfsg1", "memory_mb": 24105, "swap_mb": 0}, False),
    "hubs": auto.OutputValue({
        "wbsaleshub": {"image": "wbsaleshub:local-0d72ab6ce8e1", "url": "http://127.0.0.1:24091", "port": 4091,
                       "hostPort": 24091, "mode": "remote", "settings": ["LOG_LEVEL", "PUBLIC_URL"],
                       "secrets": ["SESSION_SECRET"], "volumes": {"data": "wbsaleshub-local-data"},
                       "build": {"image": "wbsaleshub:local-0d72ab6ce8e1", "log": "/home/deploy/.workhub/x/log",
                                 "attempts": 1},
                       "verified": {"container": "wbsaleshub-local-green", "slot": "green",
                                    "url": "http://127.0.0.1:24091", "verified_at": "2026-12-01T13:00:00Z",
                                    "image_id": "sha256:" + "a" * 64, "switch_ms": 12}},
        "wbfinhub": {"image": "wbfinhub:production-3c1", "url": "http://127.0.0.1:34092", "from": "wbfinhub:staging-3c1",
                     "origin": "stack staging", "verified": {"slot": "blue", "verified_at": "2026-12-01T13:01:00Z"}},
        "wbhubmanager": {"image": "wbhubmanager:local-9f2", "url": "http://127.0.0.1:24090", "mode": "registry",
                         "build": {"image": "wbhubmanager:local-9f2", "pulled_from": "reg:5000/workhub/wbhubmanager",
                                   "attempts": 2}, "verified": {"slot": "blue"}},
    }, False),
    "notifyWebhook": auto.OutputValue("https://hooks.example.test/x", True),
}


def test_the_outputs_print_as_a_short_table():
    assert outputs_table(OUTPUTS).splitlines() == [
        "  host: deploy@127.0.0.1:54429 (Docker 20.10.24+dfsg1, BuildKit, 2 CPUs, 24105 MB memory, 0 MB swap, "
        "76093 MB disk free)",
        "  HUB           URL                     IMAGE                          HOW"
        "                                        LIVE",
        "  wbfinhub      http://127.0.0.1:34092  wbfinhub:production-3c1        promoted from wbfinhub:staging-3c1"
        "         blue verified 2026-12-01T13:01:00Z",
        "  wbhubmanager  http://127.0.0.1:24090  wbhubmanager:local-9f2         pulled from reg:5000/workhub/wbhubmanager"
        "  blue",
        "  wbsaleshub    http://127.0.0.1:24091  wbsaleshub:local-0d72ab6ce8e1  built, 1 attempt"
        "                           green verified 2026-12-01T13:00:00Z",
        "  notifyWebhook: [secret]",
    ]


def test_an_empty_stack_prints_no_table_and_changes_read_as_words():
    assert outputs_table({}) == ""
    assert changes({"create": 15}) == "15 created"
    assert changes({"same": 15}) == "nothing changed"
    assert changes({"update": 3, "same": 12}) == "12 unchanged, 3 updated"


HOST = {"user": "deploy", "host": "127.0.0.1", "port": 2222,
        "base_images": ["node:24-bookworm-slim", "haproxy:2.6", "busybox:1.37"]}


def test_the_local_stack_says_which_images_its_test_host_can_build_from(capsys):
    """The test host cannot pull: the line that says it is ready names what its builds can start
    FROM. The sample hubs start FROM the Node image it makes, so nothing more is said."""
    say_test_host(SimpleNamespace(work_dir=REPO), HOST, builds=True)
    assert capsys.readouterr().err == ("workhub: test host ready: deploy@127.0.0.1:2222; it cannot pull images: "
                                       "its builds can start FROM node:24-bookworm-slim, haproxy:2.6, busybox:1.37\n")


def test_a_hub_from_an_image_the_test_host_lacks_is_named_before_the_build(tmp_path, monkeypatch, capsys):
    (tmp_path / "Dockerfile").write_text("# syntax=docker/dockerfile:1\nFROM node:20-alpine\nRUN npm ci\n")
    monkeypatch.setattr(eng, "local_dockerfiles", lambda work_dir: [("tasksmd", tmp_path / "Dockerfile")])
    say_test_host(SimpleNamespace(work_dir=REPO), HOST, builds=True)
    assert capsys.readouterr().err.splitlines()[1] == (
        f"workhub: warning: tasksmd: {tmp_path / 'Dockerfile'}:2: `FROM node:20-alpine`: the test host has no "
        "node:20-alpine and cannot pull it, so this build will fail; start FROM an image it has: "
        "node:24-bookworm-slim, haproxy:2.6, busybox:1.37")
    say_test_host(SimpleNamespace(work_dir=REPO), HOST, builds=False)  # a refresh or destroy builds nothing
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_the_test_host_names_the_images_it_makes(tmp_path):
    """`scripts/testhost.sh env` (and `up`, `check`) give them: the defaults of workhub:baseImage,
    proxyImage and helperImage, which it makes since it cannot pull them."""
    state = tmp_path / "testhost"
    state.mkdir()
    for name, text in {"sshd.port": "2222\n", "client_key": "", "known_hosts": "",
                       "ssh_host_ed25519_key.pub": "ssh-ed25519 AAAA test\n"}.items():
        (state / name).write_text(text)
    done = subprocess.run([REPO / "scripts" / "testhost.sh", "env"], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "WORKHUB_STATE_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["base_images"] == [DEFAULT_BASE_IMAGE, DEFAULT_PROXY_IMAGE, DEFAULT_HELPER_IMAGE]
