#!/usr/bin/env python3
"""Requests during deploys: workhub's switch behind the proxy, side by side with the stop-then-start
swap workhub did before it, under the same steady load in one run.

Run on demand (not a test): ``python bench/deploys.py --out docs/benchmarks.md``; see
bench/README.md. It starts the throwaway test host (``scripts/testhost.sh``, its own state
directory) and the local npm registry, deploys one sample hub (WBSalesHub, with its secret and
volume) to a `bench` stack, then measures, while ``tools/prober.py`` requests the hub's host port:

- ``idle``: nothing happens (the baseline latency);
- ``workhub``: N consecutive ``up``s, each changing one of the hub's settings, so each is a full
  deploy of a new container behind the proxy (start beside, N answers of 200, switch, drain, stop);
- ``stop-then-start``: N swaps of a container of the same image publishing a port of its own, the
  way workhub ran hubs before the proxy: the old one stops, then the new one starts on the port.

Each cell is probed by two clients at once: one opening a fresh connection per request (what shows
refused and reset connections) and one reusing HTTP/1.1 connections like a browser. It reports
failed requests, latency percentiles, the time from "healthy" to "switched" that each deploy printed,
and the proxy's memory on the host. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine_info, write_section  # noqa: E402
from pulumi import automation as auto  # noqa: E402
from tools.prober import Prober, ProbeReport, percentile  # noqa: E402
from workhub import engine as eng  # noqa: E402
from tests.e2e_fixtures import free_ports, new_local_stack  # noqa: E402  (the e2e tests' throwaway stacks)

HUB = {"name": "wbsaleshub", "context": "WBSalesHub", "port": 4091, "healthPath": "/health",
       "env": {"LOG_LEVEL": "info"}, "stackEnv": ["PUBLIC_URL"], "secrets": ["LEADS_API_TOKEN"],
       "volumes": {"data": "/app/data"}}
STACK = "bench"
DOCKER = "/usr/bin/docker"


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def docker(*args: str) -> str:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=True).stdout.strip()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class Probes:
    """The two clients of one cell: fresh connections, and kept-alive ones."""

    def __init__(self, url: str, rate: float):
        self.fresh = Prober(url, rate=rate * 0.8)
        self.kept = Prober(url, rate=rate * 0.2, keep_alive=True)

    def __enter__(self) -> "Probes":
        self.fresh.start()
        self.kept.start()
        return self

    def __exit__(self, *exc) -> None:
        self.fresh.stop()
        self.kept.stop()

    def reports(self) -> dict[str, ProbeReport]:
        return {"fresh": self.fresh.report(), "keep-alive": self.kept.report()}


def cell(name: str, reports: dict[str, ProbeReport], **extra) -> dict:
    latencies = [s.latency_ms for r in reports.values() for s in r.samples if s.error is None and s.status == 200]
    found = {
        "cell": name,
        "requests": sum(r.total for r in reports.values()),
        "failed": sum(r.failed for r in reports.values()),
        "failures": {f"{client} {kind}": w.count for client, r in reports.items() for kind, w in r.failures.items()},
        "p50_ms": percentile(latencies, 50) if latencies else None,
        "p99_ms": percentile(latencies, 99) if latencies else None,
        "max_ms": max(latencies) if latencies else None,
        "seconds": max(r.duration for r in reports.values()),
        **extra,
    }
    for client, report in reports.items():
        log(f"{name} ({client}): {report.summary().splitlines()[0]}")
    return found


def proxy_memory(container: str) -> dict:
    """The proxy container's memory as Docker accounts it (its cgroup) and its process's RSS."""
    usage = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", container).split(" / ")[0]
    pid = docker("inspect", "--format", "{{.State.Pid}}", container)
    rss = next((line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:")), "?")
    return {"docker_stats": usage, "rss_kb": int(rss) if rss.isdigit() else None}


def setup(work: Path) -> tuple[auto.Stack, str]:
    host = eng.testhost_up(state_dir=work / "host")
    registry = eng.registry_up()
    _, stack = new_local_stack(work, host, registry, hubs=[HUB], name=STACK, project="bench")
    log("first up (build and deploy)")
    outputs = stack.up(color="never").outputs["hubs"].value["wbsaleshub"]
    return stack, outputs["url"]


def run_workhub(stack: auto.Stack, url: str, deploys: int, rate: float) -> dict:
    switches = []
    with Probes(url, rate) as probes:
        for i in range(deploys):
            stack.set_config("workhub:env.wbsaleshub.PUBLIC_URL", auto.ConfigValue(f"http://127.0.0.1/deploy-{i}"),
                             path=True)
            result = stack.up(color="never")
            verified = result.outputs["hubs"].value["wbsaleshub"]["verified"]
            switches.append(verified["switch_ms"])
            log(f"workhub deploy {i + 1}/{deploys}: serving from {verified['container']}, switched "
                f"{verified['switch_ms']} ms after healthy")
    return cell("workhub", probes.reports(), deploys=deploys, switch_ms=switches)


def run_stop_then_start(image: str, deploys: int, rate: float, port: int) -> dict:
    """The swap before the proxy: stop the old container, start the new one on the same port, wait
    until it answers (as `docker compose up` of a changed service did)."""
    url = f"http://127.0.0.1:{port}"
    name = "workhub-bench-old-way"

    def start() -> None:
        docker("run", "--detach", "--name", name, "--env", "PORT=4091", "--publish", f"127.0.0.1:{port}:4091", image)
        for _ in range(600):
            if answers(url):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{image} did not answer on {url}")

    subprocess.run([DOCKER, "rm", "-f", name], capture_output=True)
    start()
    try:
        with Probes(url, rate) as probes:
            for i in range(deploys):
                docker("stop", name)
                docker("rm", name)
                start()
                log(f"stop-then-start swap {i + 1}/{deploys}")
        return cell("stop-then-start", probes.reports(), deploys=deploys)
    finally:
        subprocess.run([DOCKER, "rm", "-f", name], capture_output=True)


def render(doc: dict) -> str:
    machine = doc["machine"]
    cells = {c["cell"]: c for c in doc["cells"]}
    idle = cells["idle"]["p99_ms"]
    lines = [
        "# Benchmarks: requests during deploys",
        "",
        f"Measured {doc['started']} with `python bench/deploys.py` ({doc['minutes']:.0f} min; bench/README.md says "
        "how to run it). Raw results: `bench/results-deploys.json`.",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory']} memory, {machine['os']} "
        f"(kernel {machine['kernel']}), Docker {doc['docker']}, proxy image `{doc['proxy_image']}`. Load average "
        f"at the start: {machine['load_at_start'][0]:.1f}.",
        "",
        f"One sample hub (WBSalesHub, with a secret and a volume) under a steady {doc['rate']:g} requests per "
        "second to its host port, 80% on a fresh connection each and 20% on kept-alive connections, during: "
        f"nothing (idle), {doc['deploys']} consecutive workhub deploys (each `up` changes one of the hub's settings, "
        "so each starts a new container, waits for 3 answers of 200, switches the proxy, drains and stops the old "
        f"one), and {doc['deploys']} stop-then-start swaps of the same image on a port of its own (what workhub "
        "did before the proxy). The cells ran one after another in the same run.",
        "",
        "| cell | deploys | requests | failed | failures by kind | p50 ms | p99 ms | p99 / idle p99 | max ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in doc["cells"]:
        kinds = ", ".join(f"{k}: {v}" for k, v in c["failures"].items()) or "none"
        ratio = f"{c['p99_ms'] / idle:.2f}" if c["p99_ms"] and idle else "n/a"
        lines.append(f"| {c['cell']} | {c.get('deploys', 0)} | {c['requests']} | {c['failed']} | {kinds} | "
                     f"{c['p50_ms']:.1f} | {c['p99_ms']:.1f} | {ratio} | {c['max_ms']:.1f} |")
    switches = cells["workhub"]["switch_ms"]
    memory = doc["proxy_memory"]
    lines += [
        "",
        f"Time from \"healthy\" (the new container's 3rd answer of 200) to \"switched\" (the proxy found the new "
        f"container through Docker's DNS and its runtime API moved the backend to it), as each deploy reported it: median {statistics.median(switches):.0f} ms, max {max(switches)} ms "
        f"(over {len(switches)} deploys). Requests in flight keep running on the old container meanwhile; the old "
        "one stops only once the proxy holds no request to it.",
        "",
        f"The proxy's memory on the host after the deploys: {memory['docker_stats']} by `docker stats` (its "
        f"cgroup), {memory['rss_kb'] / 1024:.1f} MiB resident (VmRSS of its worker process). "
        "There is one proxy per hub and stack.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deploys", type=int, default=10, help="deploys per cell (default 10)")
    p.add_argument("--rate", type=float, default=50.0, help="requests per second in all (default 50)")
    p.add_argument("--idle-seconds", type=float, default=20.0)
    p.add_argument("--json", type=Path, help="write the raw results here (bench/results-deploys.json)")
    p.add_argument("--out", type=Path, help="write the report's section into this Markdown file")
    p.add_argument("--render-from", type=Path, help="only render a report from a results file")
    args = p.parse_args(argv)
    if args.render_from:
        text = render(json.loads(args.render_from.read_text()))
        write_section(args.out, "deploys", text) if args.out else print(text)
        return 0
    eng.ensure_toolchain()
    started = time.monotonic()
    doc = {"started": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine_info(),
           "rate": args.rate, "deploys": args.deploys}
    with tempfile.TemporaryDirectory(prefix="workhub-bench-") as tmp:
        work = Path(tmp)
        stack, url = setup(work)
        doc["docker"] = docker("version", "--format", "{{.Server.Version}}")
        try:
            config = eng.stack_config(stack)[0]
            doc["proxy_image"] = config.proxy_image
            with Probes(url, args.rate) as probes:
                time.sleep(args.idle_seconds)
            cells = [cell("idle", probes.reports())]
            cells.append(run_workhub(stack, url, args.deploys, args.rate))
            doc["proxy_memory"] = proxy_memory("wbsaleshub-bench-proxy")
            image = stack.outputs()["hubs"].value["wbsaleshub"]["image"]
            (port,) = free_ports(1)
            cells.append(run_stop_then_start(image, args.deploys, args.rate, port))
            doc["cells"] = cells
        finally:
            stack.destroy(color="never")
            subprocess.run([DOCKER, "volume", "rm", "workhub-bench-wbsaleshub-data"], capture_output=True)
            eng.testhost("down", "--purge", state_dir=work / "host")
    doc["minutes"] = (time.monotonic() - started) / 60
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    text = render(doc)
    if args.out:
        write_section(args.out, "deploys", text)
        log(f"wrote {args.out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
