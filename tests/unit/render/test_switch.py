"""How a slot's address reaches the hub's proxy (components.render.host.deploy.POINT_PROXY), by bash against a
stand-in `docker` whose `exec` answers the proxy's runtime API the way HAProxy 2.6 does; and the
proxy's resolver settings agreeing with the one wait left on them. tests/e2e/test_e2e_switch.py runs the
same against the real engine and HAProxy."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from components.render.host.documents import LOOKUP_S, proxy_config
from components.render.host.deploy import POINT_PROXY, proxy_values, run_script
from components.render.shell import script
from tests.unit.render.test_scripts import HUB, IMAGE, RUNTIME, SERVING
from tests.unit.render.test_swarm import rendered as swarm_rendered

BASE = "wbsaleshub-staging"
NETWORK = "workhub-staging"

# `docker container inspect --format F NAME`: NAME's address from $FAKE/containers.json.
# `docker exec PROXY bash -c ... api COMMAND PORT`: HAProxy's answer to COMMAND, from and to the
# backend's servers in $FAKE/servers.json ({name: {"addr", "admin", "resolves_after"}}); every
# command is logged in $FAKE/api.log. As HAProxy 2.6 does, `set server addr` replaces an address but
# refuses a server that has none; the resolver gives such a server its container's address once it
# has been asked `resolves_after` times (never when that is null).
FAKE_DOCKER = r"""#!/usr/bin/env python3
import json, os, sys
fake = os.environ["FAKE"]
def load(name):
    with open(os.path.join(fake, name)) as f:
        return json.load(f)
args = sys.argv[1:]
if args[:2] == ["container", "inspect"]:
    address = load("containers.json").get(args[-1])
    if address is None:
        sys.exit(1)
    print(address)
    sys.exit(0)
assert args[0] == "exec" and args[2:4] == ["bash", "-c"], args
command = args[6]
with open(os.path.join(fake, "api.log"), "a") as log:
    log.write(command + "\n")
servers, containers = load("servers.json"), load("containers.json")
words = command.split()
if command == "show servers state slots":
    print("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state")
    for n, (name, server) in enumerate(servers.items(), 1):
        after = server.get("resolves_after")
        if server["addr"] == "-" and after is not None:
            server["resolves_after"] = after - 1
            if after <= 1:
                server["addr"] = containers[f"%s-{name}" % os.environ["BASE"]]
        print(f"3 slots {n} {name} {server['addr']} 2 {server['admin']} 1 1")
elif words[:2] == ["set", "server"] and words[2].startswith("slots/"):
    name = words[2].split("/")[1]
    if name not in servers:
        print("No such server.")
        sys.exit(0)
    server = servers[name]
    if words[3] == "addr":
        if server["addr"] == "-":
            print("Update for the current server address family is only supported through configuration file "
                  "by 'stats socket command'")
        else:
            print(f"IP changed from '{server['addr']}' to '{words[4]}', no need to change the port by 'stats socket command'")
            server["addr"] = words[4]
    elif words[3:5] == ["state", "ready"]:
        server["admin"] = 0
    else:
        sys.exit(2)
else:
    sys.exit(2)
with open(os.path.join(fake, "servers.json"), "w") as f:
    json.dump(servers, f)
"""


class Proxy:
    """A host where the hub's proxy runs, with a stand-in docker."""

    def __init__(self, root: Path, servers: dict, containers: dict):
        self.root = root
        (root / "bin").mkdir()
        (root / "bin" / "docker").write_text(FAKE_DOCKER)
        (root / "bin" / "docker").chmod(0o755)
        (root / "servers.json").write_text(json.dumps(servers))
        (root / "containers.json").write_text(json.dumps(containers))

    def point(self, slot: str, **values) -> subprocess.CompletedProcess:
        text = script({"proxy": f"{BASE}-proxy", "base": BASE, "network": NETWORK, "port": 4091, **proxy_values(),
                       **values, "slot": slot},
                      POINT_PROXY + "say() { printf 'run: %s\\n' \"$*\" >&2; }\npoint_proxy \"$slot\"\n")
        return subprocess.run(["bash", "-c", text], capture_output=True, text=True, timeout=30,
                              env={"PATH": f"{self.root / 'bin'}:/usr/bin:/bin", "FAKE": str(self.root),
                                   "BASE": BASE})

    def commands(self) -> list[str]:
        log = self.root / "api.log"
        return log.read_text().splitlines() if log.exists() else []

    def server(self, name: str) -> dict:
        return json.loads((self.root / "servers.json").read_text())[name]


def test_a_slot_the_proxy_holds_an_old_address_for_takes_the_new_one_at_once(tmp_path):
    """The address goes in through the runtime API, checked once, then the slot is ready: no waiting."""
    proxy = Proxy(tmp_path, {"blue": {"addr": "172.18.0.3", "admin": 1}, "green": {"addr": "172.18.0.4", "admin": 0}},
                  {f"{BASE}-blue": "172.18.0.7"})
    done = proxy.point("blue")
    assert done.returncode == 0, done.stderr
    assert proxy.commands() == ["set server slots/blue addr 172.18.0.7 port 4091", "show servers state slots",
                                "set server slots/blue state ready"]
    assert proxy.server("blue") == {"addr": "172.18.0.7", "admin": 0} and done.stderr == ""


def test_a_slot_the_proxy_has_no_address_for_takes_its_resolvers_first_answer(tmp_path):
    """HAProxy refuses an address for a server that has none: the slot is ready once the resolver's
    first answer gave it one, and the deploy says it waited."""
    proxy = Proxy(tmp_path, {"blue": {"addr": "-", "admin": 37, "resolves_after": 3}},
                  {f"{BASE}-blue": "172.18.0.7"})
    done = proxy.point("blue")
    assert done.returncode == 0, done.stderr
    assert proxy.server("blue")["addr"] == "172.18.0.7" and proxy.server("blue")["admin"] == 0
    assert proxy.commands()[-1] == "set server slots/blue state ready"
    assert re.fullmatch(rf"run: the proxy had no address for {BASE}-blue: its resolver found it at 172\.18\.0\.7 "
                        r"\d+ ms later\n", done.stderr), done.stderr


def test_a_slot_the_resolver_does_not_find_within_one_lookup_is_never_made_ready(tmp_path):
    proxy = Proxy(tmp_path, {"blue": {"addr": "-", "admin": 37, "resolves_after": None}},
                  {f"{BASE}-blue": "172.18.0.7"})
    done = proxy.point("blue", resolve_wait=1)
    assert done.returncode != 0
    assert f"the proxy had no address for {BASE}-blue, and its resolver did not find it at 172.18.0.7 within 1 s" \
        in done.stderr
    assert "set server slots/blue state ready" not in proxy.commands() and proxy.server("blue")["admin"] == 37


def test_a_container_without_an_address_or_a_proxy_that_refuses_fails_the_switch(tmp_path):
    proxy = Proxy(tmp_path, {"blue": {"addr": "172.18.0.3", "admin": 1}}, {})
    done = proxy.point("blue")
    assert done.returncode != 0 and f"run: {BASE}-blue has no address on {NETWORK}" in done.stderr
    assert proxy.commands() == [], "nothing was asked of the proxy"

    (tmp_path / "containers.json").write_text(json.dumps({f"{BASE}-green": "172.18.0.8"}))
    done = proxy.point("green")
    assert done.returncode != 0 and 'the proxy refused "set server slots/green addr 172.18.0.8 port 4091"' in done.stderr
    assert not any("state ready" in command for command in proxy.commands())


def resolver(config: str) -> dict[str, str]:
    """The settings of a HAProxy config's resolvers section, by name (`hold nx` -> `30s`)."""
    section = config.split("\nresolvers docker\n", 1)[1].split("\nfrontend ", 1)[0]
    return {" ".join(line.split()[:-1]): line.split()[-1] for line in section.splitlines()}


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s)", value).groups()
    return int(number) / (1000 if unit == "ms" else 1)


@pytest.mark.parametrize("live", ["blue", "green"])
def test_the_deploys_one_wait_on_the_resolver_is_one_lookup_of_its_config(live):
    """The wait covers one whole lookup as the proxy is configured (a question, then every retry of
    it), and an address missing from an answer is dropped at that answer: the resolver never holds
    on to an address a container had before."""
    settings = resolver(proxy_config(HUB, "staging", live, 14091, SERVING.deploy))
    lookup = seconds(settings["timeout resolve"]) + int(settings["resolve_retries"]) * seconds(settings["timeout retry"])
    assert LOOKUP_S == lookup
    assert re.search(rf"^resolve_wait={LOOKUP_S}$", run_script(HUB, "staging", IMAGE, 14091, RUNTIME, SERVING), re.M)
    assert seconds(settings["hold obsolete"]) == 0


def test_the_swarm_proxy_forgets_a_gone_task_at_its_next_answer():
    """On a Swarm, where the proxy finds every task by DNS: no hold outlasts one resolution, so a task
    gone (an update, a lost node) leaves the backend at the next answer, and a new one joins then."""
    settings = resolver(swarm_rendered()[2])
    every = seconds(settings["timeout resolve"])
    holds = {name: seconds(value) for name, value in settings.items() if name.startswith("hold ")}
    assert set(holds) == {"hold valid", "hold other", "hold refused", "hold nx", "hold timeout", "hold obsolete"}
    assert all(value <= every for value in holds.values()), holds
