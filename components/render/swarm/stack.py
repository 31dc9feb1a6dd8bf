"""The documents a stack runs from on a Docker Swarm, as data: the stack file `docker stack deploy`
reads, the proxy's HAProxy config, and the labels of each node. Pure functions of the same typed
config and hub data the single host's Compose files come from (components/render/host/documents.py).

The shape follows two limits of the Swarms workhub runs on (see docs/swarm.md):
- no IPVS in the kernel, so no virtual IPs and no routing mesh: every service is `endpoint_mode:
  dnsrr`, its tasks found by `tasks.<service>` in Docker's DNS;
- a start-first update of a service that publishes a host-mode port cannot place its new task (the
  port is taken), so hub services publish nothing. The proxy, a global service on the serving nodes,
  routes each hub's requests to the hub's tasks, re-resolved every second and health-checked, so a
  task that is starting, failing or stopping gets no new request.

And one limit of Swarm itself: a published port cannot name a host address (Swarm's port config has
no host IP; `docker stack deploy` refuses `host_ip`, and drops the address of a `ip:port:port`
short form with a warning), so it would listen on every interface of the node. So the proxy
publishes nothing either: a second global service, `publish`, runs the same HAProxy image in the
node's own network namespace (host networking), binds each hub's host port on the node's publish
address only (swarm_config.publish_address), and relays each connection, with its client's address
(PROXY protocol), over a unix socket to the proxy on the same node; the two share a node-local
volume for the sockets.

Hubs roll out start-first: the new task starts beside the old one, must pass its health check and
stay healthy for the monitor window, else Swarm rolls back. Secrets are Docker secrets (encrypted in
the Swarm's Raft log), mounted as files; their names carry a fingerprint of the value, so a new value
is a new secret and the service update that follows is a rollout like any other. No value is in
these documents.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from typing import Any, Mapping, Optional

from components.render.host.documents import (BACKEND, DOCKER_DNS, PROXY_API_PORT, PROXY_CONFIG, PROXY_DEFAULTS,
                                              literal, volume_mounts)
from components.config.models import FILE_SUFFIX, DeploySettings, Hub, StackConfig, SwarmConfig, SwarmNode, run_uid
from components.config.runtime import SECRETS_DIR, Runtime
from components.config.swarm import SERVICES, publish_address

# 3.9: the first whose schema has a service's pids limit (deploy.resources.limits.pids, Docker 20.10).
STACK_FILE_VERSION = "3.9"
NETWORK = "hubs"
PROXY_SERVICE, PUBLISH_SERVICE = SERVICES
# The stack file's name for Docker's predefined `host` network (the node's own network namespace).
HOST_NETWORK = "hostnet"
# Where the proxy and the publish relay of one node share their unix sockets: a node-local volume
# mounted over the image's /var/lib/haproxy, so it starts owned by the user the image runs as.
SOCKETS_DIR = "/var/lib/haproxy"
SOCKETS = "sockets"
# The node a publish task runs on, from Swarm's template, for its config's conditional blocks.
NODE_ENV = "WORKHUB_NODE"
LABEL_PREFIX = "workhub"
# Docker's longest secret or config name.
MAX_NAME = 64
# How many hex digits of a SHA-256 stand for the part of a name cut to fit MAX_NAME.
CUT_DIGITS = 12


def namespace(stack: str) -> str:
    """The Swarm stack (`docker stack deploy ... NAME`) a workhub stack runs as."""
    return f"workhub-{stack}"


def service_name(stack: str, hub: str) -> str:
    """The full name of a hub's service: what `tasks.<name>` resolves to its tasks' addresses."""
    return f"{namespace(stack)}_{hub}"


def versioned_name(what: str, version: str) -> str:
    """A Docker secret's or config's name: `<what>-<version>`, at most MAX_NAME characters. A `what`
    too long for that keeps its start and ends in a digest of the whole of it instead, so the name
    stays unique and still ends in `version`: a name that fits is left as it is."""
    room = MAX_NAME - len(version) - 1
    if len(what) > room:
        digest = hashlib.sha256(what.encode()).hexdigest()[:CUT_DIGITS]
        what = f"{what[:room - CUT_DIGITS - 1]}-{digest}"
    return f"{what}-{version}"


def secret_name(stack: str, hub: str, name: str, fingerprint: str) -> str:
    """The Docker secret holding one value of a hub's secret: a new value, a new name (Docker's secrets
    cannot change), named by the keyed fingerprint of the value, never by the value."""
    return versioned_name(f"{stack}-{hub}-{name}", fingerprint[:12])


def node_labels(node: SwarmNode) -> dict[str, str]:
    """The `workhub.*` labels workhub keeps on a node (`docker node update --label-add`)."""
    labels = {}
    if node.labels.serve:
        labels[f"{LABEL_PREFIX}.serve"] = "true"
    if node.labels.build:
        labels[f"{LABEL_PREFIX}.build"] = "true"
    labels.update({f"{LABEL_PREFIX}.data.{hub}": "true" for hub in node.labels.data})
    return labels


def _labels(hub: str, stack: str, role: str) -> dict[str, str]:
    return {"workhub.hub": hub, "workhub.stack": stack, "workhub.role": role}


def health_command(hub: Hub) -> list[str]:
    """The task's own health check: its health path answers 200 on its port. Node is in every hub's
    image (they start FROM the Node base image), and the only tool the check can count on."""
    probe = (f"require('http').get({{host:'127.0.0.1',port:{hub.port},path:'{hub.health_path}',timeout:2000}},"
             "r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))")
    return ["CMD", "node", "-e", probe]


def placement(hub: Hub, swarm: SwarmConfig) -> list[str]:
    """Where a hub's tasks may run: a hub with volumes on the node that holds them; any other off
    the build node (builds would starve it), unless there is no other node."""
    if hub.volumes:
        return [f"node.labels.{LABEL_PREFIX}.data.{hub.name} == true"]
    if len(swarm.nodes) > 1 and swarm.build_node() is not None:
        return [f"node.labels.{LABEL_PREFIX}.build != true"]
    return []


def _secret_key(hub: str, name: str) -> str:
    return f"{hub}_{name}"


def memory_mb(hub: Hub, swarm: SwarmConfig) -> Optional[int]:
    """A hub's memory limit in this Swarm stack: the stack's own (swarm.hubs.<hub>.memoryMb), else the hub's."""
    own = swarm.hub(hub.name).memory_mb
    return own if own is not None else hub.memory_mb


def hub_service(hub: Hub, stack: str, image: str, runtime: Runtime, swarm: SwarmConfig,
                deploy: DeploySettings) -> dict[str, Any]:
    """One hub's service: its image, settings, secrets as files, volumes, health check, and how the
    Swarm runs, places and rolls it out. Boxed as on one host (compose.boxed): its own uid and gid,
    no capability but those it declares, a pids limit, its memory limit; but `docker stack deploy`
    cannot set no-new-privileges (no Swarm service can before Docker 25, and the stack file has no
    key for it): the nodes' engines set it for every container (daemon.json `no-new-privileges`)."""
    settings = swarm.hub(hub.name)
    uid = run_uid(hub, stack)
    # Docker secrets are files only: a one-line secret reaches the container as a file too, named by
    # <NAME>_FILE as a multi-line one is on one host.
    env = {**runtime.env, **{name + FILE_SUFFIX: f"{SECRETS_DIR}/{name}" for name in runtime.secret_env}}
    monitor = f"{swarm.monitor_seconds}s"
    rollout = {"parallelism": 1, "delay": "0s", "order": "start-first", "monitor": monitor}
    service: dict[str, Any] = {
        "image": image,
        "user": f"{uid}:{uid}",
        "cap_drop": ["ALL"],
        **({"cap_add": list(hub.cap_add)} if hub.cap_add else {}),
        "environment": env,
        "networks": [NETWORK],
        "healthcheck": {
            "test": health_command(hub),
            "interval": f"{swarm.health_interval_seconds}s",
            "timeout": "3s",
            "retries": 3,
            "start_period": f"{deploy.health_timeout_seconds}s",
        },
        "stop_grace_period": f"{deploy.stop_grace_seconds}s",
        "deploy": {
            "mode": "replicated",
            "replicas": settings.replicas,
            "endpoint_mode": "dnsrr",
            "update_config": {**rollout, "failure_action": "rollback", "max_failure_ratio": 0},
            "rollback_config": {**rollout, "failure_action": "pause"},
            "restart_policy": {"condition": "any", "delay": "2s"},
            "labels": _labels(hub.name, stack, "hub"),
        },
    }
    constraints = placement(hub, swarm)
    if constraints:
        service["deploy"]["placement"] = {"constraints": constraints}
    limits: dict[str, Any] = {"pids": hub.pids_limit}
    memory = memory_mb(hub, swarm)
    if memory is not None:
        limits["memory"] = f"{memory}M"
    service["deploy"]["resources"] = {"limits": limits}
    if runtime.secret_names:
        # Only the hub's uid reads them.
        service["secrets"] = [{"source": _secret_key(hub.name, name), "target": name, "uid": str(uid),
                               "gid": str(uid), "mode": 0o400} for name in runtime.secret_names]
    if runtime.volumes:
        service["volumes"] = volume_mounts(runtime)
    return service


def sockets_volume(stack: str) -> str:
    """The node-local volume through which a node's publish relay reaches its proxy."""
    return f"{namespace(stack)}-proxy-sockets"


def socket_path(hub: Hub) -> str:
    """The unix socket the proxy listens on for a hub's requests, relayed by the publish service."""
    return f"{SOCKETS_DIR}/{hub.name}.sock"


def _on_serving_nodes(stack: str, role: str) -> dict[str, Any]:
    # Neither can start beside itself (the sockets, the host ports are taken), so both update
    # stop-first, one node at a time.
    return {
        "mode": "global",
        # No virtual IP: they need IPVS, and nothing connects to these services by name.
        "endpoint_mode": "dnsrr",
        "placement": {"constraints": [f"node.labels.{LABEL_PREFIX}.serve == true"]},
        "update_config": {"parallelism": 1, "delay": "5s", "order": "stop-first", "failure_action": "rollback",
                          "monitor": "10s"},
        "restart_policy": {"condition": "any", "delay": "2s"},
        "labels": _labels(role, stack, role),
    }


def proxy_service(config: StackConfig, stack: str) -> dict[str, Any]:
    """The proxy: HAProxy on every serving node, on the stack's overlay network, taking each hub's
    requests on a unix socket (from the publish relay on its node) and routing them to its tasks."""
    return {
        "image": config.proxy_image,
        "command": ["haproxy", "-f", PROXY_CONFIG],
        "networks": [NETWORK],
        "volumes": [{"type": "volume", "source": SOCKETS, "target": SOCKETS_DIR}],
        "configs": [{"source": PROXY_SERVICE, "target": PROXY_CONFIG, "mode": 0o444}],
        "deploy": _on_serving_nodes(stack, PROXY_SERVICE),
    }


def publish_service(config: StackConfig, stack: str) -> dict[str, Any]:
    """The publish relay: the proxy's image on every serving node, in the node's own network namespace
    (no published port, so Swarm opens nothing on any interface), binding each hub's host port on the
    node's publish address and relaying to the proxy's socket on the same node."""
    return {
        "image": config.proxy_image,
        "command": ["haproxy", "-f", PROXY_CONFIG],
        "networks": [HOST_NETWORK],
        # Swarm fills in the node's host name: the config's conditional blocks pick that node's address.
        "environment": {NODE_ENV: "{{.Node.Hostname}}"},
        "volumes": [{"type": "volume", "source": SOCKETS, "target": SOCKETS_DIR}],
        "configs": [{"source": PUBLISH_SERVICE, "target": PROXY_CONFIG, "mode": 0o444}],
        "deploy": _on_serving_nodes(stack, PUBLISH_SERVICE),
    }


def proxy_config_name(stack: str, text: str, role: str = PROXY_SERVICE) -> str:
    """The Docker config holding the proxy's (or the publish relay's) config: versioned by its content
    (configs cannot change)."""
    return versioned_name(f"{namespace(stack)}-{role}", hashlib.sha256(text.encode()).hexdigest()[:12])


PROXY_CONFIG_FILE = "haproxy.cfg"
"""Where the proxy's config lies beside the stack file when `docker stack deploy` reads them."""
PUBLISH_CONFIG_FILE = "publish.cfg"
"""Where the publish relay's config lies beside the stack file."""


def stack_file(config: StackConfig, stack: str, images: Mapping[str, str], runtimes: Mapping[str, Runtime],
               proxy_text: str) -> str:
    """The whole stack file: every hub's service, the proxy, their overlay network, the hubs' secrets
    (made beforehand, by name) and volumes, and the proxy's config (read from PROXY_CONFIG_FILE)."""
    assert config.swarm is not None
    services = {hub.name: hub_service(hub, stack, images[hub.name], runtimes[hub.name], config.swarm, config.deploy)
                for hub in config.hubs}
    services[PROXY_SERVICE] = proxy_service(config, stack)
    services[PUBLISH_SERVICE] = publish_service(config, stack)
    secrets = {_secret_key(hub.name, name): {"external": True, "name": secret_name(
        stack, hub.name, name, runtimes[hub.name].fingerprints[name])}
        for hub in config.hubs for name in runtimes[hub.name].secret_names}
    volumes = {volume.docker_name: {"name": volume.docker_name}
               for hub in config.hubs for volume in runtimes[hub.name].volumes}
    volumes[SOCKETS] = {"name": sockets_volume(stack)}
    publish_text = publish_config(config, stack)
    document: dict[str, Any] = {
        "version": STACK_FILE_VERSION,
        "services": services,
        "networks": {NETWORK: {"driver": "overlay"}, HOST_NETWORK: {"external": True, "name": "host"}},
        "configs": {
            PROXY_SERVICE: {"name": proxy_config_name(stack, proxy_text), "file": f"./{PROXY_CONFIG_FILE}"},
            PUBLISH_SERVICE: {"name": proxy_config_name(stack, publish_text, PUBLISH_SERVICE),
                              "file": f"./{PUBLISH_CONFIG_FILE}"},
        },
        "volumes": volumes,
    }
    if secrets:
        document["secrets"] = secrets
    return json.dumps(literal(document), indent=2)


def task_slots(replicas: int) -> int:
    """Servers the proxy keeps for a hub's tasks: its replicas twice over (a start-first update runs
    old and new side by side), and one more."""
    return 2 * max(replicas, 1) + 1


def proxy_config(config: StackConfig, stack: str) -> str:
    """The proxy's whole config: per hub, a frontend on its host port and a backend of its tasks,
    found by `tasks.<service>` in Docker's DNS (re-resolved every second: a new task is found, a
    stopped one dropped) and checked on their health path (a task gets requests only after
    `healthyPasses` answers of 200 in a row). A request whose connection fails (a task stopping) is
    sent to another task. Every value here is a validated name or number."""
    assert config.swarm is not None
    deploy = config.deploy
    lines = [
        f"# The proxy of stack {stack} on its Swarm, written by workhub: edits are overwritten.",
        "global",
        "    log stdout format raw daemon warning",
        f"    stats socket ipv4@127.0.0.1:{PROXY_API_PORT} level admin",
        "    stats timeout 30s",
        f"    hard-stop-after {max(deploy.stop_grace_seconds, 1) + 5}s",
        *PROXY_DEFAULTS,
        # A task that stops (an update, a lost node) refuses or closes: the request goes to another.
        "    option redispatch 1",
        # A health check's answer may take this long. Without it HAProxy allows only `inter`
        # (500 ms), and a task slowed by load would be taken out and put back over and over (503s).
        "    timeout check 2s",
        "resolvers docker",
        f"    nameserver docker {DOCKER_DNS}",
        "    accepted_payload_size 8192",
        "    resolve_retries 3",
        "    timeout resolve 1s",
        "    timeout retry 1s",
        # Tasks come and go: every answer is kept one second only, so the backend follows them.
        "    hold valid 1s",
        "    hold other 1s",
        "    hold refused 1s",
        "    hold nx 1s",
        "    hold timeout 1s",
        "    hold obsolete 1s",
    ]
    for hub in config.hubs:
        name = f"{BACKEND}-{hub.name}"
        lines += [
            f"frontend {hub.name}",
            # The publish relay on this node sends each connection here with its client's address.
            f"    bind unix@{socket_path(hub)} mode 600 accept-proxy",
            f"    default_backend {name}",
            f"backend {name}",
            "    option httpchk",
            f"    http-check send meth GET uri {hub.health_path}",
            "    http-check expect status 200",
            f"    default-server check inter {deploy.health_interval_ms}ms fall 2 rise {deploy.healthy_passes} "
            "resolvers docker init-addr none resolve-prefer ipv4",
            f"    server-template task {task_slots(config.swarm.hub(hub.name).replicas)} "
            f"tasks.{service_name(stack, hub.name)}:{hub.port}",
        ]
    return "\n".join(lines) + "\n"


def _bind_address(address: str, port: int) -> str:
    """HAProxy's spelling of an address and port, its family named (the port follows the last ':')."""
    family = "ipv6" if ipaddress.ip_address(address).version == 6 else "ipv4"
    return f"{family}@{address}:{port}"


def publish_config(config: StackConfig, stack: str) -> str:
    """The publish relay's whole config: on each serving node (a conditional block on the node's
    host name, which Swarm puts in WORKHUB_NODE), a frontend per hub bound to the hub's host port on
    that node's publish address, relaying every connection as it is (TCP, with the client's address
    in a PROXY protocol header) to the proxy's socket for the hub. A connection the proxy cannot take
    (it is restarting) is tried again. Every value here is a validated name, address or number."""
    assert config.swarm is not None
    lines = [
        f"# The publish relay of stack {stack} on its Swarm, written by workhub: edits are overwritten.",
        "global",
        "    log stdout format raw daemon warning",
        "defaults",
        "    mode tcp",
        "    log global",
        "    timeout connect 5s",
        # The proxy behind ends idle and slow connections itself; these only outlast its own.
        "    timeout client 1h",
        "    timeout server 1h",
        "    retries 3",
    ]
    for node in (node for node in config.swarm.nodes if node.labels.serve):
        address = publish_address(config, node)
        assert address is not None  # swarm_problems refuses a serving node without one
        lines.append(f'.if streq("${NODE_ENV}","{node.name}")')
        for hub in config.hubs:
            lines += [
                f"frontend {hub.name}",
                f"    bind {_bind_address(address, config.host_ports[hub.name])}",
                f"    default_backend proxy-{hub.name}",
            ]
        lines.append(".endif")
    for hub in config.hubs:
        lines += [
            f"backend proxy-{hub.name}",
            f"    server proxy unix@{socket_path(hub)} send-proxy-v2",
        ]
    return "\n".join(lines) + "\n"
