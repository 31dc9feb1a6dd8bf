"""SwarmCluster's resource graph, with Pulumi's mocks: the Swarm is created on the first manager,
the other managers join one after another and then the workers, each by a SwarmMember whose only
secret input is the SSH key (the join token is no input at all), and the labels come last. The
Swarm secrets of a stack's program are named by fingerprints keyed with the stack's own key."""

import json

import pulumi
import pytest

from components.config.parse import parse_stack_config
from tests.unit.program.test_graph import PRIVATE_KEY, SECRET_SIG, Mocks
from tests.unit.program.test_graph import project  # noqa: F401 (fixture)
from tests.unit.config.test_swarm_config import swarm_stack


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
    from components.resources.swarm.cluster import SwarmCluster, SwarmClusterArgs

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


@pytest.mark.parametrize("ssh_key", [PRIVATE_KEY, PRIVATE_KEY.replace("not-a-real-key", "a-rotated-key")])
@pulumi.runtime.test
def test_swarm_secret_names_follow_the_stacks_own_key_not_the_ssh_key(project, ssh_key):
    """A Docker secret cannot change, so a new fingerprint is a new secret and a rolling update of
    the hub: with either SSH key the deploy makes and mounts the same one, named by the fingerprint
    under the stack's key."""
    from components.config.runtime import fingerprint
    from components.render.swarm.stack import secret_name
    from tests.unit.program.test_graph import STACK_KEY
    from tests.unit.program.test_swarm_program import SECRET_KEYS, SESSION, SwarmMocks, run, stack_file_of, swarm_config

    class KeyedSwarmMocks(SwarmMocks):
        def new_resource(self, args):
            name, outputs = super().new_resource(args)
            return (name, {"key": STACK_KEY}) if args.name == "fingerprint-key" else (name, outputs)

    mocks = KeyedSwarmMocks()
    pulumi.runtime.set_mocks(mocks, project="workhub", stack="staging", preview=False)
    pulumi.runtime.set_all_config(swarm_config(**{"workhub:sshPrivateKey": ssh_key}), secret_keys=SECRET_KEYS)
    named = secret_name("staging", "wbhubmanager", "SESSION_SECRET",
                        fingerprint(STACK_KEY, "wbhubmanager", "SESSION_SECRET", SESSION))
    assert named == "staging-wbhubmanager-SESSION_SECRET-b269fb0f12cb"

    def check(chain, deployed, pusher, _):
        script = next(r for r in mocks.resources if r.name == "swarm-deploy").inputs["create"]
        assert f"\nsecret_names=({named})\n" in script
        assert stack_file_of(script)["secrets"]["wbhubmanager_SESSION_SECRET"] == {"external": True, "name": named}
        assert STACK_KEY not in json.dumps([r.inputs for r in mocks.resources if r.name != "fingerprint-key"],
                                           default=str)

    try:
        return run(project, check)
    finally:
        pulumi.runtime.set_all_config({}, secret_keys=[])
