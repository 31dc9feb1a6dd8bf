"""`scripts/workhub status` of a stack on a Swarm: a script rendered from the config that a manager
runs (it prints what Docker says of the stack's services, their tasks and the nodes, as Docker's own
JSON, and each hub's health path as its serving nodes' proxies answer it), and the pure functions
that read that output into one line per hub and one per node, as aligned tables.

What Docker prints is kept raw in the script and read here, so the reading is tested against outputs
recorded from a real Swarm (tests/fixtures/swarm-status/).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from components.config.models import StackConfig
from components.render.host.deploy import PROBE_FUNCTION
from components.render.shell import script
from components.render.swarm.stack import LABEL_PREFIX, namespace, service_name
from components.config.swarm import reach_address

# A line that starts a section of the script's output; every other line is one JSON document.
SECTION = "### "

_STATUS = PROBE_FUNCTION + r"""
section() { printf '%s%s\n' "$mark" "$*"; }
section nodes
docker node inspect --format '{{json .}}' $(docker node ls --quiet)
section services
ids=$(docker service ls --quiet --filter "label=com.docker.stack.namespace=$stack")
if [ -n "$ids" ]; then
  docker service inspect --format '{{json .}}' $ids
  section service-ls
  docker service ls --format '{{json .}}' --filter "label=com.docker.stack.namespace=$stack"
  section tasks
  docker service ps --no-trunc --format '{{json .}}' $ids
fi
section health
# A node whose proxy publishes on its loopback only is not reachable from here: unchecked.
for i in "${!hubs[@]}"; do
  for j in "${!serving[@]}"; do
    address=${serving[$j]}
    answer=unchecked
    [ -z "$address" ] || answer=$(probe "$address" "${host_ports[$i]}" "${health_paths[$i]}")
    printf '{"hub": "%s", "node": "%s", "answer": "%s"}\n' "${hubs[$i]}" "${address:-${serving_nodes[$j]}}" "$answer"
  done
done
"""


def status_script(config: StackConfig, stack: str) -> str:
    """The script a manager runs for `scripts/workhub status`: Docker's JSON of the nodes, of the
    stack's services (inspect, ls) and their tasks, and each hub's health path through every serving
    node's proxy (`{"hub", "node", "answer"}`: a status code, refused or no-answer)."""
    assert config.swarm is not None
    return script({
        "mark": SECTION,
        "stack": namespace(stack),
        "hubs": [hub.name for hub in config.hubs],
        "host_ports": [config.host_ports[hub.name] for hub in config.hubs],
        "health_paths": [hub.health_path for hub in config.hubs],
        "serving": [reach_address(config, node) or "" for node in config.swarm.nodes if node.labels.serve],
        "serving_nodes": [node.name for node in config.swarm.nodes if node.labels.serve],
    }, _STATUS)


def parse_output(text: str) -> dict[str, list[dict[str, Any]]]:
    """The script's output as its sections, each a list of the JSON documents in it."""
    sections: dict[str, list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line.startswith(SECTION):
            current = sections.setdefault(line[len(SECTION):].strip(), [])
        elif line.strip():
            current.append(json.loads(line))
    return sections


@dataclass(frozen=True)
class HubStatus:
    hub: str
    replicas: str        # tasks running (on nodes that are not down) / desired
    nodes: str           # the nodes its running tasks are on ("node2 x2"), and lost nodes that had one
    image: str
    health: str          # its health path through every serving node's proxy
    updated: str         # when its last rollout ended (or started), else when its service last changed
    update: str          # that rollout's state (and Docker's message when it did not complete), or NO_ROLLOUT


@dataclass(frozen=True)
class NodeStatus:
    node: str
    address: str
    role: str
    availability: str
    state: str
    labels: str


def short_image(image: str) -> str:
    """An image reference as `docker stack deploy --resolve-image always` pins it, with its digest
    cut to 12 hex digits: registry:5000/workhub/demo:v1@sha256:0123456789ab."""
    name, _, digest = image.partition("@")
    if digest.startswith("sha256:"):
        return f"{name}@{digest[:len('sha256:') + 12]}"
    return image


def _stamp(value: Any) -> str:
    """Docker's time as 2026-12-01T17:20:01 (UTC, seconds)."""
    return str(value)[:19] if value else "-"


def _health(answers: list[Mapping[str, Any]], addresses: Mapping[str, str]) -> str:
    checked = [a for a in answers if a["answer"] != "unchecked"]
    unchecked = [addresses.get(a["node"], a["node"]) for a in answers if a["answer"] == "unchecked"]
    note = f" ({', '.join(unchecked)}: publish on loopback, unchecked)" if unchecked else ""
    if not checked:
        return "-" + note if answers else "-"
    bad = [f"{addresses.get(a['node'], a['node'])}: {a['answer']}" for a in checked if a["answer"] != "200"]
    return (f"failing ({', '.join(bad)})" if bad else "ok") + note


# A service's last change that ran no rollout (it was created, scaled, or deployed unchanged): Docker
# keeps no UpdateStatus for it.
NO_ROLLOUT = "applied (no rollout)"


def _update(service: Mapping[str, Any]) -> str:
    status = service.get("UpdateStatus") or {}
    if not status:
        return NO_ROLLOUT
    state = status.get("State") or "-"
    if state in ("completed", "updating", "rollback_started"):
        return state
    message = status.get("Message")
    return f"{state}: {message}" if message else state


def hub_rows(config: StackConfig, stack: str, sections: Mapping[str, list[dict[str, Any]]]) -> list[HubStatus]:
    """One line per hub of the stack: its service's running/desired replicas, where its running tasks
    are, its image, its health through the proxies, and its last update; a hub whose service is not
    on the Swarm says so."""
    assert config.swarm is not None
    nodes = {node["ID"]: node["Description"]["Hostname"] for node in sections.get("nodes", [])}
    addresses = {node.address: node.name for node in config.swarm.nodes}
    addresses.update({reach_address(config, node): node.name for node in config.swarm.nodes
                      if reach_address(config, node)})
    services = {service["Spec"]["Name"]: service for service in sections.get("services", [])}
    listed = {row["Name"]: row for row in sections.get("service-ls", [])}
    rows = []
    for hub in config.hubs:
        name = service_name(stack, hub.name)
        answers = [a for a in sections.get("health", []) if a["hub"] == hub.name]
        service = services.get(name)
        if service is None:
            rows.append(HubStatus(hub.name, "-", "-", "-", _health(answers, addresses), "-", "not on the Swarm"))
            continue
        down = {node["Description"]["Hostname"] for node in sections.get("nodes", [])
                if node["Status"].get("State") == "down"}
        running: dict[str, int] = {}
        lost: set[str] = set()
        for task in sections.get("tasks", []):
            where = nodes.get(task.get("Node", ""), task.get("Node", "")) or "?"
            if not task["Name"].startswith(f"{name}.") or not str(task.get("CurrentState", "")).startswith("Running"):
                continue
            # A lost node's task stays Running in Docker's view (`docker service ls` counts it) until
            # the node reports again: shown apart, not counted.
            if where in down:
                lost.add(where)
            elif task.get("DesiredState") == "Running":
                running[where] = running.get(where, 0) + 1
        desired = str(listed.get(name, {}).get("Replicas", "?/?")).split(" ")[0].partition("/")[2] or "?"
        replicas = f"{sum(running.values())}/{desired}"
        placed = [node if count == 1 else f"{node} x{count}" for node, count in sorted(running.items())]
        placed += [f"lost: {node}" for node in sorted(lost)]
        rows.append(HubStatus(
            hub=hub.name, replicas=replicas, nodes=", ".join(placed) or "none",
            image=short_image(service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]),
            health=_health(answers, addresses),
            updated=_stamp((service.get("UpdateStatus") or {}).get("CompletedAt")
                           or (service.get("UpdateStatus") or {}).get("StartedAt") or service.get("UpdatedAt")),
            update=_update(service)))
    return rows


def _role(node: Mapping[str, Any]) -> str:
    if node["Spec"].get("Role") != "manager":
        return "worker"
    manager = node.get("ManagerStatus") or {}
    if manager.get("Leader"):
        return "manager (leader)"
    return f"manager ({manager.get('Reachability', 'unknown')})"


def _address(node: Mapping[str, Any]) -> str:
    """The node's address; a manager's from its Raft address when Docker reports 0.0.0.0 for it."""
    address = node["Status"].get("Addr") or "-"
    manager = (node.get("ManagerStatus") or {}).get("Addr")
    if address == "0.0.0.0" and manager:
        return manager.rsplit(":", 1)[0]
    return address


def node_rows(sections: Mapping[str, list[dict[str, Any]]]) -> list[NodeStatus]:
    """One line per node of the Swarm: its address, role (a manager's Raft reachability), availability,
    state and its workhub labels, by host name."""
    rows = []
    for node in sections.get("nodes", []):
        labels = node["Spec"].get("Labels") or {}
        shown = [f"{key[len(LABEL_PREFIX) + 1:]}" if value == "true" else f"{key[len(LABEL_PREFIX) + 1:]}={value}"
                 for key, value in sorted(labels.items()) if key.startswith(f"{LABEL_PREFIX}.")]
        others = [f"{key}={value}" for key, value in sorted(labels.items()) if not key.startswith(f"{LABEL_PREFIX}.")]
        rows.append(NodeStatus(
            node=node["Description"]["Hostname"], address=_address(node), role=_role(node),
            availability=node["Spec"].get("Availability", "-"), state=node["Status"].get("State", "-"),
            labels=",".join(shown + others) or "-"))
    return sorted(rows, key=lambda row: row.node)


HUB_COLUMNS = ["hub", "replicas", "nodes", "image", "health", "updated", "update"]
NODE_COLUMNS = ["node", "address", "role", "availability", "state", "labels"]
