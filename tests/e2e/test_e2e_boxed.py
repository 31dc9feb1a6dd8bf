"""Boxed hubs on the test host, with the real engine, sshd and Docker: two stacks deployed once for the
module (boxa builds WBSalesHub, boxb promotes it with a capability of its own), then questions put
to them. A hub runs as its own uid with no capability, cannot read the host's loopback services nor
reach another stack's network, and a host login account cannot read its environment; a volume from a
hub deployed before it had a uid of its own is given to that uid once, byte for byte, and written to
after; a changed uid gives it again, and a deploy that fails gives the files back."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from pulumi import automation as auto

from components.config.models import Hub, run_uid
from tests.e2e_fixtures import (deploy_home, docker, docker_bridge, forget_local_images, new_local_stack,
                                serving_container)
from workhub import engine as eng
from workhub.engine import print_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HUB = {"name": "wbsaleshub", "context": "WBSalesHub", "port": 4091, "healthPath": "/health",
       "secrets": ["LEADS_API_TOKEN", "SIGNING_KEY"], "volumes": {"data": "/app/data"}}
# What the second stack declares besides: a capability back, fewer processes, a memory limit.
HUB_B = {**HUB, "capAdd": ["NET_BIND_SERVICE"], "pidsLimit": 64, "memoryMb": 256}
DEPLOY = {"healthTimeoutSeconds": 15, "healthIntervalMs": 300, "stopGraceSeconds": 5}
TOKEN = "token-" + os.urandom(8).hex()
KEY = "-----BEGIN TEST KEY-----\n" + os.urandom(24).hex() + "\n-----END TEST KEY-----"
SECRETS = {"wbsaleshub": {"LEADS_API_TOKEN": TOKEN, "SIGNING_KEY": KEY}}
VOLUME = "workhub-boxa-wbsaleshub-data"
# A login account of a typical host: the uid hubs ran as before (the image's user `node`).
LOGIN_UID = 1000
# The files a hub deployed before this change left in its volume: its own (the image's user, 1000),
# some root's, a private directory, a link; (path, uid, mode, content or a link's target).
OLD_FILES = [
    ("leads.json", 1000, 0o644, b'[\n  {"id": "old", "company": "Before", "contact": "b@before.test"}\n]\n'),
    ("notes", 1000, 0o700, None),
    ("notes/private.bin", 1000, 0o600, os.urandom(20_000)),
    ("root.bin", 0, 0o644, os.urandom(5_000)),
    ("link", 1000, 0o777, "notes/private.bin"),
]


def on_volume(volume: str, script: str, *args: str, stdin: bytes | None = None) -> str:
    """Run `script` (sh) as root in a throwaway container with `volume` at /data."""
    done = subprocess.run(["/usr/bin/docker", "run", "--rm", "-i", "--user", "0", "--network", "none", "-v",
                           f"{volume}:/data", "--entrypoint", "sh", "node:20-bookworm-slim", "-c", script, "sh", *args],
                          input=stdin, capture_output=True, check=True)
    return done.stdout.decode()


def listing(volume: str) -> dict[str, tuple[str, str, str]]:
    """Each path of `volume`: its owner uid:gid, its mode and its sha256 (a link's target)."""
    out = on_volume(volume, 'cd /data && find . -mindepth 1 | sort | while read -r p; do '
                            'if [ -L "$p" ]; then d="-> $(readlink "$p")"; elif [ -f "$p" ]; then '
                            'd=$(sha256sum "$p" | cut -d" " -f1); else d=dir; fi; '
                            'printf "%s %s %s %s\\n" "$p" "$(stat -c %u:%g "$p")" "$(stat -c %a "$p")" "$d"; done')
    return {line.split()[0][2:]: tuple(line.split(" ", 3)[1:]) for line in out.splitlines()}


def seed_old_volume() -> dict[str, tuple[str, str, str]]:
    """VOLUME as a hub deployed before this change left it: its files owned by 1000 or root."""
    docker("volume", "rm", "--force", VOLUME, check=False)
    docker("volume", "create", "--label", "workhub.stack=boxa", "--label", "workhub.hub=wbsaleshub",
           "--label", "workhub.volume=data", VOLUME)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for path, uid, mode, content in OLD_FILES:
            info = tarfile.TarInfo(path)
            info.uid = info.gid = uid
            info.mode = mode
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    on_volume(VOLUME, "tar -xpf - -C /data && chown 1000:1000 /data", stdin=archive.getvalue())
    return listing(VOLUME)


def set_hub(work_dir: Path, **fields) -> None:
    """Change the hub's entry in a test project's Pulumi.yaml (None removes a field)."""
    project = yaml.safe_load((work_dir / "Pulumi.yaml").read_text())
    hub = project["config"]["workhub:hubs"]["value"][0]
    for key, value in fields.items():
        if value is None:
            hub.pop(key, None)
        else:
            hub[key] = value
    (work_dir / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))


def post_lead(url: str, company: str) -> int:
    request = urllib.request.Request(url + "/api/leads", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"company": company, "contact": "x@example.test"}).encode())
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def leads(url: str) -> list[str]:
    with urllib.request.urlopen(url + "/api/leads", timeout=10) as answer:
        return [lead["company"] for lead in json.loads(answer.read())["leads"]]


def uid_of(stack: str) -> int:
    """The uid the hub runs as in `stack` (by default, one of its own)."""
    return run_uid(Hub.model_validate(HUB), stack)


def status_fields(container: str) -> dict[str, str]:
    """/proc/1/status of the container's main process, read from inside it."""
    text = docker("exec", container, "cat", "/proc/1/status")
    return {key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}


def inspect(container: str) -> dict:
    return json.loads(docker("inspect", container))[0]


PROBE_JS = r"""
const net = require('net');
const targets = JSON.parse(process.argv[1]);
Promise.all(targets.map(([host, port]) => new Promise((done) => {
  const socket = net.connect({ host, port: Number(port) });
  let data = '';
  const finish = (what) => { socket.destroy(); done(`${host}:${port} ${what}`); };
  socket.setTimeout(2000, () => finish(data ? `answered ${JSON.stringify(data.slice(0, 12))}` : 'timeout'));
  socket.on('connect', () => socket.write(`GET / HTTP/1.0\r\nHost: ${host}\r\n\r\n`));
  socket.on('data', (chunk) => { data += chunk; });
  socket.on('error', (err) => finish(err.code));
  socket.on('close', () => finish(data ? `answered ${JSON.stringify(data.slice(0, 12))}` : 'closed'));
}))).then((lines) => console.log(lines.join('\n')));
"""


def reach(container: str, targets: list[tuple[str, int]]) -> dict[str, str]:
    """What `container` (as its own user) sees when it opens each HOST:PORT and sends an HTTP GET:
    `answered "HTTP/1.1 200"`, `closed` (accepted, then closed unread), ECONNREFUSED, EHOSTUNREACH,
    `timeout`..."""
    out = docker("exec", container, "node", "-e", PROBE_JS, json.dumps(targets))
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.splitlines()}


def as_login_account(*command: str) -> subprocess.CompletedProcess:
    """`command` run on the host as uid 1000, the account hubs ran as before, with no other group."""
    return subprocess.run(["setpriv", f"--reuid={LOGIN_UID}", f"--regid={LOGIN_UID}", "--clear-groups", *command],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def boxed(tmp_path_factory, toolchain, test_host, npm_registry):
    """boxa (WBSalesHub built on the bridge network; its volume left by a hub from before this change)
    and boxb (promoting boxa's image, with a capability, a pids and a memory limit of its own), both
    deployed; what each answers."""
    tmp = tmp_path_factory.mktemp("boxed")
    sources = tmp / "examples"
    shutil.copytree(eng.REPO / "examples", sources, ignore=shutil.ignore_patterns("node_modules", "dist"))
    engine_a, a = new_local_stack(tmp, test_host, npm_registry, hubs=[HUB], source_root=sources, name="boxa",
                                  project="boxa", secrets=SECRETS, deploy=DEPLOY)
    _, b = new_local_stack(tmp, test_host, npm_registry, hubs=[HUB_B], source_root=sources, name="boxb",
                           project="boxb", secrets=SECRETS, deploy=DEPLOY, overrides={"workhub:promoteFrom": "boxa"})
    docker("volume", "rm", "--force", "workhub-boxb-wbsaleshub-data", check=False)
    forget_local_images()
    old = seed_old_volume()
    lines: list[str] = []
    try:
        first = a.up(on_output=lambda line: (lines.append(line), print_line(line)), color="never")
        second = b.up(on_output=print_line, color="never")
        yield {"a": a, "b": b, "engine_a": engine_a, "old": old, "after_up": listing(VOLUME), "up_lines": lines,
               "url_a": first.outputs["hubs"].value["wbsaleshub"]["url"],
               "url_b": second.outputs["hubs"].value["wbsaleshub"]["url"],
               "host_port_b": second.outputs["hubs"].value["wbsaleshub"]["hostPort"]}
    finally:
        b.destroy(color="never")
        a.destroy(color="never")
        for volume in (VOLUME, "workhub-boxb-wbsaleshub-data"):
            docker("volume", "rm", "--force", volume, check=False)


def test_a_hub_runs_as_its_own_uid_with_no_capability(boxed):
    """Read back from `docker inspect` and from /proc/1/status inside: the hub's uid and gid (not a
    login account's), every capability dropped (and its bounding set empty), no-new-privileges, a pids
    limit; the other stack's hub has exactly the capability it declares in its bounding set, and its
    own pids and memory limits. The Express app started with HOME where it may write."""
    uid = uid_of("boxa")
    assert uid >= 1_200_000
    container = serving_container("wbsaleshub", "boxa")
    host_config = inspect(container)["HostConfig"]
    assert inspect(container)["Config"]["User"] == f"{uid}:{uid}"
    assert host_config["CapDrop"] == ["ALL"] and not host_config["CapAdd"]
    assert host_config["SecurityOpt"] == ["no-new-privileges:true"]
    assert host_config["PidsLimit"] == 512 and host_config["Memory"] == 0
    status = status_fields(container)
    assert status["Uid"].split() == [str(uid)] * 4 and status["Gid"].split() == [str(uid)] * 4
    assert status["Groups"] in ("", str(uid)), "no group but its own"
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[field], 16) == 0, (field, status[field])
    assert status["NoNewPrivs"] == "1"
    assert docker("exec", container, "sh", "-c", 'echo ok >"$HOME/probe" && cat "$HOME/probe"') == "ok"
    # A port below 1024 needs no capability in a container (Docker sets ip_unprivileged_port_start=0).
    assert docker("exec", container, "node", "-e",
                  "require('net').createServer().listen(80, () => { console.log('bound'); process.exit(0); })") == "bound"

    other = serving_container("wbsaleshub", "boxb")
    uid_b = uid_of("boxb")
    assert uid_b != uid and inspect(other)["Config"]["User"] == f"{uid_b}:{uid_b}"
    host_b = inspect(other)["HostConfig"]
    assert host_b["CapAdd"] in (["NET_BIND_SERVICE"], ["CAP_NET_BIND_SERVICE"]) and host_b["PidsLimit"] == 64
    assert host_b["Memory"] == 256 * 1024 * 1024
    status_b = status_fields(other)
    assert int(status_b["CapBnd"], 16) == 1 << 10, "CAP_NET_BIND_SERVICE (10) and nothing else"
    assert int(status_b["CapEff"], 16) in (0, 1 << 10) and status_b["NoNewPrivs"] == "1"


def test_secret_files_belong_to_the_hubs_uid_alone(boxed):
    """A secret with a line break is /run/secrets/<NAME>, owned by the hub's uid, mode 0400, and the
    app reads it; the one-line one is in its environment."""
    uid = uid_of("boxa")
    container = serving_container("wbsaleshub", "boxa")
    assert docker("exec", container, "stat", "-c", "%u:%g %a", "/run/secrets/SIGNING_KEY") == f"{uid}:{uid} 400"
    assert docker("exec", container, "cat", "/run/secrets/SIGNING_KEY") == KEY
    assert docker("exec", container, "sh", "-c", 'printf %s "$SIGNING_KEY_FILE"') == "/run/secrets/SIGNING_KEY"


def test_a_host_login_account_cannot_read_the_hubs_environment_or_files(boxed):
    """uid 1000 (a login account on a typical host, and the hubs' uid before) can read neither the
    hub's /proc/<pid>/environ nor its /proc/<pid>/root (its secret files); root can (the control)."""
    pid = inspect(serving_container("wbsaleshub", "boxa"))["State"]["Pid"]
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert f"LEADS_API_TOKEN={TOKEN}".encode() in environ, "the control: the secret is in the environment"
    denied = as_login_account("cat", f"/proc/{pid}/environ")
    assert denied.returncode != 0 and "Permission denied" in denied.stderr and TOKEN not in denied.stdout
    denied = as_login_account("cat", f"/proc/{pid}/root/run/secrets/SIGNING_KEY")
    assert denied.returncode != 0 and "Permission denied" in denied.stderr and KEY not in denied.stdout
    assert as_login_account("cat", "/proc/self/status").returncode == 0, "the control: uid 1000 runs cat"


def test_a_hub_reaches_no_loopback_service_of_the_host_nor_another_stacks_network(boxed, test_host, npm_registry):
    """From boxa's hub: the sshd and the npm registry cache on the host's loopback, and boxb's proxy
    published there, are refused at the host's addresses (its network's gateway, Docker's bridge); the
    cache's forward for builds on the bridge closes the connection unread; boxb's hub and proxy on
    boxb's network do not answer. The controls: boxa's own proxy answers it, and this machine reaches
    boxb's hub and the forward."""
    container = serving_container("wbsaleshub", "boxa")
    network_a = inspect(container)["NetworkSettings"]["Networks"]["workhub-boxa"]
    gateway = network_a["Gateway"]
    other = inspect(serving_container("wbsaleshub", "boxb"))["NetworkSettings"]["Networks"]["workhub-boxb"]
    proxy_b = inspect("wbsaleshub-boxb-proxy")["NetworkSettings"]["Networks"]["workhub-boxb"]
    bridge, _ = docker_bridge()
    registry_port = int(npm_registry.rstrip("/").rsplit(":", 1)[1])
    forward = eng.registry_for_builds().rstrip("/").removeprefix("http://")
    forward_host, forward_port = forward.rsplit(":", 1)
    assert forward_host == bridge
    ssh, published_b = test_host["port"], boxed["host_port_b"]
    seen = reach(container, [
        ("127.0.0.1", ssh), (gateway, ssh), (bridge, ssh),
        (gateway, registry_port), (gateway, published_b), (bridge, published_b),
        (forward_host, int(forward_port)),
        (other["IPAddress"], 4091), (proxy_b["IPAddress"], published_b),
        ("wbsaleshub-boxa-proxy", int(boxed["url_a"].rsplit(":", 1)[1])),
    ])
    print(json.dumps(seen, indent=2))
    for target in (f"127.0.0.1:{ssh}", f"{gateway}:{ssh}", f"{bridge}:{ssh}", f"{gateway}:{registry_port}",
                   f"{gateway}:{published_b}", f"{bridge}:{published_b}"):
        assert seen[target] == "ECONNREFUSED", (target, seen[target])
    # The cache on the bridge's address is its forward for builds (the same port): it closes unread.
    assert seen[forward] in ("closed", "ECONNRESET"), seen[forward]
    for target in (f"{other['IPAddress']}:4091", f"{proxy_b['IPAddress']}:{published_b}"):
        assert seen[target] in ("timeout", "EHOSTUNREACH", "ENETUNREACH"), (target, seen[target])
    own = f"wbsaleshub-boxa-proxy:{boxed['url_a'].rsplit(':', 1)[1]}"
    assert seen[own].startswith('answered "HTTP/1.'), seen[own]
    with urllib.request.urlopen(f"http://{other['IPAddress']}:4091/health", timeout=5) as answer:
        assert answer.status == 200, "the control: boxb's hub answers at that address"
    ping = docker("run", "--rm", "--network", "bridge", "node:20-bookworm-slim", "node", "-e",
                  f"require('http').get('http://{forward}/-/ping', (r) => {{ console.log(r.statusCode); process.exit(0); }})")
    assert ping == "200", "the control: the forward serves a container on Docker's bridge, as a build runs"


def test_a_volume_from_before_is_given_to_the_hubs_uid_once_byte_for_byte_and_written_to(boxed):
    """The volume a hub from before left (files of uid 1000 and root, a private directory, a link)
    keeps every byte, mode and link, every file now the hub's uid's, recorded once; the app writes to it."""
    uid = uid_of("boxa")
    old, after = boxed["old"], boxed["after_up"]
    assert set(after) == set(old) == {path for path, *_ in OLD_FILES}
    for path, (owner, mode, digest) in after.items():
        assert owner == f"{uid}:{uid}", (path, owner)
        assert (mode, digest) == old[path][1:], path
    assert old["root.bin"][0] == "0:0" and old["notes/private.bin"][0] == "1000:1000"
    assert any(f"giving the files of {VOLUME} to uid {uid}, the hub's own (once)" in line for line in boxed["up_lines"])
    assert (deploy_home() / ".workhub" / "owners" / VOLUME).read_text() == f"{uid}\n"
    url = boxed["url_a"]
    assert leads(url) == ["Before"]
    assert post_lead(url, "After") == 201
    assert leads(url) == ["Before", "After"]
    assert listing(VOLUME)["leads.json"][0] == f"{uid}:{uid}"


def test_a_changed_uid_gives_the_files_again_and_a_failed_deploy_gives_them_back(boxed):
    """A new uid with a deploy that never gets healthy: the files go to the new uid, then back to the
    uid the serving container runs as, which still writes; the same uid with a healthy deploy: they are
    the new uid's, the app writes, and the next deploy walks the volume no more."""
    a, work = boxed["a"], boxed["engine_a"].work_dir
    old_uid, url = uid_of("boxa"), boxed["url_a"]
    before = {path: fields[1:] for path, fields in listing(VOLUME).items()}
    # A setting the app refuses at start (it exits): the new container never gets healthy.
    set_hub(work, uid=4242, env={"LOG_LEVEL": "loud"})
    out: list[str] = []
    with pytest.raises(auto.errors.CommandError) as caught:
        a.up(on_output=lambda line: (out.append(line), print_line(line)), color="never")
    text = "\n".join(out) + str(caught.value)
    assert f"giving the files of {VOLUME} to uid 4242, the hub's own (once); until the switch" in text, text[-3000:]
    assert f"gave the files of {VOLUME} back to uid {old_uid}:{old_uid}" in text, text[-3000:]
    assert {owner for owner, *_ in listing(VOLUME).values()} == {f"{old_uid}:{old_uid}"}
    assert post_lead(url, "Still") == 201, "the container that kept serving still writes"

    set_hub(work, env={"LOG_LEVEL": "info"})
    out.clear()
    a.up(on_output=lambda line: (out.append(line), print_line(line)), color="never")
    assert any(f"giving the files of {VOLUME} to uid 4242" in line for line in out)
    now = listing(VOLUME)
    assert {owner for owner, *_ in now.values()} == {"4242:4242"}
    assert {path: fields[1:] for path, fields in now.items() if path != "leads.json"} == \
        {path: fields for path, fields in before.items() if path != "leads.json"}, "byte for byte"
    assert inspect(serving_container("wbsaleshub", "boxa"))["Config"]["User"] == "4242:4242"
    assert post_lead(url, "Moved") == 201
    assert leads(url) == ["Before", "After", "Still", "Moved"]

    set_hub(work, env={"LOG_LEVEL": "warn"})
    out.clear()
    a.up(on_output=lambda line: (out.append(line), print_line(line)), color="never")
    assert not any("giving the files" in line for line in out), "once per uid"
    assert post_lead(url, "Again") == 201
