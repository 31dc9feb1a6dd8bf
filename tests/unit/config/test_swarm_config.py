"""A stack on a Docker Swarm (workhub:swarm): each bad value or missing rule gives one error naming
its key and the fix; a stack without the section stays one host."""

import copy

import pytest

from components.config.checks import ConfigError
from components.config.models import StackConfig
from components.config.parse import parse_stack_config

KEYS = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIySj6xrfNs5txsCtImpejpGyC5h+nIEkjyIQfPp4gff",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBW2By+hAP34VmlfiS/ReT7p3yQKE1tr7AaHZgIw0VTD",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGjU+D+2c/H9GpDyVmDVgqzawSdzV82cXK+jtELEZho9",
]


def swarm_stack() -> dict:
    """Three managers; node1 builds and serves, node2 serves and keeps wbsaleshub's data."""
    return {
        "hubs": [
            {"name": "wbhubmanager", "context": "WBHubManager", "port": 4090},
            {"name": "wbsaleshub", "context": "WBSalesHub", "port": 4091, "volumes": {"data": "/app/data"}},
        ],
        "hostPorts": {"wbhubmanager": 24090, "wbsaleshub": 24091},
        "registry": {"server": "10.0.0.1:5000"},
        "swarm": {
            "user": "deploy",
            "managers": ["node1", "node2", "node3"],
            "nodes": [
                {"name": "node1", "address": "10.0.0.11", "hostKey": KEYS[0], "labels": {"serve": True, "build": True}},
                {"name": "node2", "address": "10.0.0.12", "hostKey": KEYS[1],
                 "labels": {"serve": True, "data": ["wbsaleshub"]}},
                {"name": "node3", "address": "10.0.0.13", "port": 2222, "hostKey": KEYS[2]},
            ],
            "hubs": {"wbhubmanager": {"replicas": 2, "memoryMb": 256}},
        },
        "sshPrivateKey": "-----BEGIN " + "OPENSSH PRIVATE KEY-----...",
    }


def parse(raw: dict) -> StackConfig:
    return parse_stack_config(raw, stack="staging", secret_keys={"sshPrivateKey"})


def problems(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(raw)
    return [str(p) for p in caught.value.problems]


def test_a_swarm_stack_parses_and_its_build_node_is_the_host():
    """The build steps reach the build node: workhub:host is derived from it, not set twice."""
    config = parse(swarm_stack())
    assert config.swarm is not None
    assert [node.name for node in config.swarm.nodes] == ["node1", "node2", "node3"]
    assert (config.host.address, config.host.user, config.host.port, config.host.host_key) == \
        ("10.0.0.11", "deploy", 22, KEYS[0])
    assert config.swarm.hub("wbhubmanager").replicas == 2
    assert config.swarm.hub("wbsaleshub").replicas == 1
    assert config.swarm.data_node("wbsaleshub").name == "node2"
    assert config.swarm.monitor_seconds == 30


def test_a_stack_without_the_section_is_one_host():
    """Single host stays the default: no swarm, the host as set."""
    raw = swarm_stack()
    del raw["swarm"]
    raw["hubs"][1].pop("volumes")
    raw["host"] = {"address": "build.example.test", "user": "deploy", "hostKey": KEYS[0]}
    config = parse(raw)
    assert config.swarm is None and config.host.address == "build.example.test"


def test_no_build_node_derives_the_host_from_the_first_manager():
    """A registry-built stack has no build node; the first manager is the host then."""
    raw = swarm_stack()
    for hub in raw["hubs"]:
        hub["buildMode"] = "registry"
    raw["registry"] = {"server": "10.0.0.1:5000"}
    raw["swarm"]["nodes"][0]["labels"].pop("build")
    raw["swarm"]["managers"] = ["node3", "node1"]
    assert parse(raw).host.address == "10.0.0.13"
    assert parse(raw).host.port == 2222


def test_setting_host_as_well_is_refused():
    raw = swarm_stack()
    raw["host"] = {"address": "build.example.test", "user": "deploy", "hostKey": KEYS[0]}
    assert problems(raw) == [
        "workhub:host: is set, but this stack targets a Swarm (workhub:swarm): its nodes are in workhub:swarm.nodes\n"
        "    fix: scripts/workhub pulumi config rm --stack staging workhub:host"]


def test_a_bad_node_is_named_once_at_its_swarm_key():
    """A node's bad address or host key is reported at workhub:swarm.nodes[i], not again at host."""
    raw = swarm_stack()
    raw["swarm"]["nodes"][0]["address"] = "bad address"
    del raw["swarm"]["nodes"][1]["hostKey"]
    raw["swarm"]["nodes"][2]["hostKey"] = "ssh-ed25519 AAAA"
    found = problems(raw)
    assert len(found) == 3
    assert found[0].startswith("workhub:swarm.nodes[0].address: must be a DNS name or an IP address")
    assert found[1] == ("workhub:swarm.nodes[1].hostKey: is not set\n"
                        "    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:swarm.nodes[1].hostKey' <value>")
    assert found[2].startswith("workhub:swarm.nodes[2].hostKey: is not a valid ssh-ed25519 public key")


def test_unknown_keys_in_the_section_are_refused():
    raw = swarm_stack()
    raw["swarm"]["manager"] = ["node1"]
    raw["swarm"]["nodes"][0]["labels"]["serving"] = True
    raw["swarm"]["nodes"][1]["labelz"] = {}
    raw["swarm"]["hubs"]["wbhubmanager"]["replica"] = 2
    found = problems(raw)
    assert found[0] == ("workhub:swarm.nodes[0].labels.serving: is not a known setting\n    fix: remove it (scripts/workhub "
                        "pulumi config rm --stack staging --path 'workhub:swarm.nodes[0].labels.serving'); known "
                        "settings here: serve, build, data")
    assert found[1].endswith("known settings here: name, address, port, hostKey, labels, publishAddress")
    assert found[2].startswith("workhub:swarm.hubs.wbhubmanager.replica: is not a known setting")
    assert found[2].endswith("known settings here: replicas, memoryMb")
    del found[1:3]
    assert found[1].startswith("workhub:swarm.manager: is not a known setting\n    fix: remove it (scripts/workhub pulumi config rm "
                               "--stack staging --path 'workhub:swarm.manager'); known settings here: user, managers, "
                               "nodes, hubs, monitorSeconds, healthIntervalSeconds")


def test_managers_must_be_nodes_named_once():
    raw = swarm_stack()
    raw["swarm"]["managers"] = ["node1", "node9", "node1"]
    assert problems(raw) == [
        "workhub:swarm.managers[1]: node9 is not a node in workhub:swarm.nodes\n"
        "    fix: add a node named node9 to workhub:swarm.nodes, or scripts/workhub pulumi config set --stack staging --path "
        "'workhub:swarm.managers[1]' <node name>",
        "workhub:swarm.managers[2]: node1 is named twice\n"
        "    fix: scripts/workhub pulumi config rm --stack staging --path 'workhub:swarm.managers[2]'",
    ]
    raw["swarm"]["managers"] = []
    assert problems(raw)[0].startswith("workhub:swarm.managers: names no node; a Swarm needs at least one manager")


def test_node_addresses_are_unique():
    """Two nodes at one address are one host (however the address is spelled)."""
    raw = swarm_stack()
    raw["swarm"]["nodes"][2]["address"] = "10.0.0.11"
    assert problems(raw) == ["workhub:swarm.nodes[2].address: 10.0.0.11 is also the address of swarm.nodes[0] "
                             "(node1): each node is a host of its own, which the other nodes and workhub reach at "
                             "its address\n"
                             "    fix: scripts/workhub pulumi config set --stack staging --path "
                             "'workhub:swarm.nodes[2].address' <value>"]
    raw["swarm"]["nodes"][0]["address"], raw["swarm"]["nodes"][1]["address"] = "Node1.Example.Test", "fe80::0:1"
    raw["swarm"]["nodes"][1]["publishAddress"] = "10.0.0.12"
    raw["swarm"]["nodes"][2]["address"] = "node1.example.test"
    assert problems(raw)[0].startswith("workhub:swarm.nodes[2].address: node1.example.test is also the address of "
                                       "swarm.nodes[0] (node1)")
    raw["swarm"]["nodes"][2]["address"] = "fe80::1"
    assert problems(raw)[0].startswith("workhub:swarm.nodes[2].address: fe80::1 is also the address of swarm.nodes[1]")


def test_node_names_are_unique():
    raw = swarm_stack()
    raw["swarm"]["nodes"][2]["name"] = "node2"
    raw["swarm"]["managers"] = ["node1", "node2"]
    assert problems(raw) == ["workhub:swarm.nodes[2].name: node2 is also swarm.nodes[1]\n"
                             "    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:swarm.nodes[2].name' <value>"]


def test_a_serving_node_and_one_build_node():
    """The proxy needs a serving node; host builds need exactly one build node."""
    raw = swarm_stack()
    for node in raw["swarm"]["nodes"]:
        node["labels"] = dict(node.get("labels", {}), serve=False, build=False)
    found = problems(raw)
    assert found == [
        "workhub:swarm.nodes: has no node labelled serve: the proxy that publishes the hubs' host ports runs on "
        "serving nodes\n    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:swarm.nodes[<n>].labels.serve' true",
        "workhub:swarm.nodes: has no node labelled build, but wbhubmanager, wbsaleshub build(s) on a host "
        "(buildMode: remote)\n"
        "    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:swarm.nodes[<n>].labels.build' true",
    ]
    raw = swarm_stack()
    raw["swarm"]["nodes"][2]["labels"] = {"build": True}
    assert problems(raw) == [
        "workhub:swarm.nodes[2].labels.build: is also set on swarm.nodes[0]: one node builds, one build at a time, "
        "with its warm npm cache\n    fix: scripts/workhub pulumi config rm --stack staging --path 'workhub:swarm.nodes[2].labels.build'"]


def test_replicas_above_one_with_a_node_local_volume_is_refused():
    """The key, why, and the fix."""
    raw = swarm_stack()
    raw["swarm"]["hubs"]["wbsaleshub"] = {"replicas": 2}
    assert problems(raw) == [
        "workhub:swarm.hubs.wbsaleshub.replicas: is 2, but hub wbsaleshub keeps its data in node-local volumes "
        "(data), which one task on one node can use\n"
        "    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:swarm.hubs.wbsaleshub.replicas' 1; or move the "
        "hub's data to a service of its own (a database) and remove its volumes from workhub:hubs in Pulumi.yaml"]


def test_a_hub_with_volumes_lives_on_exactly_one_data_node():
    raw = swarm_stack()
    raw["swarm"]["nodes"][1]["labels"]["data"] = []
    assert problems(raw) == [
        "workhub:swarm.nodes: no node holds hub wbsaleshub's volumes (data): a hub with volumes is pinned to the "
        "node that keeps them\n"
        "    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:swarm.nodes[<n>].labels.data[0]' wbsaleshub"]
    raw = swarm_stack()
    raw["swarm"]["nodes"][2]["labels"] = {"data": ["wbsaleshub", "wbhubmanager", "nohub"]}
    assert problems(raw) == [
        "workhub:swarm.nodes[2].labels.data[0]: hub wbsaleshub's data is also on swarm.nodes[1]; a volume lives on "
        "one node\n    fix: scripts/workhub pulumi config rm --stack staging --path 'workhub:swarm.nodes[2].labels.data[0]'",
        "workhub:swarm.nodes[2].labels.data[1]: hub wbhubmanager has no volumes to keep here\n"
        "    fix: scripts/workhub pulumi config rm --stack staging --path 'workhub:swarm.nodes[2].labels.data[1]'",
        "workhub:swarm.nodes[2].labels.data[2]: nohub names no hub in workhub:hubs\n"
        "    fix: scripts/workhub pulumi config rm --stack staging --path 'workhub:swarm.nodes[2].labels.data[2]'",
    ]


def test_hub_settings_name_hubs_and_have_sane_values():
    raw = swarm_stack()
    raw["swarm"]["hubs"] = {"wbhubmanager": {"replicas": -1, "memoryMb": 2}}
    found = problems(raw)
    assert found[0].startswith("workhub:swarm.hubs.wbhubmanager.replicas: Input should be greater than or equal to 0")
    assert found[1].startswith("workhub:swarm.hubs.wbhubmanager.memoryMb: Input should be greater than or equal to 6")
    raw["swarm"]["hubs"] = {"nohub": {}}
    assert problems(raw) == ["workhub:swarm.hubs.nohub: names no hub in workhub:hubs\n"
                             "    fix: scripts/workhub pulumi config rm --stack staging --path 'workhub:swarm.hubs.nohub'"]


def test_host_ports_keep_off_swarms_ports_and_the_nodes_ssh():
    raw = swarm_stack()
    raw["hostPorts"] = {"wbhubmanager": 7946, "wbsaleshub": 2222}
    assert problems(raw) == [
        "workhub:hostPorts.wbhubmanager: port 7946 is Swarm's node gossip (7946/tcp+udp)\n"
        "    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:hostPorts.wbhubmanager' <a free port>",
        "workhub:hostPorts.wbsaleshub: port 2222 is the SSH port of node node3 (swarm.nodes[2].port)\n"
        "    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:hostPorts.wbsaleshub' <a free port>",
    ]
    raw["hostPorts"] = {"wbhubmanager": 22, "wbsaleshub": 24091}
    assert problems(raw) == [
        "workhub:hostPorts.wbhubmanager: port 22 is the host's SSH port\n"
        "    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:hostPorts.wbhubmanager' <a free port>"]


def test_the_user_is_checked_like_the_hosts():
    raw = swarm_stack()
    raw["swarm"]["user"] = "Root!"
    assert problems(raw) == [
        "workhub:swarm.user: must be a POSIX user name (lower-case letters, digits, '_', '-')\n"
        "    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:swarm.user' <value>"]
    raw = copy.deepcopy(swarm_stack())
    del raw["swarm"]["user"]
    assert problems(raw)[0].startswith("workhub:swarm.user: is not set")


def test_each_serving_node_publishes_on_its_own_address_by_default():
    """No workhub:publishAddress: a node's proxy publishes on the node's address only; a node's
    publishAddress wins; the stack's, when set, applies to every node without one of its own."""
    from components.config.swarm import publish_address, reach_address

    raw = swarm_stack()
    config = parse(raw)
    node1, node2, _ = config.swarm.nodes
    assert (publish_address(config, node1), publish_address(config, node2)) == ("10.0.0.11", "10.0.0.12")
    raw["swarm"]["nodes"][1]["publishAddress"] = "192.168.7.12"
    raw["publishAddress"] = "127.0.0.1"
    config = parse(raw)
    node1, node2, _ = config.swarm.nodes
    assert (publish_address(config, node1), publish_address(config, node2)) == ("127.0.0.1", "192.168.7.12")
    # Where others reach them: not a loopback address (only the node itself can), the node's address
    # for every interface.
    assert (reach_address(config, node1), reach_address(config, node2)) == (None, "192.168.7.12")
    raw["publishAddress"] = "0.0.0.0"
    assert reach_address(parse(raw), parse(raw).swarm.nodes[0]) == "10.0.0.11"


def test_a_serving_node_known_by_name_needs_its_publish_address():
    raw = swarm_stack()
    raw["swarm"]["nodes"][1]["address"] = "node2.example.test"
    raw["swarm"]["nodes"][2]["address"] = "node3.example.test"  # it serves nothing: no address needed
    assert problems(raw) == [
        "workhub:swarm.nodes[1].publishAddress: is not set, and node node2's address (node2.example.test) is a "
        "name, not an address its proxy can publish the hubs' host ports on\n"
        "    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:swarm.nodes[1].publishAddress' "
        "<the node's private IP address>"]
    raw["swarm"]["nodes"][1]["publishAddress"] = "10.0.0.12"
    parse(raw)
    raw["swarm"]["nodes"][1]["publishAddress"] = "node2"
    (found,) = problems(raw)
    assert found.startswith("workhub:swarm.nodes[1].publishAddress: must be an IP address such as 127.0.0.1")


def test_the_urls_and_the_status_follow_the_publish_addresses():
    from components.resources.swarm.stack import urls
    from components.render.swarm.status import _health, status_script

    raw = swarm_stack()
    raw["swarm"]["nodes"][0]["publishAddress"] = "fd00::11"
    raw["swarm"]["nodes"][1]["publishAddress"] = "127.0.0.1"
    config = parse(raw)
    assert urls(config)["wbsaleshub"] == ["http://[fd00::11]:24091", "http://127.0.0.1:24091"]
    text = status_script(config, "staging")
    assert "\nserving=(fd00::11 '')\nserving_nodes=(node1 node2)\n" in text
    answers = [{"hub": "wbsaleshub", "node": "fd00::11", "answer": "200"},
               {"hub": "wbsaleshub", "node": "node2", "answer": "unchecked"}]
    assert _health(answers, {"fd00::11": "node1"}) == "ok (node2: publish on loopback, unchecked)"
    assert _health(answers[1:], {}) == "- (node2: publish on loopback, unchecked)"


def test_a_swarm_host_port_is_one_the_relay_may_bind():
    raw = swarm_stack()
    raw["hostPorts"]["wbhubmanager"] = 443
    (found,) = problems(raw)
    assert found.startswith("workhub:hostPorts.wbhubmanager: port 443 is below 1024: on a Swarm the publish relay "
                            "binds it in the node's own network namespace as the proxy image's user")


def test_a_hub_may_not_take_the_name_of_the_stacks_own_services():
    raw = swarm_stack()
    raw["hubs"][0]["name"] = "publish"
    raw["hostPorts"] = {"publish": 24090, "wbsaleshub": 24091}
    raw["swarm"]["hubs"] = {}
    assert problems(raw) == [
        "workhub:hubs[0].name: publish is the name of the stack's publish service on a Swarm\n"
        "    fix: give the hub another name in workhub:hubs in Pulumi.yaml"]
