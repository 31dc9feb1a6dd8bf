"""The resource graph, with Pulumi's mocks: what gets registered, under which parent, with which inputs."""

import json

import pulumi
import pytest

from components.scripts import host_facts_script

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHtestkeytestkeytestkeytestkeytestkeytest"
PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n"
FACTS = {"docker_version": "20.10.24", "builder": "docker-build", "buildkit": True,
         "cpus": 2, "memory_mb": 24000, "swap_mb": 0, "disk_free_mb": 50000}


class Mocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args):
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ == "pulumi-python:dynamic:Resource":
            outputs["stdout"] = "noise\n" + json.dumps(FACTS) + "\n"
        return f"{args.name}-id", outputs

    def call(self, args):
        return {}


def config(**host) -> dict:
    return {
        "workhub:host": json.dumps({"address": "build.example.test", "user": "deploy", "port": 2222,
                                    "hostKey": HOST_KEY, **host}),
        "workhub:sshPrivateKey": PRIVATE_KEY,
    }


@pytest.fixture
def mocks():
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="workhub", stack="staging", preview=False)
    pulumi.runtime.set_all_config(config(), secret_keys=["workhub:sshPrivateKey"])
    yield mocks
    pulumi.runtime.set_all_config({}, secret_keys=[])


def by_name(mocks: Mocks, name: str):
    (found,) = [r for r in mocks.resources if r.name == name]
    return found


@pulumi.runtime.test
def test_build_host_holds_the_facts_command(mocks):
    """BuildHost is a component, and its facts command is its child (the parent shows in the URN)."""
    from components.program import program

    host = program()

    def check(urn):
        assert by_name(mocks, "build-host").typ == "workhub:host:BuildHost"
        facts = by_name(mocks, "build-host-facts")
        assert facts.typ == "pulumi-python:dynamic:Resource" and facts.custom
        assert urn.endswith("::workhub:host:BuildHost$pulumi-python:dynamic:Resource::build-host-facts"), urn

    return host.facts_command.urn.apply(check)


@pulumi.runtime.test
def test_connection_pins_host_key_and_limits_dials(mocks):
    """The SSH connection carries the pinned host key, the dial limit and the per-dial timeout."""
    from components.program import program

    host = program()

    def check(_):
        inputs = by_name(mocks, "build-host-facts").inputs
        assert inputs["connection"] == {
            "host": "build.example.test", "port": 2222, "user": "deploy", "hostKey": HOST_KEY,
            "dialErrorLimit": 10, "perDialTimeout": 15, "keepAliveInterval": 30,
        }
        assert inputs["create"] == host_facts_script("node:20-bookworm-slim")
        assert inputs["label"] == "build-host-facts"

    return host.facts.apply(check)


SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"  # Pulumi's marker for a secret value on the wire


@pulumi.runtime.test
def test_private_key_is_secret_and_only_in_its_own_input(mocks):
    """The SSH key reaches the provider only as a secret, and appears in no other input."""
    from components.program import program

    host = program()

    def check(_):
        facts = by_name(mocks, "build-host-facts")
        key = facts.inputs["privateKey"]
        assert isinstance(key, dict) and SECRET_SIG in key.values() and key["value"] == PRIVATE_KEY
        others = {k: v for k, v in facts.inputs.items() if k != "privateKey"}
        assert "PRIVATE KEY" not in json.dumps(others, default=str)

    return host.facts.apply(check)


@pulumi.runtime.test
def test_facts_are_parsed_from_the_last_stdout_line(mocks):
    """Facts come from the JSON the script prints last; earlier lines are ignored."""
    from components.program import program

    return program().facts.apply(lambda facts: assert_equal(facts, FACTS))


def assert_equal(got, want):
    assert got == want


def test_bad_config_registers_nothing(mocks):
    """An invalid stack config stops the program before any resource is registered."""
    from components.program import program

    pulumi.runtime.set_all_config(config(address="bad host;"), secret_keys=[])
    with pytest.raises(pulumi.RunError) as caught:
        program()
    message = str(caught.value)
    assert "workhub:host.address: must be a DNS name" in message
    assert "workhub:sshPrivateKey: is stored in plain text" in message
    assert mocks.resources == []
