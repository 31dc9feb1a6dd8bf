"""The Swarm test bed (scripts/swarm-testbed.sh), end to end with the real engine: three nodes in
network namespaces, each its own dockerd and sshd, form a 3-manager Swarm over SSH with pinned host
keys; an overlay network spans them; a dnsrr service pulled from the test bed's registry (with the
login passed by Docker) resolves `tasks.<service>` from every node, and each node reaches the tasks
on the others; `down` leaves no namespace, process, mount or bridge behind (at the run's end: the
bed is shared, tests/swarm_bed.py).

Run under the shared lock: flock /tmp/workhub-e2e.lock scripts/test tests/e2e/test_e2e_swarm.py
"""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

import pytest

from tests.swarm_bed import reset_testbed

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def bed(swarm_testbed):
    """The run's test bed (tests/swarm_bed.py), its nodes plain engines again: its env and state."""
    return reset_testbed(swarm_testbed)


@pytest.fixture(scope="module")
def swarm(bed):
    """The test bed's nodes as a 3-manager Swarm, formed over SSH as workhub forms it."""
    from components.ssh import with_secrets
    from components.render.swarm.scripts import init_script, join_script, join_token_script

    env, _ = bed
    config = demo_stack(env)[0]
    first, *others = config.swarm.nodes
    ssh(env, 1, "bash -s", init_script(first))
    token = ssh(env, 1, "bash -s", join_token_script("manager")).strip()
    for index, node in enumerate(others, start=2):
        # The token reaches the node as a shell variable on the script's stdin, in no command line here.
        ssh(env, index, "bash -s", with_secrets(join_script(node, first, "manager"), {"join_token": token}))
    return env


def ssh_run(bed: dict, node: int, command: str, stdin: str | bytes = "") -> subprocess.CompletedProcess:
    """`command` as the deploy user on node `node` (1-based), its host key checked against the pinned one."""
    target = bed["nodes"][node - 1]
    return subprocess.run(
        ["ssh", "-i", bed["private_key_path"], "-o", f"UserKnownHostsFile={bed['known_hosts_path']}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-p", str(target["port"]), f"{bed['user']}@{target['address']}", command],
        input=stdin, capture_output=True, text=isinstance(stdin, str), timeout=600)


def ssh(bed: dict, node: int, command: str, stdin: str = "") -> str:
    """What `command` printed on node `node`; its failure fails the test."""
    done = ssh_run(bed, node, command, stdin)
    if done.returncode != 0:
        raise AssertionError(f"node{node}: {command!r} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def wait_for(what: str, check, timeout: float = 120.0, pause: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(pause)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def test_the_beds_daemons_keep_none_of_their_starters_files(bed):
    # The nodes' dockerds and sshds and the registry outlive `up`; a lock its caller held, inherited
    # by one of them, would be held for the bed's whole life.
    env, _ = bed
    assert env["lock_holders"] == []


def test_three_managers_an_overlay_and_a_dnsrr_service_on_every_node(swarm):
    env = swarm
    assert [node["name"] for node in env["nodes"]] == ["node1", "node2", "node3"]
    # Each node's SSH session reaches its own engine (its own host name), behind its pinned host key.
    for index in (1, 2, 3):
        assert ssh(env, index, "docker info --format '{{.Name}} {{.Swarm.LocalNodeState}}'").split() == \
            [f"node{index}", "active"]
    def managers() -> list[str]:
        listed = ssh(env, 1, "docker node ls --format '{{.Hostname}} {{.ManagerStatus}}'").splitlines()
        return sorted(line for line in listed if line)
    wait_for("three managers", lambda: managers() == ["node1 Leader", "node2 Reachable", "node3 Reachable"]
             and managers(), timeout=30)

    ssh(env, 1, "docker network create --driver overlay --attachable workhub-test")
    image = env["test_image"]
    registry = env["registry"]
    password = Path(registry["password_file"]).read_text()
    # The registry login reaches the other nodes through Docker (--with-registry-auth), from a
    # client config that is gone afterwards.
    ssh(env, 1, f"export DOCKER_CONFIG=$(mktemp -d) && trap 'rm -rf \"$DOCKER_CONFIG\"' EXIT && "
                f"docker login -u {registry['username']} --password-stdin {registry['server']} >/dev/null && "
                "docker service create --quiet --detach --name web --network workhub-test --endpoint-mode dnsrr "
                "--replicas 3 --replicas-max-per-node 1 --with-registry-auth "
                f"{image} sh -c 'hostname >/www/index.html && exec httpd -f -p 8080 -h /www'",
        stdin=password)

    def running() -> bool:
        states = ssh(env, 1, "docker service ps web --filter desired-state=running --format '{{.Node}} {{.CurrentState}}'")
        lines = [line for line in states.splitlines() if line.strip()]
        return len(lines) == 3 and all("Running" in line for line in lines) and lines
    tasks = wait_for("three tasks of the service running, one per node", running)
    assert sorted(line.split()[0] for line in tasks) == ["node1", "node2", "node3"]

    # Node's resolver (c-ares, reading the container's resolv.conf: Docker's DNS); busybox's static
    # nslookup crashes without glibc's NSS modules.
    probe = ("const dns=require('dns'),http=require('http');dns.resolve4('tasks.web',(e,as)=>{if(e)throw e;"
             "let n=as.length;for(const a of as)http.get({host:a,port:8080,path:'/',timeout:5000},r=>{let b='';"
             "r.on('data',d=>b+=d);r.on('end',()=>{console.log(a+' '+b.trim());if(--n===0)process.exit(0)})})"
             ".on('error',()=>{console.log(a+' unreachable');if(--n===0)process.exit(0)})})")
    base = env["hub_images"]["base"]
    addresses_seen = []
    for index in (1, 2, 3):
        out = ssh(env, index, f"export DOCKER_CONFIG=$(mktemp -d) && trap 'rm -rf \"$DOCKER_CONFIG\"' EXIT && "
                              f"docker login -u {registry['username']} --password-stdin {registry['server']} >/dev/null "
                              f"&& docker run --rm --network workhub-test {shlex.quote(base)} node -e {shlex.quote(probe)}",
                  Path(registry["password_file"]).read_text())
        answers = dict(line.split(" ", 1) for line in out.splitlines() if line.strip())
        # Three tasks by DNS, and an answer from each of them, the two on other nodes over VXLAN.
        assert len(answers) == 3, f"node{index} resolved and reached {answers}"
        assert len(set(answers.values())) == 3 and "unreachable" not in answers.values(), \
            f"node{index}: tasks answered {answers}"
        addresses_seen.append(sorted(answers))
    assert addresses_seen[0] == addresses_seen[1] == addresses_seen[2]
    ssh(env, 1, "docker service rm web >/dev/null")


DEMO = REPO / "tests" / "fixtures" / "swarm-demo"
DEMO_PORT, DEMO_HOST_PORT = 4100, 24100
DEMO_SECRET = "tok 'quoted' $HOME `id`"


def build_demo(env: dict, version: str, health: int = 200) -> str:
    """The demo hub's image, built on node 1 (the build node) from the Node base image and pushed
    to the registry; its reference."""
    image = f"{env['registry']['server']}/workhub/demo:{version}"
    context = subprocess.run(["tar", "-C", str(DEMO), "-c", "."], capture_output=True, check=True).stdout
    # The registry password is the first line on stdin (in no command line), the context the rest.
    build = (f"read -r password && export DOCKER_CONFIG=$(mktemp -d) && dir=$(mktemp -d) "
             f"&& trap 'rm -rf \"$DOCKER_CONFIG\" \"$dir\"' EXIT && tar -x -C \"$dir\" "
             f"&& docker build -q --build-arg BASE={env['hub_images']['base']} --build-arg VERSION={version} "
             f"--build-arg HEALTH={health} -t {image} \"$dir\" >/dev/null "
             f"&& printf '%s' \"$password\" | docker login -u {env['registry']['username']} --password-stdin "
             f"{env['registry']['server']} >/dev/null && docker push -q {image} >/dev/null")
    password = Path(env["registry"]["password_file"]).read_text()
    done = ssh_run(env, 1, build, password.encode() + b"\n" + context)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return image


def demo_stack(env: dict, change=None):
    """A stack of one hub (2 replicas, one secret) on the test bed's Swarm, as workhub validates it;
    `change`, when given, edits the raw config first (more hubs, other labels)."""
    from components.config.parse import hub_secret_values, parse_stack_config
    from components.config.runtime import hub_runtime

    nodes = env["nodes"]
    labels = [{"serve": True, "build": True}, {"serve": True}, {}]
    raw = {
        "hubs": [{"name": "demo", "context": "demo", "port": DEMO_PORT, "secrets": ["DEMO_TOKEN"]}],
        "hostPorts": {"demo": DEMO_HOST_PORT},
        "registry": {"server": env["registry"]["server"], "username": env["registry"]["username"]},
        "registryPassword": Path(env["registry"]["password_file"]).read_text(),
        "proxyImage": env["hub_images"]["proxy"],
        "deploy": {"healthTimeoutSeconds": 10, "healthyPasses": 2, "healthIntervalMs": 300, "stopGraceSeconds": 5},
        "swarm": {"user": env["user"], "managers": [node["name"] for node in nodes], "monitorSeconds": 5,
                  "healthIntervalSeconds": 1,
                  "nodes": [{"name": node["name"], "address": node["address"], "hostKey": node["host_public_key"],
                             "labels": label} for node, label in zip(nodes, labels)],
                  "hubs": {"demo": {"replicas": 2, "memoryMb": 128}}},
        "secrets": {"demo": {"DEMO_TOKEN": DEMO_SECRET}},
        "sshPrivateKey": Path(env["private_key_path"]).read_text(),
    }
    if change is not None:
        change(raw)
    config = parse_stack_config(raw, stack="e2e", secret_keys={"sshPrivateKey", "secrets", "registryPassword"})
    secrets = hub_secret_values(raw)
    # The stack's own key for the secrets' fingerprints (components/resources/host/stack_key.py; fixed here).
    runtimes = {hub.name: hub_runtime(hub, config, "e2e", secrets.get(hub.name, {}), "e2e-stack-key")
                for hub in config.hubs}
    return config, runtimes, raw["registryPassword"]


def deploy(env: dict, image: str, change=None) -> subprocess.CompletedProcess:
    """The labels, the hubs' volumes on their data nodes (made, and owned by the hubs' uids) and the
    stack deploy, run as workhub runs them (the secrets in front of each script, on its stdin); every
    hub runs `image`."""
    from components.ssh import with_secrets
    from components.render.swarm.stack import proxy_config, proxy_config_name, stack_file
    from components.render.swarm.data import owners_script
    from components.render.swarm.scripts import deploy_script, deploy_secret_values, labels_script

    config, runtimes, password = demo_stack(env, change)
    proxy = proxy_config(config, "e2e")
    images = {hub.name: image for hub in config.hubs}
    text = stack_file(config, "e2e", images, runtimes, proxy)
    script = deploy_script(config, "e2e", runtimes, text, proxy, proxy_config_name("e2e", proxy), config.registry, 240)
    ssh(env, 1, "bash -s", stdin=labels_script(config))
    assert config.swarm is not None
    for index, node in enumerate(config.swarm.nodes, start=1):
        if any(hub.volumes and hub.name in node.labels.data for hub in config.hubs):
            owners = ssh_run(env, index, "bash -s", with_secrets(owners_script(config, "e2e", node.name, images),
                                                                  {"registry_password": password}))
            if owners.returncode != 0:
                return owners
    secrets = {**deploy_secret_values(config, runtimes), "registry_password": password}
    return ssh_run(env, 1, "bash -s", with_secrets(script, secrets))


# Two secret names whose Docker secrets' names (`e2e-demo-<NAME>-<fingerprint>`) are longer than
# Docker's 64 characters and share far more than those: cut at 64, they would be one Docker secret.
LONG_SECRET = "A_SECRET_NAME_LONG_ENOUGH_THAT_DOCKER_WOULD_CUT_ITS_END_"
LONG_SECRETS = (LONG_SECRET + "ONE", LONG_SECRET + "TWO")


def long_secrets(one: str, two: str):
    """A `change` for demo_stack: the demo hub also gets the two long-named secrets, valued `one` and `two`."""
    def change(raw: dict) -> None:
        raw["hubs"][0]["secrets"] = [*raw["hubs"][0]["secrets"], *LONG_SECRETS]
        raw["secrets"]["demo"] = {**raw["secrets"]["demo"], LONG_SECRETS[0]: one, LONG_SECRETS[1]: two}
    return change


def demo_secret_files(env: dict) -> set[tuple[str, ...]]:
    """What each running task of the demo hub reads in its two long-named secrets' files."""
    seen = set()
    for node in range(1, len(env["nodes"]) + 1):
        tasks = ssh(env, node, "docker ps -q --filter label=com.docker.swarm.service.name=workhub-e2e_demo").split()
        for task in tasks:
            seen.add(tuple(ssh(env, node, f"docker exec {task} cat /run/secrets/{name}") for name in LONG_SECRETS))
    return seen


def get(url: str) -> str:
    import urllib.request
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.read().decode()


def test_a_hub_rolls_out_and_back_on_the_swarm_without_a_failed_request(swarm):
    """The demo hub with 2 replicas behind the proxy on both serving nodes: a rolling update and an
    update whose new version is unhealthy (Swarm rolls it back, the deploy fails saying so) drop no
    request through either node's proxy. Two secrets whose Docker names would differ only past 64
    characters each reach the tasks with their own value, and one rotated with the update its new one."""
    import hashlib

    from tools.prober import Prober

    env = swarm
    v1, v2, bad = build_demo(env, "v1"), build_demo(env, "v2"), build_demo(env, "v3", health=500)
    first = deploy(env, v1, long_secrets("one-first", "two-first"))
    assert first.returncode == 0, first.stderr[-3000:]
    # Two secrets whose names differ only past Docker's 64 characters: each task reads its own value.
    assert demo_secret_files(env) == {("one-first", "two-first")}
    serving = [f"http://{node['address']}:{DEMO_HOST_PORT}" for node in env["nodes"][:2]]
    for url in serving:
        wait_for(f"{url} answers v1", lambda: get(url + "/") == "v1" if _answers(url) else False, timeout=60)
        assert get(url + "/secret") == hashlib.sha256(DEMO_SECRET.encode()).hexdigest()
    tasks = ssh(env, 1, "docker service ps workhub-e2e_demo --filter desired-state=running --format '{{.Node}}'")
    assert len(set(tasks.split())) == 2, f"the two replicas run on two nodes: {tasks}"
    assert "node1" not in tasks.split(), "a hub without data keeps off the build node"

    probers = [Prober(url, rate=10, timeout=10, path="/").start() for url in serving]
    try:
        # The rollout also rotates one long-named secret: its new value reaches the new tasks.
        rolled = deploy(env, v2, long_secrets("one-rotated", "two-first"))
        assert rolled.returncode == 0, rolled.stderr[-3000:]
        assert "workhub-e2e_demo: rolled out" in rolled.stderr
        for url in serving:
            wait_for(f"{url} answers v2", lambda: get(url + "/") == "v2", timeout=30)
        assert demo_secret_files(env) == {("one-rotated", "two-first")}
        failed = deploy(env, bad, long_secrets("one-rotated", "two-first"))
        time.sleep(2)
    finally:
        for prober in probers:
            prober.stop()
    assert failed.returncode != 0
    last = failed.stderr.strip().splitlines()[-2:]
    assert last[0].startswith("swarm-deploy: FAILED: workhub-e2e_demo: its update did not stay healthy and Swarm "
                              "rolled it back ("), failed.stderr[-3000:]
    assert last[1] == "swarm-deploy: the services above run their previous version; the others run this one"
    for url in serving:
        assert get(url + "/") == "v2"
    for prober in probers:
        report = prober.report()
        assert report.failed == 0, report.summary()
        assert report.total > 100, report.summary()
        # The unhealthy version got no request: its health path fails, so the proxy never sent any.
        assert list(report.bodies) == ["v1", "v2"], report.summary()


def _answers(url: str) -> bool:
    try:
        get(url + "/health")
        return True
    except OSError:
        return False


def listeners(env: dict, node: int, port: int) -> list[str]:
    """The local addresses that listen on `port` in node `node`'s network namespace (all of them)."""
    done = subprocess.run(["nsenter", f"--net=/var/run/netns/{env['nodes'][node - 1]['netns']}", "ss", "-Hltn",
                           f"sport = :{port}"], capture_output=True, text=True, check=True)
    return sorted(line.split()[3] for line in done.stdout.splitlines() if line.strip())


def get_in_node(env: dict, node: int, url: str) -> str:
    """GET `url` from inside node `node`'s network namespace: its answer, or the error's name."""
    code = ("import sys, urllib.request\ntry:\n    print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())\n"
            "except OSError as e:\n    print(type(getattr(e, 'reason', e)).__name__)")
    done = subprocess.run(["nsenter", f"--net=/var/run/netns/{env['nodes'][node - 1]['netns']}", "python3", "-c", code,
                           url], capture_output=True, text=True, timeout=30)
    return done.stdout.strip()


def test_the_proxies_publish_on_each_nodes_publish_address_only(swarm):
    """Swarm would publish a port on every address of a node: the publish relay binds each hub's host
    port on the node's publish address only (its address by default; here node1 on its loopback by
    its publishAddress), nothing else of the node answers there, and the hub sees the client's
    address through the relay."""
    env = swarm
    v2 = build_demo(env, "v2")
    done = deploy(env, v2)
    assert done.returncode == 0, done.stderr[-3000:]
    node2 = env["nodes"][1]["address"]
    url = f"http://{node2}:{DEMO_HOST_PORT}"
    wait_for(f"{url} answers v2", lambda: _answers(url) and get(url + "/") == "v2", timeout=60)
    assert listeners(env, 2, DEMO_HOST_PORT) == [f"{node2}:{DEMO_HOST_PORT}"]
    assert get_in_node(env, 2, f"http://127.0.0.1:{DEMO_HOST_PORT}/") == "ConnectionRefusedError"
    assert get(url + "/forwarded") == env["nodes"][0]["address"].rsplit(".", 1)[0] + ".1"  # this machine, on the bridge

    def on_loopback(raw: dict) -> None:
        raw["swarm"]["nodes"][0]["publishAddress"] = "127.0.0.1"
    done = deploy(env, v2, change=on_loopback)
    assert done.returncode == 0, done.stderr[-3000:]
    node1 = env["nodes"][0]["address"]
    wait_for("node1's relay on its loopback", lambda: listeners(env, 1, DEMO_HOST_PORT) == [f"127.0.0.1:{DEMO_HOST_PORT}"]
             and listeners(env, 1, DEMO_HOST_PORT), timeout=60)
    assert get_in_node(env, 1, f"http://127.0.0.1:{DEMO_HOST_PORT}/") == "v2"
    assert get_in_node(env, 1, f"http://{node1}:{DEMO_HOST_PORT}/") == "ConnectionRefusedError"
    wait_for("node2's relay back", lambda: _answers(url), timeout=60)
    assert listeners(env, 2, DEMO_HOST_PORT) == [f"{node2}:{DEMO_HOST_PORT}"]
