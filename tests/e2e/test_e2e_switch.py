"""The switch does not wait on Docker's DNS, end to end on the test host with the real engine, sshd
and Docker. A deploy tells the hub's proxy where its new container is (the address Docker gave it,
through the proxy's runtime API); the proxy's own resolver is left what only it can do: find a live
container that Docker started again at another address (after a crash, a restore or a reboot).

Both cases below are what failed `tests/e2e/test_e2e_drift.py` on a new machine and kept a restored
hub away for 30 s: the resolver held on to the address a name had before its container went away
for 30 s (`hold obsolete`), so the same name back at another address within those 30 s was not
found, and the switch gave up after 10 s.

The deploys here also show an app that ignores SIGTERM said once, with the fix, by the deploy that
replaces it (it costs that deploy the 2 s of stopGraceSeconds)."""

from __future__ import annotations

import re
import time

import pytest
from pulumi import automation as auto

from tests.e2e_fixtures import (RUN_ID, SIDE_USER, docker, health, new_local_stack, on_the_side_host,
                                 serving_container)
from workhub.engine import print_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Beside the one-host tests, on a test host of its own (tests/e2e_fixtures.py: on_the_side_host).
test_host, host_state, beside_the_one_host = on_the_side_host()

HUB = {"name": "wbhubmanager", "context": "WBHubManager", "port": 4090, "healthPath": "/health",
       "stackEnv": ["PUBLIC_URL", "NODE_OPTIONS"]}
# NODE_OPTIONS that keep the app from handling SIGTERM (its process.on takes no handler for it):
# Node as PID 1 then ignores it, as an app without a handler of its own does.
PLAIN_NODE = "--max-old-space-size=256"
IGNORE_SIGTERM = ("--import=data:text/javascript,const{on}=process;process.on=function(s,...a){"
                  "if(s==='SIGTERM'||s==='SIGINT')return(this);return(on.call(this,s,...a))}")
DEPLOY = {"healthTimeoutSeconds": 30, "healthIntervalMs": 300, "stopGraceSeconds": 2}
STACK = "sideswitch"
NETWORK = f"workhub-{STACK}"
# What the resolver held a vanished address for before; a switch or a restart that takes this long
# has waited on it.
OLD_HOLD_S = 30


def address(container: str) -> str:
    """The container's address on the stack's network."""
    return docker("inspect", "--format", f'{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}', container)


def squat(name: str) -> str:
    """Start a container on the stack's network (it takes the lowest free address, as a hub of the
    same stack starting beside this one would); its address."""
    docker("run", "--detach", "--name", name, "--network", NETWORK, "--entrypoint", "sleep", "node:20-bookworm-slim",
           "infinity")
    return address(name)


def new_setting(stack: auto.Stack, value: str, node_options: str = PLAIN_NODE) -> None:
    """A new value of the hub's per-stack setting: the next `up` deploys a new container, no build."""
    stack.set_config("workhub:env.wbhubmanager.PUBLIC_URL", auto.ConfigValue(value), path=True)
    stack.set_config("workhub:env.wbhubmanager.NODE_OPTIONS", auto.ConfigValue(node_options), path=True)


def test_a_slot_back_at_another_address_serves_at_once(tmp_path, toolchain, test_host, npm_registry):
    """A deploy into the slot whose container left seconds ago, now at another address, switches
    within seconds of the new container being healthy; so does a live container stopped and started
    again at another address, with no deploy at all."""
    engine, stack = new_local_stack(tmp_path, test_host, npm_registry, hubs=[HUB], deploy=DEPLOY, name=STACK,
                                    overrides={"workhub:env.wbhubmanager.NODE_OPTIONS": PLAIN_NODE})
    squatters: list[str] = []
    try:
        url = stack.up(on_output=print_line, color="never").outputs["hubs"].value["wbhubmanager"]["url"]
        first = serving_container("wbhubmanager", STACK, SIDE_USER)
        before = address(first)
        # The second container's app ignores SIGTERM: the deploy that replaces it (the next) says so,
        # once; this one, whose old container stopped on SIGTERM, does not.
        new_setting(stack, "http://127.0.0.1/second", IGNORE_SIGTERM)
        second = stack.up(on_output=print_line, color="never")
        assert "ignored SIGTERM" not in second.stdout, second.stdout
        ignoring = serving_container("wbhubmanager", STACK, SIDE_USER)
        assert ignoring != first, "the deploy went to the other slot"

        # 1. The next deploy goes back to `first`'s slot moments after its container was removed, and
        # the address it had is taken: the new container gets another one.
        squatters.append(f"switch-squatter-{RUN_ID}-1")
        assert squat(squatters[-1]) == before, "another container took the address the slot had"
        new_setting(stack, "http://127.0.0.1/third")
        up = stack.up(on_output=print_line, color="never")
        assert serving_container("wbhubmanager", STACK, SIDE_USER) == first and address(first) != before
        note = (f"run: note: {ignoring} ignored SIGTERM: Docker killed it (exit code 137) after the 2 s of "
                "workhub:deploy.stopGraceSeconds")
        assert note in up.stdout, up.stdout
        assert health(url) == 200
        took = int(re.findall(r"switched (\d+) ms after it was healthy", up.stdout)[-1])
        print(f"switched {took} ms after the new container was healthy")
        assert took < 5000, f"the switch took {took} ms: it waited on the proxy's DNS resolver"

        # 2. The live container stops and starts again at another address (what a restore does to it,
        # and Docker's restart after a crash): the proxy's resolver finds it there at its next answer.
        live = first
        was = address(live)
        docker("stop", "--time", "1", live)
        for n in range(2, 10):
            squatters.append(f"switch-squatter-{RUN_ID}-{n}")
            if squat(squatters[-1]) == was:
                break
        else:
            pytest.fail(f"no container took {live}'s address {was}")
        stopped = time.monotonic()
        docker("start", live)
        assert address(live) != was
        while time.monotonic() - stopped < OLD_HOLD_S + 10 and health_or_none(url) != 200:
            time.sleep(0.1)
        away = time.monotonic() - stopped
        print(f"{live} answered through the proxy {away:.1f} s after it started again at another address")
        assert health_or_none(url) == 200 and away < 10, f"the hub came back through its proxy after {away:.1f} s"
    finally:
        for name in squatters:
            docker("rm", "--force", name, check=False)
        stack.destroy(color="never")


def health_or_none(url: str) -> int:
    """The hub's health status through its proxy, or 0 when nothing answers."""
    try:
        return health(url)
    except OSError:
        return 0
