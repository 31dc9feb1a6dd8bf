"""The documents a hub runs from on the host, as data: its containers' Compose files and its proxy's
HAProxy config. Pure functions of typed config; the deploy script only writes the text they give.

Each hub of each stack has two container slots, blue and green, and a proxy of its own (HAProxy)
that owns the hub's host port. A deploy starts the new version in the slot that is not live, and
the proxy's runtime API switches the backend to it once it is healthy (no reload: no client
connection, fresh or kept-alive, notices); the old slot then drains and stops. The proxy reaches a
slot by its container name on the stack's Docker network (re-resolved through Docker's DNS, so a
container restarted with another address is found again; a deploy hands it the new container's
address itself), and nothing but the proxy publishes a port. Its config file names the live slot
too, so after a restart or a reboot it serves from there.

Compose files are JSON (a subset of YAML, so Compose reads them as they are) and every `$` in them
is doubled, since Compose would otherwise read `$NAME` in a value as one of its variables.
"""

from __future__ import annotations

import json
from typing import Any

from components.config.models import DeploySettings, Hub, run_uid
from components.config.runtime import Runtime

SLOTS = ("blue", "green")
# Where the proxy's config directory is mounted in its container.
PROXY_CONFIG_DIR = "/etc/workhub"
PROXY_CONFIG = f"{PROXY_CONFIG_DIR}/haproxy.cfg"
# The proxy's runtime API, on its container's own loopback only (each proxy has its own network
# namespace), reached with `docker exec`.
PROXY_API_PORT = 9999
# The backend that holds the two slots, and the line of the config that says which one is live.
BACKEND = "slots"
LIVE_MARK = "# workhub live slot: "
# Docker's DNS inside a container on a user-defined network.
DOCKER_DNS = "127.0.0.11:53"
# The proxy's resolver asks Docker's DNS for each slot's name every RESOLVE_EVERY_S seconds; a
# question goes unanswered when Docker forwards a name it does not know to a server that stays
# silent, and is asked again RESOLVE_TRIES times, RESOLVE_RETRY_S seconds apart.
RESOLVE_EVERY_S = 1
RESOLVE_TRIES = 3
RESOLVE_RETRY_S = 1
# How long one lookup can take: a name whose container runs is found within it.
LOOKUP_S = RESOLVE_EVERY_S + RESOLVE_TRIES * RESOLVE_RETRY_S
# How long the proxy keeps the last address it had for a name Docker's DNS no longer answers for
# (its container restarting), before the server goes into maintenance.
HOLD_S = 30
# How long a graceful reload may take before the new process answers the runtime API.
RELOAD_WAIT_S = 10


# The proxy's defaults section, on one host and on a Swarm.
PROXY_DEFAULTS = [
    "defaults",
    "    mode http",
    "    log global",
    "    option dontlognull",
    "    option forwardfor",
    # On a reload, an idle kept-alive client connection of the old process is closed only after
    # its next answer (which says so), never under a request on its way.
    "    option idle-close-on-response",
    "    timeout connect 5s",
    "    timeout client 60s",
    "    timeout http-request 30s",
    "    timeout http-keep-alive 60s",
    # A long request (an upload, a report) runs as long as the hub takes, up to this.
    "    timeout server 300s",
    "    timeout tunnel 1h",
    # A connection to the live container that fails (Docker restarting it) is tried again.
    "    retries 3",
    "    retry-on conn-failure empty-response",
]


def base_name(hub: str, stack: str) -> str:
    """What names a hub's things in one stack: its files on the host, and (with a suffix) its containers."""
    return f"{hub}-{stack}"


def slot_container(hub: str, stack: str, slot: str) -> str:
    return f"{base_name(hub, stack)}-{slot}"


def proxy_container(hub: str, stack: str) -> str:
    return f"{base_name(hub, stack)}-proxy"


def network_name(stack: str) -> str:
    """The Docker network a stack's hub containers and proxies share (and no other stack's)."""
    return f"workhub-{stack}"


def _labels(hub: str, stack: str, role: str) -> dict[str, str]:
    return {"workhub.hub": hub, "workhub.stack": stack, "workhub.role": role}


def literal(value: Any) -> Any:
    """`value` with every `$` in its text doubled, so Compose reads it literally."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, dict):
        return {literal(key): literal(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [literal(inner) for inner in value]
    return value


def _network(stack: str) -> dict[str, Any]:
    return {network_name(stack): {"external": True, "name": network_name(stack)}}


NO_NEW_PRIVILEGES = "no-new-privileges:true"


def boxed(hub: Hub, stack: str) -> dict[str, Any]:
    """What boxes a hub's container in (Compose's keys): its own uid and gid (no host account's, and
    not root), no capability but those it declares, no way to gain privileges (setuid files), a
    pids limit, and its memory limit when it has one."""
    uid = run_uid(hub, stack)
    box: dict[str, Any] = {"user": f"{uid}:{uid}", "cap_drop": ["ALL"]}
    if hub.cap_add:
        box["cap_add"] = list(hub.cap_add)
    box["security_opt"] = [NO_NEW_PRIVILEGES]
    box["pids_limit"] = hub.pids_limit
    if hub.memory_mb is not None:
        box["mem_limit"] = f"{hub.memory_mb}m"
    return box


def volume_mounts(runtime: Runtime) -> list[dict[str, Any]]:
    """A hub's named volumes as mounts. `nocopy`: Docker would give an empty volume the ownership of
    the image's directory at each mount (the image's user, not the hub's uid); the deploy makes a new
    volume's content once and gives its files to the hub's uid (see deploy.REOWN)."""
    return [{"type": "volume", "source": volume.docker_name, "target": volume.target, "volume": {"nocopy": True}}
            for volume in runtime.volumes]


def slot_compose(hub: Hub, stack: str, slot: str, image: str, runtime: Runtime, deploy: DeploySettings) -> str:
    """The Compose file of one slot of a hub: its image, its env file (settings and one-line
    secrets, read by Compose literally), its named volumes, the stack's network, a restart policy,
    the time it has to finish its requests when stopped, and its box (`boxed`). It publishes no
    port: the proxy does."""
    name = slot_container(hub.name, stack, slot)
    service: dict[str, Any] = {
        "image": image,
        "container_name": name,
        "hostname": name,
        "restart": "unless-stopped",
        "profiles": [stack],
        "env_file": [{"path": f"../env/{name}.env", "format": "raw"}],
        "networks": [network_name(stack)],
        "stop_grace_period": f"{deploy.stop_grace_seconds}s",
        "labels": {**_labels(hub.name, stack, "hub"), "workhub.slot": slot},
        **boxed(hub, stack),
    }
    if runtime.volumes:
        service["volumes"] = volume_mounts(runtime)
    document: dict[str, Any] = {"services": {name: service}, "networks": _network(stack)}
    if runtime.volumes:
        document["volumes"] = {volume.docker_name: {"external": True, "name": volume.docker_name}
                               for volume in runtime.volumes}
    return json.dumps(literal(document), indent=2)


def proxy_compose(hub: Hub, stack: str, host_port: int, publish_address: str, proxy_image: str) -> str:
    """The Compose file of a hub's proxy: HAProxy, publishing the hub's host port, reading its config
    from the host (so it comes back after a reboot serving the slot it served)."""
    name = proxy_container(hub.name, stack)
    service = {
        "image": proxy_image,
        "container_name": name,
        "restart": "unless-stopped",
        "profiles": [stack],
        # The image's entrypoint runs it in the foreground as a master and worker (-W -db).
        "command": ["haproxy", "-f", PROXY_CONFIG],
        "ports": [{"target": host_port, "published": str(host_port), "host_ip": publish_address, "protocol": "tcp"}],
        "volumes": [{"type": "bind", "source": f"../proxy/{base_name(hub.name, stack)}", "target": PROXY_CONFIG_DIR,
                     "read_only": True}],
        "networks": [network_name(stack)],
        "labels": _labels(hub.name, stack, "proxy"),
    }
    return json.dumps(literal({"services": {name: service}, "networks": _network(stack)}), indent=2)


def proxy_config(hub: Hub, stack: str, live: str, host_port: int, deploy: DeploySettings) -> str:
    """The proxy's whole config with the slot `live` serving: one frontend on the host port, one
    backend with both slots as servers, the one not live in maintenance. A deploy switches the two
    through the runtime API, then writes this file for the next start; requests in flight on the
    old slot finish there. When anything else in it changes (the hub's port, a timeout), the deploy
    reloads the proxy gracefully first. Every value here is a validated name or number."""
    servers = []
    for slot in SLOTS:
        address = f"{slot_container(hub.name, stack, slot)}:{hub.port}"
        # Found through Docker's DNS while the proxy runs (a restarted container again; a deploy sets
        # the address itself); the live one also by the libc resolver at start, so a new proxy
        # serves at once. Not the other: a name with no container behind it can take Docker's DNS
        # seconds to give up on.
        options = "resolvers docker " + ("init-addr libc,none" if slot == live else "init-addr none disabled")
        servers.append(f"    server {slot} {address} {options}")
    return "\n".join([
        f"{LIVE_MARK}{live}",
        f"# The proxy of hub {hub.name} in stack {stack}, written by workhub: edits are overwritten.",
        "global",
        "    log stdout format raw daemon warning",
        f"    stats socket ipv4@127.0.0.1:{PROXY_API_PORT} level admin",
        # A reload hands the listening sockets to the new process through this one: none is closed.
        "    stats socket /var/lib/haproxy/admin.sock mode 600 level admin expose-fd listeners",
        "    stats timeout 30s",
        # A config reload (only when this file changes other than by a switch) leaves old workers
        # this long to finish their requests.
        f"    hard-stop-after {max(deploy.stop_grace_seconds, 1) + 5}s",
        *PROXY_DEFAULTS,
        "resolvers docker",
        f"    nameserver docker {DOCKER_DNS}",
        # A deploy gives the proxy each new container's address through the runtime API; the
        # resolver finds a live container Docker started again elsewhere (after a crash, a restore
        # or a reboot) at its next answer. An answer that fails keeps the last address a while (a
        # container briefly gone from the DNS is still tried, then retried); an address missing
        # from an answer is dropped at once (held on to, it kept a container back at another
        # address from being found: `hold obsolete 30s` took a restored hub away for 30 s).
        f"    timeout resolve {RESOLVE_EVERY_S}s",
        f"    resolve_retries {RESOLVE_TRIES}",
        f"    timeout retry {RESOLVE_RETRY_S}s",
        "    hold valid 10s",
        f"    hold other {HOLD_S}s",
        f"    hold refused {HOLD_S}s",
        f"    hold nx {HOLD_S}s",
        f"    hold timeout {HOLD_S}s",
        "    hold obsolete 0s",
        "frontend hub",
        f"    bind :{host_port}",
        f"    default_backend {BACKEND}",
        f"backend {BACKEND}",
        *servers,
        "",
    ])


def env_file(runtime: Runtime) -> str:
    """The plain part of a slot's env file, one `NAME=value` line each (Compose's raw format: no
    quoting, no variables); the deploy script appends the one-line secrets."""
    return "".join(f"{name}={value}\n" for name, value in runtime.env.items())

