"""A process watcher: what every process on this machine held in its command line and environment
while a test ran, so a test can say that no secret value was in any of them.

workhub promises that a secret (the SSH key, a hub's secret, the registry password, a Swarm join
token, the webhook URL) reaches no command line and no environment of a process it starts, on
either side: this machine, where Pulumi and its providers run, and the hosts, where the scripts
run. The test host and the Swarm test bed run on this machine (sshd and dockerd in network
namespaces, the same process table), so one watcher here sees both sides.

The watcher is a process of its own (`python -m tools.procwatch OUT`, as root), so the GIL of the
test it watches never delays it. It listens to the kernel's process events (the netlink proc
connector) and reads `/proc/<pid>/cmdline`, `environ` and `cgroup` at each exec, within a fraction
of a millisecond, so a process that lives a few milliseconds is seen; every second it also reads
every process (those that ran before it started, and command lines a process rewrote since). It
keeps each distinct text once, with the processes that held it, and writes them all to OUT when
it is told to stop (SIGTERM). It knows no secret: `findings` looks for the values afterwards, so a
value first known during the test (a join token) is looked for too.

A process in a one-host hub's container (a container labelled `workhub.role=hub`, found by the
container id in its cgroup, through the Docker Engine API) gets the hub's secrets in its
environment by design (its env file): workhub does not start that process, so its environment is
left out of the findings (its command line is not). That is decided by the cgroup, never by the
value.

Hand-written rather than a tool: `forkstat` and `execsnoop` print only the command line of an
exec, and the environment must be read while the process still lives; the proc connector is a
few structs.

Library use::

    with Watcher(out) as watcher:          # started, and its positive controls seen
        ...                                # the test
    seen = watcher.seen                    # after the block: what it saw
    assert not findings(seen, {"registry password": password}), ...
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional

# The netlink proc connector (linux/connector.h, linux/cn_proc.h).
NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_EVENT_EXEC = 0x00000002
_NLMSG_HDR = struct.Struct("=IHHII")       # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")         # idx, val, seq, ack, len, flags
_PROC_EVENT = struct.Struct("=IIQ")        # what, cpu, timestamp_ns
_EXEC_EVENT = struct.Struct("=ii")         # process_pid, process_tgid
NLMSG_DONE = 3

SCAN_SECONDS = 1.0
# A process in a container: its cgroup path names the container's 64-hex id (cgroupfs or systemd driver).
_CONTAINER_ID = re.compile(rb"[0-9a-f]{64}")
# How many processes a text keeps as examples for a finding.
EXAMPLES = 3


@dataclass
class Holder:
    """A process that held a text: its pid, its command (the first words of its command line), its
    parent, and its container (name or id) with whether that is a hub's."""

    pid: int
    command: str
    parent: str
    container: str = ""
    hub: bool = False


@dataclass
class Seen:
    """Every distinct command line and environment the watcher read, each with the processes that
    held it (at most EXAMPLES of them)."""

    cmdlines: dict[bytes, list[Holder]] = field(default_factory=dict)
    environs: dict[bytes, list[Holder]] = field(default_factory=dict)
    processes: int = 0
    """How many process images (pid and exec) it read."""

    def to_json(self) -> str:
        def texts(table: dict[bytes, list[Holder]]) -> list[dict]:
            return [{"text": text.decode("latin-1"), "holders": [vars(h) for h in holders]}
                    for text, holders in table.items()]

        return json.dumps({"processes": self.processes, "cmdlines": texts(self.cmdlines),
                           "environs": texts(self.environs)})

    @staticmethod
    def from_json(text: str) -> "Seen":
        data = json.loads(text)

        def table(rows: list[dict]) -> dict[bytes, list[Holder]]:
            return {row["text"].encode("latin-1"): [Holder(**h) for h in row["holders"]] for row in rows}

        return Seen(table(data["cmdlines"]), table(data["environs"]), data["processes"])


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None  # gone already, or a kernel thread


def _command(cmdline: bytes) -> str:
    return " ".join(word.decode("utf-8", "replace") for word in cmdline.rstrip(b"\0").split(b"\0"))


def _short(text: str, limit: int) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit] + "..."


class _EngineAPI(http.client.HTTPConnection):
    """HTTP to a Docker engine's unix socket (the standard library has no unix-socket client)."""

    def __init__(self, socket_path: str):
        super().__init__("docker", timeout=5)
        self.socket_path = socket_path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self.socket_path)


def container_of(engines: Iterable[str], container_id: str) -> tuple[str, bool]:
    """A container's name and whether it is a one-host hub's (label workhub.role=hub), asked of each
    engine in turn; ("", False) when none knows it (gone already)."""
    for engine in engines:
        api = _EngineAPI(engine)
        try:
            api.request("GET", f"/containers/{container_id}/json")
            answer = api.getresponse()
            body = answer.read()
        except OSError:
            continue
        finally:
            api.close()
        if answer.status != 200:
            continue
        info = json.loads(body)
        labels = (info.get("Config") or {}).get("Labels") or {}
        return info.get("Name", "").lstrip("/") or container_id[:12], labels.get("workhub.role") == "hub"
    return "", False


class _Watch:
    """The watcher's loop (in its own process)."""

    def __init__(self, engines: list[str]):
        self.engines = engines
        self.seen = Seen()
        self.last: dict[int, bytes] = {}
        self.containers: dict[str, tuple[str, bool]] = {}
        self.own = os.getpid()

    def connector(self) -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        try:
            sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE: room for a burst of execs
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        sock.bind((self.own, CN_IDX_PROC))
        op = struct.pack("=I", PROC_CN_MCAST_LISTEN)
        cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
        sock.send(_NLMSG_HDR.pack(_NLMSG_HDR.size + len(cn), NLMSG_DONE, 0, 0, self.own) + cn)
        return sock

    def container(self, cgroup: bytes) -> tuple[str, bool]:
        found = _CONTAINER_ID.search(cgroup)
        if not found:
            return "", False
        cid = found.group().decode()
        if cid not in self.containers:
            name, hub = container_of(self.engines, cid)
            self.containers[cid] = (name or f"container {cid[:12]} (gone before it was asked)", hub)
        return self.containers[cid]

    def read(self, pid: int, exec_event: bool = False) -> None:
        """Read a process: at its exec, all of it; in a scan, only when its command line is not the
        one last read (a process that began before the watcher, or one that rewrote its argv)."""
        if pid == self.own:
            return
        base = f"/proc/{pid}/"
        cmdline = _read(base + "cmdline")
        if cmdline is None or (not exec_event and self.last.get(pid) == cmdline):
            return
        environ = _read(base + "environ") or b""
        self.last[pid] = cmdline
        self.seen.processes += 1
        stat = _read(base + "stat") or b""
        ppid = int(stat.rsplit(b")", 1)[1].split()[1]) if b")" in stat else 0
        parent = _command(_read(f"/proc/{ppid}/cmdline") or b"") if ppid else ""
        container, hub = self.container(_read(base + "cgroup") or b"")
        holder = Holder(pid, _command(cmdline), f"{ppid} {parent}".strip(), container, hub)
        for table, text in ((self.seen.cmdlines, cmdline), (self.seen.environs, environ)):
            holders = table.setdefault(text, [])
            if len(holders) < EXAMPLES and all(h.pid != pid for h in holders):
                holders.append(holder)

    def scan(self) -> None:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
        for pid in pids:
            self.read(pid)
        alive = set(pids)
        for pid in [pid for pid in self.last if pid not in alive]:
            del self.last[pid]

    def run(self, out: Path, ready) -> None:
        parent = os.getppid()
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
        signal.signal(signal.SIGINT, lambda *_: stop.append(True))
        sock = self.connector()
        try:
            # Run as soon as an exec is reported, ahead of the processes being watched: a command line
            # `bash -c` holds for a millisecond before it execs its command is read in that time.
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        except OSError:
            os.nice(-10)
        self.scan()
        ready()
        next_scan = time.monotonic() + SCAN_SECONDS
        while not stop:
            timeout = max(0.0, next_scan - time.monotonic())
            try:
                readable, _, _ = select.select([sock], [], [], timeout)
            except InterruptedError:
                continue
            if readable:
                try:
                    data = sock.recv(1 << 16)
                except OSError:
                    # ENOBUFS: a burst overflowed the buffer; the scan below reads what still runs.
                    data = b""
                    next_scan = 0.0
                offset = 0
                while offset + _NLMSG_HDR.size <= len(data):
                    length = _NLMSG_HDR.unpack_from(data, offset)[0]
                    event = offset + _NLMSG_HDR.size + _CN_MSG.size
                    if event + _PROC_EVENT.size + _EXEC_EVENT.size <= len(data):
                        what = _PROC_EVENT.unpack_from(data, event)[0]
                        if what == PROC_EVENT_EXEC:
                            self.read(_EXEC_EVENT.unpack_from(data, event + _PROC_EVENT.size)[1], True)
                    offset += max(length, _NLMSG_HDR.size)
            if time.monotonic() >= next_scan:
                if os.getppid() != parent:
                    return  # the test that started it is gone (killed): nothing to tell, nobody to tell it
                self.scan()
                next_scan = time.monotonic() + SCAN_SECONDS
        self.scan()
        out.touch(mode=0o600)
        out.write_text(self.seen.to_json())


@dataclass(frozen=True)
class Finding:
    """A secret value in a process's command line or environment."""

    secret: str
    where: str
    """`its command line`, or `its environment (NAME)`."""
    holder: Holder

    def __str__(self) -> str:
        h = self.holder
        inside = f", in container {h.container}" if h.container else ""
        return f"{self.secret} in {self.where} of process {h.pid} `{_short(h.command, 160)}` " \
               f"(parent {_short(h.parent, 80)}{inside})"


def needles(value: str) -> set[str]:
    """What of `value` is looked for: the value itself, each of its lines, and each run of 16 or more
    characters of its own alphabet (so a value quoted for a shell, escaped for JSON or cut into a
    script is found by its parts too)."""
    found = {value} if len(value) >= 8 else set()
    found |= {line.strip() for line in value.splitlines() if len(line.strip()) >= 16}
    found |= set(re.findall(r"[A-Za-z0-9+/=_-]{16,}", value))
    return found


def _mask(text: str, parts: Iterable[str]) -> str:
    for part in sorted(parts, key=len, reverse=True):
        text = text.replace(part, "<secret>")
    return text


def findings(seen: Seen, values: Mapping[str, str], common: Iterable[str] = (), hubs: bool = False) -> list[Finding]:
    """Where each secret of `values` (by a name for it) was in a command line or an environment;
    the environment of a hub's container's processes is left out (see the module's text), unless
    `hubs`. `common` are texts no part looked for may be in (what every key of a kind shares, as the
    header of an OpenSSH key)."""
    common = list(common)
    parts = {name: sorted(p for p in needles(value) if not any(p in text for text in common))
             for name, value in values.items()}
    every = {p for group in parts.values() for p in group}
    found: list[Finding] = []

    def held(holder: Holder) -> Holder:
        return Holder(**{**vars(holder), "command": _mask(holder.command, every), "parent": _mask(holder.parent, every)})

    for name, group in parts.items():
        if not group:
            continue
        pattern = re.compile(b"|".join(re.escape(p.encode()) for p in group))
        for text, holders in seen.cmdlines.items():
            if pattern.search(text):
                found += [Finding(name, "its command line", held(holder)) for holder in holders]
        for text, holders in seen.environs.items():
            if not pattern.search(text):
                continue
            names = ", ".join(sorted({entry.split(b"=", 1)[0].decode("utf-8", "replace")
                                      for entry in text.split(b"\0") if pattern.search(entry)}))
            found += [Finding(name, f"its environment ({names})", held(holder)) for holder in holders
                      if hubs or not holder.hub]
    return found


class Watcher:
    """Runs the watcher process for the length of a `with` block (or until `stop`), with a positive
    control at its start and at its end: a short-lived process with a value of its own in its
    command line, and one with another in its environment, which the watcher must have seen, so a
    watcher that sees nothing (or stopped seeing) cannot pass. `seen` is what it saw, once stopped."""

    CONTROL_SECONDS = 0.05

    def __init__(self, out: Path, engines: Iterable[str] = ("/var/run/docker.sock",)):
        self.out = out
        self.engines = list(engines)
        self.controls = {f"control {kind} ({when})": f"procwatch-control-{kind}-{when}-{secrets.token_hex(12)}"
                         for when in ("start", "end") for kind in ("argv", "environ")}
        self.secrets: dict[str, str] = {}
        """The secret values to look for, by name, as the test learns them (assert_clean's default)."""
        self.seen = Seen()
        self.started = 0.0
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        """The CPU time the watcher process used (before it wrote what it saw)."""
        self._process: Optional[subprocess.Popen] = None

    def control(self, when: str) -> None:
        """The positive control: two processes of CONTROL_SECONDS, one with a value in its argv and
        one with another in its environment."""
        subprocess.run(["sh", "-c", f"sleep {self.CONTROL_SECONDS}", "procwatch-control",
                        self.controls[f"control argv ({when})"]], check=True)
        subprocess.run(["sleep", str(self.CONTROL_SECONDS)], check=True,
                       env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                            "PROCWATCH_CONTROL": self.controls[f"control environ ({when})"]})

    def start(self) -> "Watcher":
        self.started = time.monotonic()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tools.procwatch", str(self.out), *(f"--engine={e}" for e in self.engines)],
            cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE, text=True)
        line = self._process.stdout.readline()
        if line.strip() != "ready":
            self._process.kill()
            self._process.wait()
            raise RuntimeError(f"the process watcher did not start (it said {line!r}; it needs root and the "
                               "kernel's proc connector)")
        self.control("start")
        return self

    def __enter__(self) -> "Watcher":
        return self.start()

    def __exit__(self, *_) -> None:
        self.stop()

    def stop(self) -> Seen:
        """Stop the watcher (after the closing control) and read what it saw; raises when it died
        early or missed a control."""
        if self._process is None:
            return self.seen
        process, self._process = self._process, None
        if process.poll() is not None:
            raise RuntimeError(f"the process watcher died during the test (exit code {process.returncode})")
        self.control("end")
        stat = (_read(f"/proc/{process.pid}/stat") or b") x 0 0 0 0 0 0 0 0 0 0 0 0").rsplit(b")", 1)[1].split()
        self.cpu_seconds = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        process.send_signal(signal.SIGTERM)
        if process.wait(timeout=60) != 0:
            raise RuntimeError(f"the process watcher failed (exit code {process.returncode})")
        self.seen = Seen.from_json(self.out.read_text())
        self.out.unlink()
        self.seconds = time.monotonic() - self.started
        caught = {(f.secret, f.where.split(" (")[0]) for f in findings(self.seen, self.controls)}
        missed = [name for name in self.controls
                  if (name, "its command line" if "argv" in name else "its environment") not in caught]
        if missed:
            raise RuntimeError(f"the process watcher missed its positive control(s): {', '.join(missed)}; it saw "
                               f"{self.seen.processes} process images, but not one of {self.CONTROL_SECONDS} s")
        return self.seen

    def assert_clean(self, values: Optional[Mapping[str, str]] = None, common: Iterable[str] = (),
                     noted: Optional[Mapping[str, str]] = None) -> list[Finding]:
        """Stop, then fail naming each process that held one of the secret `values` (by name; by
        default `secrets`) in its command line or environment. Where a `noted` value was is only
        said (by the processes' commands), not failed. Returns what was left out by design: the
        values in a one-host hub container's environment (a test can check the watcher saw them)."""
        values = self.secrets if values is None else values
        seen = self.stop()
        every = findings(seen, values, common, hubs=True)
        by_design = [f for f in every if f.holder.hub and f.where.startswith("its environment")]
        found = [f for f in every if f not in by_design]
        print(f"procwatch: {seen.processes} process images in {self.seconds:.0f} s ({self.cpu_seconds:.1f} s of CPU), "
              f"{len(seen.cmdlines)} command lines and {len(seen.environs)} environments; {len(values)} secret "
              f"values looked for; {len(found)} found; {len(by_design)} in hub containers' environments (by design)",
              file=sys.stderr)
        kinds = Counter((f.secret, f.where, Path(f.holder.command.split(" ", 1)[0]).name)
                        for f in findings(seen, noted or {}, common))
        for (name, where, command), count in sorted(kinds.items()):
            print(f"procwatch: noted, not failed: {name} in {where} of {count} process(es) `{command}`",
                  file=sys.stderr)
        assert not found, ("a secret value was in a process's command line or environment:\n"
                           + "\n".join(f"  {finding}" for finding in found))
        return by_design


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="where to write what it saw (JSON, mode 0600), at SIGTERM")
    parser.add_argument("--engine", action="append", default=[],
                        help="a Docker engine's unix socket, to tell a hub's containers (repeatable)")
    args = parser.parse_args(argv)

    def ready() -> None:
        print("ready", flush=True)

    _Watch(args.engine or ["/var/run/docker.sock"]).run(args.out, ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
