#!/usr/bin/env python3
"""The sample hubs on a Docker Swarm: deploy time on 1 node vs 3, and the requests per second one
sample hub serves with 1 replica vs 3 on 3 nodes, measured side by side in one run.

Run on demand (not a test), under the e2e lock since it uses the Swarm test bed
(scripts/swarm-testbed.sh); see bench/README.md:

    flock /tmp/workhub-e2e.lock .venv/bin/python bench/swarm_scaling.py --json bench/results-swarm.json

It drives the Swarm at the script level, as tests/e2e/test_e2e_swarm.py does (not through `pulumi up`):
the rendered init/join, labels and deploy scripts of components/render/swarm/scripts.py, over SSH to the
test bed's nodes with their pinned host keys, with the stack file of components/render/swarm/stack.py. The
sample hubs' images are built once on node 1 (its BuildKit, the local npm registry reached through a
forward on the bridge), pushed to the test bed's registry, and deployed in registry mode, as if CI
had built them. Cells:

- ``deploy-1``: a Swarm of node 1 alone (init only) and the three sample hubs on it;
- ``deploy-3``: a Swarm of the three nodes (3 managers), each hub pinned to a node of its own by its
  data label, every node serving;
- ``rps-1`` / ``rps-3``: one sample hub (WBSalesHub, stateless here: its volume left out, which is
  what allows replicas) on the 3-node Swarm scaled to 1 or 3 replicas (``docker service scale``,
  so the proxies' config is the same in both), loaded by wrk from this machine's namespace through
  the three nodes' proxies at once.

A deploy cell is timed from the labels script to the deploy script's exit (every service running
its tasks, healthy) and, separately, to the first moment every serving node's proxy answers 200 on
every hub's health path. Before the deploy cells, one unmeasured deploy on 3 nodes pulls the images
onto every node, so the cells compare with the images on the nodes (its time is reported apart).
The cells of each comparison are interleaved (1, 3, 3, 1, 1, 3, ...) and repeated; the report
gives the median and the spread (min to max). The run has a budget: a cell that would not fit is
skipped and reported as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine_info, write_section  # noqa: E402
from tools.forward import Forward  # noqa: E402

STACK = "bench"
HOST_PORTS = {"wbhubmanager": 24190, "wbsaleshub": 24191, "wbfinhub": 24192}
RPS_HUB = "wbsaleshub"
STATE_DIR = REPO / ".workhub" / "bench-swarm"
WRK = "wrk"
# The forward's port on the bridge: the same every run, since the npm registry's URL is a build arg
# (another URL would miss node 1's build cache and rebuild every hub).
FORWARD_PORT = 24873
DOCKER = "/usr/bin/docker"

# wrk's own report in a form to parse: its done() hook prints one JSON line (wrk's Lua API:
# summary, latency and requests; latency in microseconds).
WRK_REPORT = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"bench: [{time.monotonic() - STARTED:5.0f} s] {message}", file=sys.stderr, flush=True)


# ---- pure parts (unit-tested in tests/unit/project/test_benchmarks.py) ----

def parse_wrk(stdout: str) -> dict[str, Any]:
    """One wrk run's figures from its output with WRK_REPORT's line: requests (wrk counts every
    answer), errors by kind (an answer not 2xx/3xx is `status`; the others got no answer), requests
    per second answered 2xx/3xx (`rps`: a quick 503 is no request served) and latency percentiles in ms."""
    match = re.search(r"^WRK_JSON (\{.*\})$", stdout, re.M)
    if not match:
        raise ValueError(f"no WRK_JSON line in wrk's output:\n{stdout[-2000:]}")
    raw = json.loads(match.group(1))
    seconds = raw["duration_us"] / 1e6
    errors = {kind: raw[kind] for kind in ("connect", "read", "write", "status", "timeout")}
    ok = raw["requests"] - raw["status"]
    return {"requests": raw["requests"], "seconds": seconds, "rps": ok / seconds if seconds else 0.0,
            "errors": errors, "failed": sum(errors.values()),
            **{key.replace("_us", "_ms"): raw[key] / 1000 for key in ("p50_us", "p90_us", "p99_us", "max_us")}}


def combine_wrk(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """wrk runs that loaded different proxies at the same time, as one: the requests per second add
    up; the latency shown is the worst of the runs' percentiles (each run's own is in `per_proxy`)."""
    return {"rps": sum(run["rps"] for run in runs), "requests": sum(run["requests"] for run in runs),
            "failed": sum(run["failed"] for run in runs),
            "p50_ms": max(run["p50_ms"] for run in runs), "p99_ms": max(run["p99_ms"] for run in runs),
            "per_proxy": runs}


def spread(values: Iterable[float]) -> Optional[dict[str, float]]:
    """Median and spread (min, max) of a cell's repeats; None for no values."""
    values = sorted(values)
    if not values:
        return None
    return {"n": len(values), "median": statistics.median(values), "min": values[0], "max": values[-1]}


def interleaved(cells: list[str], repeats: int) -> list[str]:
    """Each repeat runs every cell once; the order turns around every other repeat (A B, B A, A B...),
    so a drift of the machine over the run weighs on every cell alike."""
    plan = []
    for i in range(repeats):
        plan += cells if i % 2 == 0 else cells[::-1]
    return plan


def data_labels(hubs: list[str], node_count: int) -> list[list[str]]:
    """Which hubs' data each node holds: hub i on node i mod N (so on 3 nodes, one each)."""
    return [[hub for i, hub in enumerate(hubs) if i % node_count == n] for n in range(node_count)]


def stack_raw(bed: Mapping[str, Any], hubs: list[dict], node_count: int, replicas: Mapping[str, int],
              secrets: Mapping[str, Mapping[str, str]], private_key: str, password: str) -> dict[str, Any]:
    """The raw stack config (what `workhub:*` config holds) of the benchmark's stack on the first
    `node_count` nodes of the test bed: every node a manager and serving; each hub with volumes
    pinned to one node by its data label; the hubs in registry mode."""
    nodes = bed["nodes"][:node_count]
    names = [hub["name"] for hub in hubs]
    holders = data_labels([hub["name"] for hub in hubs if hub.get("volumes")], node_count)
    return {
        "hubs": [{**hub, "buildMode": "registry"} for hub in hubs],
        "hostPorts": {name: HOST_PORTS[name] for name in names},
        "env": {hub["name"]: {key: f"http://{nodes[0]['address']}:{HOST_PORTS[hub['name']]}"
                              for key in hub.get("stackEnv") or []} for hub in hubs if hub.get("stackEnv")},
        "registry": {"server": bed["registry"]["server"], "username": bed["registry"]["username"]},
        "registryPassword": password,
        "proxyImage": bed["hub_images"]["proxy"],
        "deploy": {"healthTimeoutSeconds": 60, "healthyPasses": 2, "healthIntervalMs": 500, "stopGraceSeconds": 10},
        "swarm": {"user": bed["user"], "managers": [node["name"] for node in nodes], "monitorSeconds": 5,
                  "healthIntervalSeconds": 1,
                  "nodes": [{"name": node["name"], "address": node["address"], "hostKey": node["host_public_key"],
                             "labels": {"serve": True, **({"data": data} if data else {})}}
                            for node, data in zip(nodes, holders)],
                  "hubs": {name: {"replicas": count} for name, count in replicas.items()}},
        "secrets": {hub["name"]: {name: secrets[hub["name"]][name] for name in hub.get("secrets") or []}
                    for hub in hubs if hub.get("secrets")},
        "sshPrivateKey": private_key,
    }


def wrk_argv(url: str, seconds: float, connections: int, script: str) -> list[str]:
    return [WRK, "--threads", "1", "--connections", str(connections), "--duration", f"{seconds:g}s",
            "--timeout", "5s", "--script", script, url]


# ---- the test bed ----

class Bed:
    """The Swarm test bed and what the benchmark runs on it."""

    def __init__(self, state: Path):
        from tests.e2e.test_e2e_swarm import run_testbed

        self.state = state
        self.run_testbed = run_testbed
        started = run_testbed(state, "up", "--hub-images")
        if started.returncode != 0:
            raise RuntimeError(f"the Swarm test bed did not come up:\n{started.stderr[-3000:]}")
        self.env = json.loads(started.stdout)
        self.password = Path(self.env["registry"]["password_file"]).read_text()
        self.private_key = Path(self.env["private_key_path"]).read_text()

    def ssh(self, node: int, command: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess:
        from tests.e2e.test_e2e_swarm import ssh_run

        done = ssh_run(self.env, node, command, stdin)
        if check and done.returncode != 0:
            raise RuntimeError(f"node{node}: {command[:80]!r} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done

    def node_docker(self, node: int, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """The node's engine straight through its socket (builds and pushes, nothing timed)."""
        env = {**os.environ, "DOCKER_BUILDKIT": "1", "DOCKER_CONFIG": str(Path(self.env["state_dir"]) / "docker-config")}
        return subprocess.run([DOCKER, "-H", self.env["nodes"][node - 1]["docker_host"], *args], env=env,
                              capture_output=True, text=True, **kwargs)

    def down(self) -> None:
        self.run_testbed(self.state, "down")


def build_images(bed: Bed, hubs: list[dict]) -> dict[str, Any]:
    """Each sample hub built on node 1 with workhub's build args and pushed to the registry; the
    references, and how long that took (not part of any cell)."""
    from components.config.models import BuildSettings, Hub
    from components.render.host.build import build_args
    from workhub import engine as eng

    started = time.monotonic()
    npm = eng.registry_up()
    host, port = re.match(r"http://([\d.]+):(\d+)/", npm).groups()
    gateway = bed.env["registry"]["server"].split(":")[0]
    forward = Forward(gateway, FORWARD_PORT, (host, int(port)))
    if not forward.port:
        raise RuntimeError(f"could not listen on {gateway}:{FORWARD_PORT} for the npm registry's forward")
    images = {}
    try:
        # The hubs' Dockerfiles start FROM the Node base image by its plain name, which node 1 has
        # (scripts/swarm-testbed.sh up --hub-images).
        for raw in hubs:
            hub = Hub.model_validate(raw)
            ref = f"{bed.env['registry']['server']}/workhub/bench-{hub.name}:bench"
            log(f"building {hub.name} on node1 (npm registry through {forward.url})")
            built = bed.node_docker(1, "build", "--network=host", "-q", "-t", ref,
                                    *build_args(hub, BuildSettings(), forward.url), str(REPO / "examples" / hub.context))
            if built.returncode != 0:
                raise RuntimeError(f"building {hub.name} on node1 failed:\n{built.stderr[-3000:]}")
            pushed = bed.node_docker(1, "push", "-q", ref)
            if pushed.returncode != 0:
                raise RuntimeError(f"pushing {ref} failed:\n{pushed.stderr[-2000:]}")
            images[hub.name] = ref
    finally:
        forward.close()
    return {"images": images, "seconds": time.monotonic() - started}


# ---- the Swarm, at the script level as tests/e2e/test_e2e_swarm.py drives it ----

class Deployment:
    """One config of the benchmark's stack on the test bed: the Swarm it needs, and its deploy."""

    def __init__(self, bed: Bed, hubs: list[dict], node_count: int, replicas: Mapping[str, int],
                 images: Mapping[str, str], secrets: Mapping[str, Mapping[str, str]]):
        from components.config.parse import hub_secret_values, parse_stack_config
        from components.config.runtime import hub_runtime

        self.bed, self.node_count, self.images = bed, node_count, images
        raw = stack_raw(bed.env, hubs, node_count, replicas, secrets, bed.private_key, bed.password)
        self.config = parse_stack_config(raw, stack=STACK, secret_keys={"sshPrivateKey", "secrets", "registryPassword"})
        values = hub_secret_values(raw)
        self.runtimes = {hub.name: hub_runtime(hub, self.config, STACK, values.get(hub.name, {}), raw["sshPrivateKey"])
                         for hub in self.config.hubs}

    def form_swarm(self) -> None:
        """A fresh Swarm of this config's nodes: every node of the test bed leaves whatever Swarm it
        was in (its tasks' containers go with it), then the first inits and the others join."""
        from components.ssh import with_secrets
        from components.render.swarm.scripts import init_script, join_script, join_token_script

        for node in range(1, len(self.bed.env["nodes"]) + 1):
            self.bed.ssh(node, "docker swarm leave --force >/dev/null 2>&1 || true; "
                               "docker ps -aq --filter label=com.docker.swarm.service.name | xargs -r docker rm -f "
                               ">/dev/null 2>&1 || true")
        first, *others = self.config.swarm.nodes
        self.bed.ssh(1, "bash -s", init_script(first))
        if others:
            token = self.bed.ssh(1, "bash -s", join_token_script("manager")).stdout.strip()
            for index, node in enumerate(others, start=2):
                self.bed.ssh(index, "bash -s", with_secrets(join_script(node, first, "manager"), {"join_token": token}))

    def deploy(self) -> dict[str, Any]:
        """Labels, then the stack deploy; timed to the script's exit and to every proxy answering."""
        from components.ssh import with_secrets
        from components.render.swarm.stack import proxy_config, proxy_config_name, stack_file
        from components.render.swarm.scripts import deploy_script, deploy_secret_values, labels_script

        proxy = proxy_config(self.config, STACK)
        text = stack_file(self.config, STACK, self.images, self.runtimes, proxy)
        script = deploy_script(self.config, STACK, self.runtimes, text, proxy, proxy_config_name(STACK, proxy),
                               self.config.registry, 300)
        secrets = {**deploy_secret_values(self.config, self.runtimes), "registry_password": self.bed.password}
        started = time.monotonic()
        poller = FirstAnswers(self.urls(), started)
        try:
            self.bed.ssh(1, "bash -s", labels_script(self.config))
            self.bed.ssh(1, "bash -s", with_secrets(script, secrets))
            converged = time.monotonic() - started
            answering = poller.all_answered(120)
        finally:
            poller.stop()
        return {"converged_s": converged, "answering_s": answering, "tasks": self.tasks()}

    def urls(self) -> list[str]:
        return [f"http://{node.address}:{self.config.host_ports[hub.name]}/health"
                for node in self.config.swarm.nodes if node.labels.serve for hub in self.config.hubs]

    def tasks(self) -> dict[str, list[str]]:
        """The nodes each hub's running tasks are on."""
        from components.render.swarm.stack import service_name

        found = {}
        for hub in self.config.hubs:
            out = self.bed.ssh(1, f"docker service ps {service_name(STACK, hub.name)} --filter desired-state=running "
                                  "--format '{{.Node}} {{.CurrentState}}'").stdout
            found[hub.name] = sorted(line.split()[0] for line in out.splitlines() if "Running" in line)
        return found

    def scale(self, hub: str, replicas: int) -> list[str]:
        """The hub's service at `replicas` running tasks, each healthy, and the proxies past their
        health checks of the new ones; the nodes of its tasks."""
        from components.render.swarm.stack import service_name
        from tests.e2e.test_e2e_swarm import wait_for

        self.bed.ssh(1, f"docker service scale --detach {service_name(STACK, hub)}={replicas} >/dev/null")
        wait_for(f"{hub} at {replicas} running tasks",
                 lambda: len(self.tasks()[hub]) == replicas and all(
                     self.healthy(node) for node in range(1, self.node_count + 1)), 120, 1.0)
        # The proxies re-resolve every second and take a task after `healthyPasses` checks.
        time.sleep(2 + self.config.deploy.healthy_passes * self.config.deploy.health_interval_ms / 1000)
        return self.tasks()[hub]

    def healthy(self, node: int) -> bool:
        """No task container on the node is starting or unhealthy."""
        out = self.bed.ssh(node, "docker ps --filter label=com.docker.swarm.service.name --format '{{.Status}}'").stdout
        return "health: starting" not in out and "unhealthy" not in out


class FirstAnswers:
    """Polls each URL (every 0.2 s, from the deploy's start, beside it) until it first answers 200."""

    def __init__(self, urls: list[str], started: float):
        self.started, self.first = started, {}
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._poll, args=(url,), daemon=True) for url in urls]
        for thread in self.threads:
            thread.start()

    def _poll(self, url: str) -> None:
        while not self.done.is_set():
            if answers(url):
                self.first[url] = time.monotonic() - self.started
                return
            self.done.wait(0.2)

    def all_answered(self, timeout: float) -> float:
        """Seconds from the start to the last URL's first answer."""
        for thread in self.threads:
            thread.join(timeout)
        if len(self.first) < len(self.threads):
            raise RuntimeError(f"not every proxy answered within {timeout:.0f} s: {sorted(self.first)}")
        return max(self.first.values())

    def stop(self) -> None:
        self.done.set()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def load(urls: list[str], seconds: float, connections: int, script: str) -> dict[str, Any]:
    """wrk against every URL at once (one process each, one thread, `connections` connections)."""
    procs = [subprocess.Popen(wrk_argv(url, seconds, connections, script), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for url in urls]
    outs = [proc.communicate(timeout=seconds + 30)[0] for proc in procs]
    return combine_wrk([dict(parse_wrk(out), url=url) for out, url in zip(outs, urls)])


# ---- the report ----

# The deploy script's window for a service that starts no rollout (a new one): once its check began
# (each in turn, the script before 2026-12-01) or once from the deploy for all services.
SETTLE = "once"


def settle_words(settle: str, services: int) -> str:
    """Why the deploy script exits after every proxy answers, for the script version that ran."""
    if settle == "each":
        return ("it checks the services one after another, and a service that starts no rollout (a new one) is "
                "taken as converged only 5 s after its check began, so this stack's "
                f"{services} services (the hubs and the proxy) take at least {5 * services} s however fast "
                "their tasks start.")
    return ("a service that starts no rollout (a new one) is taken as converged only 5 s after the deploy "
            f"(one window for this stack's {services} services, the hubs and the proxy), and the script then "
            "reads each service's tasks in turn.")


def render(doc: dict) -> str:
    machine = doc["machine"]
    cfg = doc["config"]
    cells = doc["cells"]

    def stat(name: str, key: str) -> Optional[dict]:
        return spread(c[key] for c in cells if c["cell"] == name and c.get(key) is not None)

    def fmt(s: Optional[dict], unit: str, digits: int = 1) -> str:
        if not s:
            return "not run"
        unit = f" {unit}" if unit else ""
        return f"{s['median']:.{digits}f}{unit} ({s['min']:.{digits}f} - {s['max']:.{digits}f}, n={s['n']})"

    skipped = doc["skipped"]
    lines = [
        "# Benchmarks: the sample hubs on a Docker Swarm",
        "",
        f"Measured {doc['started']} with `python bench/swarm_scaling.py` ({doc['minutes']:.1f} min in all, with a "
        f"budget of {cfg['budget_minutes']:g} min; bench/README.md says how to run it). Raw results: "
        f"`{doc['path']}`.",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory']} memory, {machine['os']} "
        f"(kernel {machine['kernel']}), Docker {doc['docker']} on each node. Load average at the start: "
        f"{machine['load_at_start'][0]:.1f}. **All three nodes are network namespaces of this one machine, "
        f"sharing its {machine['nproc']} CPUs** (and the load generator runs on the same CPUs): a figure for "
        "3 nodes here is what the Swarm costs or saves when nothing is added but coordination, not what three "
        "hosts would serve. The scaling ratio shows overhead and correctness (the load reaches every replica, "
        "through every node's proxy, without failures), not multi-host capacity.",
        "",
        "The Swarm is driven at the script level, as `tests/e2e/test_e2e_swarm.py` does: the rendered init/join, "
        "labels and deploy scripts (`components/render/swarm/scripts.py`) over SSH to the test bed's nodes "
        "(`scripts/swarm-testbed.sh`), with the stack file of `components/render/swarm/stack.py`; not through `pulumi up`. "
        f"The images were built on node 1 and pushed to the test bed's registry before the cells "
        f"({doc['build_seconds']:.0f} s, not timed in any cell), then deployed in registry mode.",
        "",
        "## Deploy time: the three sample hubs on 1 node vs 3",
        "",
        "Each cell starts from a fresh Swarm (every node leaves, node 1 inits, on 3 nodes the others join as "
        "managers) and times the labels and deploy scripts: to the deploy script's exit (every service has its "
        "tasks running and healthy), and to the first moment every serving node's proxy answers 200 on every "
        "hub's health path (polled every 0.2 s beside the deploy). On 1 node, node 1 holds every hub's data and "
        "serves; on 3 nodes each hub's data label pins it to a node of its own, and every node runs the proxy. "
        "The images were on the nodes already: before the cells, one deploy on 3 nodes, with the images "
        "removed from nodes 2 and 3, pulled them there (not a cell: its deploy script was done after "
        f"{doc['warmup']['converged_s']:.1f} s, every proxy answering after {doc['warmup']['answering_s']:.1f} s).",
        "",
        "In the order run (with the 1-minute load average at each cell's start): "
        + ", ".join(f"{c['cell']} {c['answering_s']:.1f} s ({c['load']:.1f})" for c in cells
                    if c["cell"].startswith("deploy")) + ".",
        "",
        "| cell | deploy script done: median (min - max, n) | every proxy answering: median (min - max, n) |",
        "|---|---|---|",
    ]
    for name, label in (("deploy-1", "1 node"), ("deploy-3", "3 nodes")):
        lines.append(f"| {label} | {fmt(stat(name, 'converged_s'), 's')} | {fmt(stat(name, 'answering_s'), 's')} |")
    one, three = stat("deploy-1", "answering_s"), stat("deploy-3", "answering_s")
    if one and three:
        lines += ["", f"3 nodes / 1 node, medians to every proxy answering: {three['median'] / one['median']:.2f}."]
    deploys = [c for c in cells if c["cell"].startswith("deploy")]
    if deploys:
        lag = spread(c["converged_s"] - c["answering_s"] for c in deploys)
        lines += ["", f"The deploy script exits a median {lag['median']:.1f} s ({lag['min']:.1f} - {lag['max']:.1f}) "
                      "after every proxy answers: " + settle_words(doc.get("settle", "each"),
                                                                   len(deploys[0]["tasks"]) + 1)]
    placed = next((c["tasks"] for c in cells if c["cell"] == "deploy-3"), None)
    if placed:
        lines += ["", "Where the tasks ran on 3 nodes: " + "; ".join(
            f"{hub} on {', '.join(nodes) or 'none'}" for hub, nodes in placed.items()) + "."]
    lines += [
        "",
        f"## Requests per second: one sample hub with 1 replica vs 3, on 3 nodes",
        "",
        f"The hub is {RPS_HUB} (`examples/WBSalesHub`) without its volume (a hub with a node-local volume keeps "
        "one replica; leaving the volume out is what allows replicas), deployed once on the 3-node Swarm with "
        "every node serving, then scaled with `docker service scale` to 1 or 3 replicas before each cell (so "
        "the proxies' config is the same in both cells), waiting for every task to be healthy and the proxies "
        "to take it. The load generator is wrk "
        f"{doc['wrk_version']} (Debian's package), run from this machine's namespace: one wrk process per "
        f"serving node's proxy at once, each 1 thread and {cfg['connections']} kept-alive connections for "
        f"{cfg['seconds']:g} s, on `GET {cfg['path']}` (after a {cfg['warmup_seconds']:g} s warm-up run not "
        "counted). A cell's requests per second are its three processes' added up; its latency the worst of "
        "their percentiles.",
        "",
        "Requests per second count the answers of 2xx or 3xx; a failed request (an error answer such as "
        "the proxy's 503, or none) is counted apart, by kind.",
        "",
        "In the order run (with the 1-minute load average at each cell's start): "
        + ", ".join(f"{c['cell']} {c['rps']:.0f}/s ({c['load']:.1f})" for c in cells if c["cell"].startswith("rps"))
        + ".",
        "",
        "| cell | requests per second: median (min - max, n) | failed requests (all repeats), by kind | p50 ms (median) | p99 ms (median) | tasks on |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in (("rps-1", "1 replica"), ("rps-3", "3 replicas")):
        mine = [c for c in cells if c["cell"] == name]
        if not mine:
            lines.append(f"| {label} | not run | | | | |")
            continue
        p50, p99 = spread(c["p50_ms"] for c in mine), spread(c["p99_ms"] for c in mine)
        kinds: dict[str, int] = {}
        for c in mine:
            for run in c["per_proxy"]:
                for kind, count in run["errors"].items():
                    kinds[kind] = kinds.get(kind, 0) + count
        by_kind = ", ".join(f"{kind} {count}" for kind, count in kinds.items() if count)
        lines.append(f"| {label} | {fmt(stat(name, 'rps'), '', 0)} | {sum(c['failed'] for c in mine)} of "
                     f"{sum(c['requests'] for c in mine)}{f' ({by_kind})' if by_kind else ''} | {p50['median']:.1f} | "
                     f"{p99['median']:.1f} | {', '.join(mine[-1]['tasks'])} |")
    one, three = stat("rps-1", "rps"), stat("rps-3", "rps")
    if one and three:
        pairs = [b["rps"] / a["rps"] for a, b in zip([c for c in cells if c["cell"] == "rps-1"],
                                                        [c for c in cells if c["cell"] == "rps-3"])]
        ratios = spread(pairs)
        lines += ["", f"Scaling ratio (3 replicas / 1 replica): {three['median'] / one['median']:.2f} from the medians; "
                      f"per repeat {', '.join(f'{r:.2f}' for r in pairs)} (median {ratios['median']:.2f})."]
    lines += ["", f"Skipped for the budget: {', '.join(skipped) if skipped else 'none'}."]
    if doc.get("notes"):
        lines += ["", *doc["notes"]]
    return "\n".join(lines) + "\n"


# ---- the run ----

def sample_hubs() -> list[dict]:
    from workhub import engine as eng

    return eng.project_hubs(REPO)


# What the run keeps of its budget for the end: the Swarm left, the test bed down.
TEARDOWN_SECONDS = 30


def run(args: argparse.Namespace) -> dict:
    started_at = time.monotonic()
    budget = args.budget_minutes * 60
    doc: dict[str, Any] = {"started": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                           "machine": machine_info(), "cells": [], "skipped": [], "notes": [], "settle": SETTLE,
                           "config": {"repeats": args.repeats, "seconds": args.seconds, "connections": args.connections,
                                      "warmup_seconds": args.warmup_seconds, "path": args.path,
                                      "budget_minutes": args.budget_minutes}}
    doc["wrk_version"] = subprocess.run([WRK, "--version"], capture_output=True, text=True).stdout.split()[1]
    hubs = sample_hubs()
    secrets = {hub["name"]: {name: f"bench-{hub['name']}-{name.lower()}" for name in hub.get("secrets") or []}
               for hub in hubs}
    bed = Bed(args.state)
    try:
        doc["docker"] = bed.node_docker(1, "version", "--format", "{{.Server.Version}}").stdout.strip()
        built = build_images(bed, hubs)
        doc["build_seconds"] = built["seconds"]
        images = built["images"]
        if args.prepare:
            return doc

        def left() -> float:
            return budget - (time.monotonic() - started_at) - TEARDOWN_SECONDS

        def fits(estimate: float, name: str) -> bool:
            if left() < estimate:
                doc["skipped"].append(name)
                log(f"{name}: skipped ({left():.0f} s of the budget left, it takes about {estimate:.0f} s)")
                return False
            return True

        deployments = {n: Deployment(bed, hubs, n, {}, images, secrets) for n in (1, 3)}
        log("warm-up deploy on 3 nodes (pulls the images onto every node)")
        for node in range(2, len(bed.env["nodes"]) + 1):
            bed.node_docker(node, "image", "rm", "--force", *images.values())
        deployments[3].form_swarm()
        doc["warmup"] = deployments[3].deploy()
        log(f"warm-up: every proxy answering after {doc['warmup']['answering_s']:.1f} s")
        took: dict[str, float] = {"deploy-1": 60.0, "deploy-3": doc["warmup"]["answering_s"] + 20}
        # Leave room for the rps cells: a deploy cell may use the budget up to what they need.
        rps_need = args.repeats * 2 * (args.seconds + args.warmup_seconds + 12) + 60
        for name in interleaved(["deploy-1", "deploy-3"], args.repeats):
            if not fits(took[name] + rps_need, name):
                continue
            t0 = time.monotonic()
            d = deployments[int(name[-1])]
            d.form_swarm()
            found = d.deploy()
            took[name] = time.monotonic() - t0
            doc["cells"].append({"cell": name, "load": os.getloadavg()[0], **found})
            log(f"{name}: deploy script done after {found['converged_s']:.1f} s, every proxy answering after "
                f"{found['answering_s']:.1f} s")

        rps_hub = next({k: v for k, v in hub.items() if k != "volumes"} for hub in hubs if hub["name"] == RPS_HUB)
        rps = Deployment(bed, [rps_hub], 3, {RPS_HUB: 3}, images, secrets)
        if fits(90, "rps setup"):
            rps.form_swarm()
            rps.deploy()
            urls = [f"http://{node.address}:{HOST_PORTS[RPS_HUB]}{args.path}" for node in rps.config.swarm.nodes]
            with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
                script.write(WRK_REPORT)
            try:
                for name in interleaved(["rps-1", "rps-3"], args.repeats):
                    if not fits(args.seconds + args.warmup_seconds + 12, name):
                        continue
                    replicas = int(name[-1])
                    tasks = rps.scale(RPS_HUB, replicas)
                    load(urls, args.warmup_seconds, args.connections, script.name)
                    found = load(urls, args.seconds, args.connections, script.name)
                    doc["cells"].append({"cell": name, "tasks": tasks, "load": os.getloadavg()[0], **found})
                    log(f"{name}: {found['rps']:.0f} requests/s, {found['failed']} failed of {found['requests']}, "
                        f"p99 {found['p99_ms']:.1f} ms, tasks on {', '.join(tasks)}")
            finally:
                os.unlink(script.name)
        for node in range(1, len(bed.env["nodes"]) + 1):
            bed.ssh(node, "docker swarm leave --force >/dev/null 2>&1 || true", check=False)
    finally:
        bed.down()
    doc["minutes"] = (time.monotonic() - started_at) / 60
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="repeats of each cell (default 3)")
    p.add_argument("--seconds", type=float, default=10.0, help="wrk's duration per rps cell (default 10)")
    p.add_argument("--warmup-seconds", type=float, default=2.0)
    p.add_argument("--connections", type=int, default=8, help="wrk's connections per proxy (default 8)")
    p.add_argument("--path", default="/health", help="what wrk requests (default /health)")
    p.add_argument("--budget-minutes", type=float, default=11.5,
                   help="the whole run's budget: no cell starts that would end past it (default 11.5)")
    p.add_argument("--state", type=Path, default=STATE_DIR,
                   help="the test bed's state (kept: the next run reuses its images and build cache)")
    p.add_argument("--prepare", action="store_true",
                   help="only start the test bed, build and push the images, and stop it (fills the build cache)")
    p.add_argument("--json", type=Path, help="write the raw results here (bench/results-swarm.json)")
    p.add_argument("--render-from", type=Path, help="only render a report from a results file")
    p.add_argument("--out", type=Path, help="write the section into this Markdown file")
    args = p.parse_args(argv)
    if args.render_from:
        doc = dict(json.loads(args.render_from.read_text()), path=str(args.render_from))
    else:
        if os.geteuid() != 0:
            p.error("the Swarm test bed needs root (network namespaces, dockerds)")
        if not shutil.which(WRK):
            p.error("wrk is not installed: apt-get install wrk")
        doc = run(args)
        if args.prepare:
            log(f"images built and pushed in {doc['build_seconds']:.0f} s; the test bed is down, its state kept")
            return 0
        if args.json:
            args.json.write_text(json.dumps(doc, indent=1) + "\n")
        doc["path"] = str(args.json or "(not written)")
    text = render(doc)
    if args.out:
        write_section(args.out, "swarm", text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
