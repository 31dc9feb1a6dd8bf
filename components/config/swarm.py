"""A stack that targets a Docker Swarm instead of one host: its nodes, their roles, and how each hub
runs there (`workhub:swarm`, typed as `config.SwarmConfig`). Validated with the rest of the stack
config, every problem naming its key and its fix; a stack without this section is one host, as before.

```yaml
workhub:swarm:
  user: deploy                      # the SSH user on every node, allowed to use Docker
  managers: [node1, node2, node3]   # Raft managers (1, 3 or 5); workhub inits the Swarm on the first
  nodes:
    - name: node1                   # the node's host name, as `docker node ls` shows it
      address: 10.0.0.11
      hostKey: ssh-ed25519 AAAA...
      labels: {serve: true, build: true, data: [wbsaleshub]}
  hubs:
    wbhubmanager: {replicas: 2, memoryMb: 512}
```

Labels say where things run: `serve` nodes run the proxy (it publishes the hubs' host ports there),
the one `build` node builds the host-built hubs (one build at a time, its warm npm cache), and
`data` names the hubs whose volumes live on that node: such a hub is pinned there, so it keeps one
replica. In a Swarm stack, `workhub:host` is not set: the build node is the host the build steps
reach.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Mapping, Optional

from components.config.models import NAMESPACE, StackConfig, SwarmNode, built_hubs, member, quoted
from components.config.checks import Problem, fix_for, path_arg, repeats
from components.constants import PULUMI_CLI

# The stack's own services besides its hubs' (components/render/swarm/stack.py): no hub may take their names.
SERVICES = ("proxy", "publish")
# The ports Swarm's nodes use between them: no hub may take one of them as its host port.
SWARM_PORTS = {2377: "Swarm's cluster management (2377/tcp)", 7946: "Swarm's node gossip (7946/tcp+udp)",
               4789: "Swarm's overlay network traffic (VXLAN, 4789/udp)"}


def _same_address(address: str) -> str:
    """`address` as two spellings of one address compare: an IP address in its short form, a name in lower case."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address.lower().rstrip(".")


def derive_host(values: Mapping[str, Any], stack: str) -> tuple[dict[str, Any], list[Problem]]:
    """The config values with `host` made from the Swarm's build node (or first manager), when the
    stack targets a Swarm; and the problem of a stack that sets both. The typed config then has one
    host for the build steps either way, declared once."""
    swarm = values.get("swarm")
    if swarm is None:
        return dict(values), []
    problems = []
    if "host" in values:
        problems.append(Problem(f"{NAMESPACE}:host", "is set, but this stack targets a Swarm (workhub:swarm): "
                                "its nodes are in workhub:swarm.nodes",
                                f"{PULUMI_CLI} config rm --stack {stack} {NAMESPACE}:host"))
    nodes = swarm.get("nodes") if isinstance(swarm, Mapping) else None
    nodes = [node for node in nodes if isinstance(node, Mapping)] if isinstance(nodes, list) else []
    managers = swarm.get("managers") if isinstance(swarm, Mapping) else None
    first = managers[0] if isinstance(managers, list) and managers else None
    chosen = next((node for node in nodes if isinstance(node.get("labels"), Mapping) and node["labels"].get("build")
                   is True), None) or next((node for node in nodes if node.get("name") == first), None) \
        or (nodes[0] if nodes else {})
    # Stand-ins where the node's own value is missing or wrong: that problem is reported at its
    # swarm.nodes key, and the derived host is dropped with the whole config.
    host = {"address": chosen.get("address", "unset"), "user": swarm.get("user", "unset")
            if isinstance(swarm, Mapping) else "unset", "port": chosen.get("port", 22), "hostKey": chosen.get("hostKey")}
    return {**values, "host": host}, problems


def publish_address(config: StackConfig, node: SwarmNode) -> Optional[str]:
    """The address of `node` its proxy publishes the hubs' host ports on: its own publishAddress, else
    the stack's workhub:publishAddress when the stack sets it (127.0.0.1: a web server on each
    node fronts them; 0.0.0.0: every interface), else the node's address when it is an IP address;
    None when it has none of them."""
    if node.publish_address is not None:
        return node.publish_address
    if "publish_address" in config.model_fields_set:
        return config.publish_address
    try:
        return str(ipaddress.ip_address(node.address))
    except ValueError:
        return None


def reach_address(config: StackConfig, node: SwarmNode) -> Optional[str]:
    """Where others reach the hubs through `node`'s proxy (the URLs, `status`): its publish address,
    the node's address when it publishes on every interface, None when only the node itself can
    (a loopback address)."""
    address = publish_address(config, node)
    if address is None:
        return None
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified:
        return node.address
    return None if ip.is_loopback else address


def without_derived_host(problems: list[Problem]) -> list[Problem]:
    """The problems, but those of a derived host: the same values are checked under workhub:swarm."""
    return [problem for problem in problems if not problem.key.startswith(f"{NAMESPACE}:host.")]


def swarm_problems(config: StackConfig, stack: str) -> list[Problem]:
    """Rules across the Swarm's fields and the hubs: node names once each, managers among the nodes,
    one build node when a hub builds on a host, a serving node, an image registry for the nodes, each hub with volumes on exactly one
    data node and kept at one replica, and no host port on a port Swarm's nodes use."""
    swarm = config.swarm
    if swarm is None:
        return []
    problems: list[Problem] = []
    key = f"{NAMESPACE}:swarm"
    for index, first in repeats([node.name for node in swarm.nodes]):
        problems.append(Problem(f"{key}.nodes[{index}].name", f"{swarm.nodes[index].name} is also swarm.nodes[{first}]",
                                fix_for(f"swarm.nodes[{index}].name", stack)))
    for index, first in repeats([_same_address(node.address) for node in swarm.nodes]):
        problems.append(Problem(f"{key}.nodes[{index}].address", f"{swarm.nodes[index].address} is also the address "
                                f"of swarm.nodes[{first}] ({swarm.nodes[first].name}): each node is a host of its "
                                "own, which the other nodes and workhub reach at its address",
                                fix_for(f"swarm.nodes[{index}].address", stack)))
    names = {node.name for node in swarm.nodes}
    if not swarm.managers:
        problems.append(Problem(f"{key}.managers", "names no node; a Swarm needs at least one manager",
                                f"{PULUMI_CLI} config set --stack {stack} {path_arg('swarm.managers[0]')} <node name>"))
    for index, name in enumerate(swarm.managers):
        if name not in names:
            problems.append(Problem(f"{key}.managers[{index}]", f"{quoted(name)} is not a node in workhub:swarm.nodes",
                                    f"add a node named {quoted(name)} to workhub:swarm.nodes, or {PULUMI_CLI} config set --stack "
                                    f"{stack} {path_arg(f'swarm.managers[{index}]')} <node name>"))
        elif swarm.managers.index(name) != index:
            problems.append(Problem(f"{key}.managers[{index}]", f"{name} is named twice",
                                    f"{PULUMI_CLI} config rm --stack {stack} {path_arg(f'swarm.managers[{index}]')}"))
    label_fix = PULUMI_CLI + " config set --stack {stack} {path} true"
    for index, node in enumerate(swarm.nodes):
        if node.labels.serve and publish_address(config, node) is None:
            path = f"swarm.nodes[{index}].publishAddress"
            problems.append(Problem(f"{NAMESPACE}:{path}", f"is not set, and node {node.name}'s address ({node.address}) "
                                    "is a name, not an address its proxy can publish the hubs' host ports on",
                                    f"{PULUMI_CLI} config set --stack {stack} {path_arg(path)} <the node's "
                                    "private IP address>"))
    if not any(node.labels.serve for node in swarm.nodes):
        problems.append(Problem(f"{key}.nodes", "has no node labelled serve: the proxy that publishes the hubs' host "
                                "ports runs on serving nodes",
                                label_fix.format(stack=stack, path=path_arg("swarm.nodes[<n>].labels.serve"))))
    builders = [index for index, node in enumerate(swarm.nodes) if node.labels.build]
    host_built = [hub.name for hub in built_hubs(config) if hub.build_mode == "remote"]
    if host_built and not builders:
        problems.append(Problem(f"{key}.nodes", f"has no node labelled build, but {', '.join(host_built)} build(s) "
                                "on a host (buildMode: remote)",
                                label_fix.format(stack=stack, path=path_arg("swarm.nodes[<n>].labels.build"))))
    for index in builders[1:]:
        problems.append(Problem(f"{key}.nodes[{index}].labels.build", f"is also set on swarm.nodes[{builders[0]}]: one "
                                "node builds, one build at a time, with its warm npm cache",
                                f"{PULUMI_CLI} config rm --stack {stack} {path_arg(f'swarm.nodes[{index}].labels.build')}"))
    if config.registry is None:
        problems.append(Problem(f"{NAMESPACE}:registry.server", "is not set, but this stack targets a Swarm: every "
                                "node pulls the hubs' images from the stack's image registry",
                                fix_for("registry.server", stack)))
    hubs = {hub.name: hub for hub in config.hubs}
    for index, hub in enumerate(config.hubs):
        if hub.name in SERVICES:
            problems.append(Problem(f"{NAMESPACE}:hubs[{index}].name", f"{hub.name} is the name of the stack's "
                                    f"{hub.name} service on a Swarm", "give the hub another name in workhub:hubs "
                                    "in Pulumi.yaml"))
    holders: dict[str, int] = {}
    for index, node in enumerate(swarm.nodes):
        for position, name in enumerate(node.labels.data):
            path = f"swarm.nodes[{index}].labels.data[{position}]"
            rm = f"{PULUMI_CLI} config rm --stack {stack} {path_arg(path)}"
            if name not in hubs:
                problems.append(Problem(f"{NAMESPACE}:{path}", f"{quoted(name)} names no hub in workhub:hubs", rm))
            elif not hubs[name].volumes:
                problems.append(Problem(f"{NAMESPACE}:{path}", f"hub {name} has no volumes to keep here", rm))
            elif name in holders:
                problems.append(Problem(f"{NAMESPACE}:{path}", f"hub {name}'s data is also on swarm.nodes"
                                        f"[{holders[name]}]; a volume lives on one node", rm))
            holders.setdefault(name, index)
    for name, hub in hubs.items():
        if hub.volumes and name not in holders:
            problems.append(Problem(f"{key}.nodes", f"no node holds hub {name}'s volumes ({', '.join(hub.volumes)}): "
                                    "a hub with volumes is pinned to the node that keeps them",
                                    f"{PULUMI_CLI} config set --stack {stack} "
                                    f"{path_arg('swarm.nodes[<n>].labels.data[0]')} {name}"))
    for name, settings in swarm.hubs.items():
        path = f"swarm.hubs{member(name)}"
        if name not in hubs:
            problems.append(Problem(f"{NAMESPACE}:{path}", "names no hub in workhub:hubs",
                                    f"{PULUMI_CLI} config rm --stack {stack} {path_arg(path)}"))
        elif settings.replicas > 1 and hubs[name].volumes:
            problems.append(Problem(f"{NAMESPACE}:{path}.replicas", f"is {settings.replicas}, but hub {name} keeps "
                                    f"its data in node-local volumes ({', '.join(hubs[name].volumes)}), which one "
                                    "task on one node can use",
                                    f"{PULUMI_CLI} config set --stack {stack} {path_arg(f'{path}.replicas')} 1; or "
                                    "move the hub's data to a service of its own (a database) and remove its "
                                    "volumes from workhub:hubs in Pulumi.yaml"))
    for name, port in config.host_ports.items():
        path = f"hostPorts{member(name)}"
        at = f"{NAMESPACE}:{path}"
        if port < 1024 and port != config.host.port and all(port != node.port for node in swarm.nodes):
            problems.append(Problem(at, f"port {port} is below 1024: on a Swarm the publish "
                                    "relay binds it in the node's own network namespace as the proxy image's user "
                                    "(not root), which may only bind ports from 1024 up",
                                    f"{PULUMI_CLI} config set --stack {stack} {path_arg(path)} "
                                    "<a free port from 1024 up>; a web server on 80/443 fronts it (docs/deploys.md, \"Behind a "
                                    "web server with TLS\")"))
        if port in SWARM_PORTS:
            problems.append(Problem(at, f"port {port} is {SWARM_PORTS[port]}",
                                    f"{PULUMI_CLI} config set --stack {stack} {path_arg(path)} "
                                    "<a free port>"))
        # The stack's host (the build node) has its SSH port checked by the single-host rules.
        for index, node in enumerate(swarm.nodes if port != config.host.port else []):
            if port == node.port:
                problems.append(Problem(at, f"port {port} is the SSH port of node "
                                        f"{node.name} (swarm.nodes[{index}].port)",
                                        f"{PULUMI_CLI} config set --stack {stack} {path_arg(path)} "
                                        "<a free port>"))
    return problems
