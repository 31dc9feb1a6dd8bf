"""SwarmCluster's resource graph, with Pulumi's mocks: the Swarm is created on the first manager,
the other managers join one after another and then the workers, each by a SwarmMember whose only
secret input is the SSH key (the join token is no input at all), and the labels come last."""

import pulumi
import pytest

from components.config import parse_stack_config
from tests.test_graph import PRIVATE_KEY, SECRET_SIG, Mocks
from tests.test_swarm_config import swarm_stack


@pytest.fixture
def mocks():
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="workhub", stack="staging", preview=False)
    yield mocks


def stack_config():
    raw = swarm_stack()
    raw["swarm"]["managers"] = ["node1", "node2"]
    raw["swarm"]["nodes"].append({"name": "node4", "address": "10.0.0.14", "hostKey": raw["swarm"]["nodes"][0]["hostKey"]})
    return parse_stack_config(raw, stack="staging", secret_keys={"sshPrivateKey"})


@pulumi.runtime.test
def test_init_then_joins_in_order_then_labels(mocks):
    from components.swarm_cluster import SwarmCluster, SwarmClusterArgs

    cluster = SwarmCluster("swarm", SwarmClusterArgs(stack_config(), pulumi.Output.secret(PRIVATE_KEY)))

    def check(_):
        found = {r.name: r for r in mocks.resources}
        assert found["swarm"].typ == "workhub:swarm:SwarmCluster"
        names = [r.name for r in mocks.resources if r.typ == "pulumi-python:dynamic:Resource"]
        assert names == ["swarm-init", "swarm-join-node2", "swarm-join-node3", "swarm-join-node4", "swarm-labels"]
        init, node2, node3, node4, labels = (found[name] for name in names)
        assert init.inputs["connection"]["host"] == "10.0.0.11"
        assert "docker swarm init" in init.inputs["create"]
        assert (node2.inputs["role"], node3.inputs["role"], node4.inputs["role"]) == ("manager", "worker", "worker")
        assert node3.inputs["connection"]["port"] == 2222 and node3.inputs["manager"]["host"] == "10.0.0.11"
        assert node2.inputs["connection"]["hostKey"] != node3.inputs["connection"]["hostKey"]
        for member in (node2, node3, node4):
            assert set(member.inputs) - {"__provider"} == {"label", "connection", "manager", "role", "privateKey",
                                                           "create"}
            assert SECRET_SIG in member.inputs["privateKey"].values()
        assert "workhub.data.wbsaleshub=true" in labels.inputs["create"]
        assert SECRET_SIG in labels.inputs["privateKey"].values()

    return pulumi.Output.all(*[r.urn for r in cluster.ready]).apply(check)
