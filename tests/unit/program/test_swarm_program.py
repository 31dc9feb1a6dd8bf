"""`pulumi up` of a stack with workhub:swarm, with Pulumi's mocks: the program forms the Swarm, gets
every hub's image into the stack's registry (a host build on the build node, then its push; a
registry-mode hub pushed from CI), and deploys the whole stack with one command on the first
manager, after all of that; the secrets reach that command only as one secret input; no hub runs
on the build host as on one host. A promoting stack deploys the source stack's images by digest."""

from __future__ import annotations

import json
import shlex

import pulumi
import pytest

from components.ssh import failure_message
from tests.unit.program.test_graph import PRIVATE_KEY, SECRET_SIG, Mocks, by_name, commands
from tests.unit.program.test_graph import depends_on, project, registered  # noqa: F401 (fixtures)
from tests.unit.config.test_swarm_config import KEYS

SESSION = "not-a-real-session-secret-$HOME-`id`"
PASSWORD = "not-a-real-registry-password"
REGISTRY = "10.0.0.1:5000"
DIGEST = "sha256:" + "ab" * 32
DEPLOYED = {"stack": "workhub-staging", "hubs": {
    "wbhubmanager": {"image": f"{REGISTRY}/workhub/wbhubmanager:staging-0123456789ab@{DIGEST}", "replicas": "2/2"},
    "wbsaleshub": {"image": f"{REGISTRY}/workhub/wbsaleshub:staging-0123456789ab@{DIGEST}", "replicas": "1/1",
                   "previous": f"{REGISTRY}/workhub/wbsaleshub:staging-ba9876543210@sha256:{'cd' * 32}"}}}


class SwarmMocks(Mocks):
    """The deploy reports what its services run, as the deploy script's last line does."""

    def new_resource(self, args):
        name, outputs = super().new_resource(args)
        if args.name == "swarm-deploy":
            outputs["stdout"] = "swarm-deploy: noise\n" + json.dumps(DEPLOYED) + "\n"
        return name, outputs


def swarm_config(**extra: str) -> dict[str, str]:
    """wbhubmanager built on the build node (node1), 2 replicas; wbsaleshub built by CI, its data on node2."""
    hubs = [{"name": "wbhubmanager", "context": "WBHubManager", "port": 4090, "secrets": ["SESSION_SECRET"]},
            {"name": "wbsaleshub", "context": "WBSalesHub", "port": 4091, "buildMode": "registry",
             "volumes": {"data": "/app/data"}}]
    swarm = {"user": "deploy", "managers": ["node1", "node2", "node3"], "monitorSeconds": 5,
             "nodes": [{"name": "node1", "address": "10.0.0.11", "hostKey": KEYS[0],
                        "labels": {"serve": True, "build": True}},
                       {"name": "node2", "address": "10.0.0.12", "hostKey": KEYS[1],
                        "labels": {"serve": True, "data": ["wbsaleshub"]}},
                       {"name": "node3", "address": "10.0.0.13", "hostKey": KEYS[2]}],
             "hubs": {"wbhubmanager": {"replicas": 2}}}
    return {
        "workhub:sshPrivateKey": PRIVATE_KEY,
        "workhub:sourceRoot": "../src",
        "workhub:hubs": json.dumps(hubs),
        "workhub:hostPorts": json.dumps({"wbhubmanager": 24090, "wbsaleshub": 24091}),
        "workhub:registry": json.dumps({"server": REGISTRY, "username": "ci"}),
        "workhub:registryPassword": PASSWORD,
        "workhub:secrets": json.dumps({"wbhubmanager": {"SESSION_SECRET": SESSION}}),
        "workhub:swarm": json.dumps(swarm),
        **extra,
    }


SECRET_KEYS = ["workhub:sshPrivateKey", "workhub:registryPassword", "workhub:secrets"]
# The production stack pins the images its hosts pull by digest.
PINNED = {"workhub:baseImage": "node:24-bookworm-slim@sha256:" + "a" * 64,
          "workhub:proxyImage": "haproxy:2.6@sha256:" + "b" * 64,
          "workhub:helperImage": "busybox:1.37@sha256:" + "d" * 64}


@pytest.fixture
def mocks():
    mocks = SwarmMocks()
    pulumi.runtime.set_mocks(mocks, project="workhub", stack="staging", preview=False)
    pulumi.runtime.set_all_config(swarm_config(), secret_keys=SECRET_KEYS)
    yield mocks
    pulumi.runtime.set_all_config({}, secret_keys=[])


class CiPushes:
    """Stands in for pulumi-docker: one resource per registry-mode push, which the deploy must wait for."""

    def __init__(self):
        self.pushed: list[str] = []

    def __call__(self, push, opts):
        self.pushed.append(push.remote)
        return [pulumi.CustomResource("test:ci:Push", f"{push.plan.hub.name}-ci-push", {"image": push.remote}, opts)]


def stack_file_of(script: str) -> dict:
    """The stack file a rendered deploy script writes (its quoted `stack_file` assignment)."""
    text = script.split("\nstack_file=", 1)[1].split("\nproxy_config=", 1)[0]
    (word,) = shlex.split(text)
    return json.loads(word)


def run(project, check, pusher=None):
    from components.program import program

    pusher = pusher or CiPushes()
    host, chain, deployed = program(project, pusher)
    return pulumi.Output.all(deployed.deploy.urn, deployed.result).apply(lambda values: check(chain, deployed, pusher,
                                                                                               values[1]))


@pulumi.runtime.test
def test_images_reach_the_registry_then_one_deploy_on_the_first_manager(mocks, project, depends_on):
    """The host-built hub builds on the build node and pushes after its build; the registry-mode hub is
    pushed by CI; the deploy waits for the Swarm (init, joins, labels) and for every push; no hub runs
    on the build host."""

    def check(chain, deployed, pusher, _):
        names = [r.name for r in commands(mocks)]
        assert "wbhubmanager-build" in names and "wbhubmanager-push" in names
        assert not [name for name in names if name.endswith(("-run", "-pull"))], names
        assert by_name(mocks, "wbhubmanager").typ == "workhub:swarm:SwarmImage"
        assert depends_on["wbhubmanager-build"] == ["build-host-preflight", "build-host-setup"]
        assert depends_on["wbhubmanager-push"] == ["wbhubmanager-build"]
        assert depends_on["swarm-deploy"] == ["swarm-init", "swarm-join-node2", "swarm-join-node3", "swarm-labels",
                                              "wbhubmanager-push", "wbsaleshub-ci-push", "swarm-owners-node2"]
        # Before it, on the node that holds wbsaleshub's data: its volume, owned by its uid.
        assert depends_on["swarm-owners-node2"] == depends_on["swarm-deploy"][:-1]
        owners = by_name(mocks, "swarm-owners-node2")
        assert owners.inputs["connection"]["host"] == "10.0.0.12"
        assert "\nvolumes=(workhub-staging-wbsaleshub-data)\n" in owners.inputs["create"]
        assert f"\nimages=({chain.images[1].image})\n" in owners.inputs["create"]
        assert pusher.pushed == [chain.images[1].image]
        push = by_name(mocks, "wbhubmanager-push")
        build_image = chain.images[0].plan.image
        assert f"\nimage={build_image}\n" in push.inputs["create"]
        assert f"\nremote={REGISTRY}/workhub/{build_image}\n" in push.inputs["create"]
        assert push.inputs["connection"]["host"] == "10.0.0.11"
        deploy = by_name(mocks, "swarm-deploy")
        assert deploy.inputs["connection"]["host"] == "10.0.0.11" and deploy.inputs["connection"]["hostKey"] == KEYS[0]
        assert sorted(r.typ for r in mocks.resources if r.name == "swarm") == ["workhub:swarm:SwarmCluster",
                                                                                "workhub:swarm:SwarmStack"]
        create = deploy.inputs["create"]
        assert "docker stack deploy --with-registry-auth --resolve-image always" in create
        stack = stack_file_of(create)
        assert stack["services"]["wbhubmanager"]["image"] == chain.images[0].image
        assert stack["services"]["wbsaleshub"]["image"] == chain.images[1].image
        assert stack["services"]["wbhubmanager"]["deploy"]["replicas"] == 2
        assert "docker stack rm" in deploy.inputs["delete"]

    return run(project, check)


@pulumi.runtime.test
def test_the_build_node_is_checked_only_when_a_hub_builds_there(mocks, project):
    """With every hub built by CI, nothing runs on the build node: no facts, preflight or SSH setup
    (its disk, memory and BuildKit are no concern of the nodes that pull); the deploy still waits
    for the Swarm and the pushes."""
    settings = swarm_config()
    hubs = json.loads(settings["workhub:hubs"])
    hubs[0]["buildMode"] = "registry"
    settings["workhub:hubs"] = json.dumps(hubs)
    pulumi.runtime.set_all_config(settings, secret_keys=SECRET_KEYS)

    def check(chain, deployed, pusher, _):
        names = [r.name for r in commands(mocks)]
        assert not [name for name in names if name.startswith("build-host-")], names
        assert not [name for name in names if name.endswith(("-build", "-push"))], names
        assert pusher.pushed == [image.image for image in chain.images]
        assert "swarm-deploy" in names

    return run(project, check)


@pulumi.runtime.test
def test_the_build_node_is_checked_before_a_host_build(mocks, project, depends_on):
    def check(chain, deployed, pusher, _):
        names = [r.name for r in commands(mocks)]
        assert [name for name in names if name.startswith("build-host-")] == [
            "build-host-facts", "build-host-preflight", "build-host-setup"]
        assert by_name(mocks, "build-host-preflight").inputs["connection"]["host"] == "10.0.0.11"

    return run(project, check)


@pulumi.runtime.test
def test_secrets_reach_the_deploy_and_the_push_only_as_secret_inputs(mocks, project):
    """The hub's secret and the registry password are one secret input of the deploy (and the
    password of the push); no other input of any command holds a value."""

    def check(chain, deployed, pusher, _):
        deploy = by_name(mocks, "swarm-deploy")
        assert SECRET_SIG in deploy.inputs["secretValues"].values()
        assert SECRET_SIG in by_name(mocks, "wbhubmanager-push").inputs["secretValues"].values()
        for resource in commands(mocks):
            plain = {k: v for k, v in resource.inputs.items() if k not in ("secretValues", "privateKey")}
            text = json.dumps(plain, default=str)
            for value in (SESSION, PASSWORD, PRIVATE_KEY):
                assert value not in text, resource.name
            assert "PRIVATE KEY" not in text, resource.name

    return run(project, check)


@pulumi.runtime.test
def test_the_secret_values_go_in_as_the_deploy_script_reads_them(mocks, project, monkeypatch):
    """secret_0 is the hub's secret, registry_password the registry's: what the script's secret
    creation and login read."""
    from components.resources.swarm import stack as swarm_stack

    seen = {}
    original = swarm_stack.RemoteCommand

    def spy(name, **kwargs):
        seen[name] = kwargs.get("secret_values")
        return original(name, **kwargs)

    monkeypatch.setattr(swarm_stack, "RemoteCommand", spy)

    def check(chain, deployed, pusher, _):
        values = seen["swarm-deploy"]
        assert set(values) == {"secret_0", "registry_password"}
        assert values["secret_0"] == SESSION

    return run(project, check)


def test_the_hubs_outputs_name_each_image_by_digest_its_replicas_and_urls():
    from components.config.parse import parse_stack_config
    from components.program import swarm_outputs
    from components.config.runtime import hub_runtime

    raw = {key.removeprefix("workhub:"): json.loads(value) if value[:1] in "[{" else value
           for key, value in swarm_config().items()}
    config = parse_stack_config(raw, stack="staging", secret_keys={"sshPrivateKey", "registryPassword", "secrets"})
    runtimes = {hub.name: hub_runtime(hub, config, "staging", raw["secrets"].get(hub.name, {}), PRIVATE_KEY)
                for hub in config.hubs}
    outputs = swarm_outputs(config, {"wbhubmanager": f"{REGISTRY}/workhub/wbhubmanager:staging-0123456789ab"},
                            {"wbsaleshub": (DEPLOYED["hubs"]["wbsaleshub"]["image"], "stack staging, converged")},
                            runtimes, DEPLOYED)
    hub = outputs["wbhubmanager"]
    assert hub["image"].endswith("@" + DIGEST) and hub["replicas"] == "2/2"
    assert hub["url"] == "http://10.0.0.11:24090"
    assert hub["urls"] == ["http://10.0.0.11:24090", "http://10.0.0.12:24090"]
    assert hub["pushed"] == f"{REGISTRY}/workhub/wbhubmanager:staging-0123456789ab" and hub["mode"] == "remote"
    assert hub["secrets"] == ["SESSION_SECRET"] and SESSION not in json.dumps(outputs)
    assert outputs["wbsaleshub"]["from"] == DEPLOYED["hubs"]["wbsaleshub"]["image"]
    # The image a rollback pins: what the service ran before its last image change (none yet: empty).
    assert outputs["wbsaleshub"]["previousImage"] == DEPLOYED["hubs"]["wbsaleshub"]["previous"]
    assert hub["previousImage"] == ""


@pulumi.runtime.test
def test_a_promoting_swarm_stack_deploys_the_source_stacks_images_by_digest(mocks, project, monkeypatch):
    """Production builds nothing and pushes nothing: its services run exactly the images staging's
    Swarm converged on, named by digest."""
    pulumi.runtime.set_mocks(mocks, project="workhub", stack="production", preview=False)
    pulumi.runtime.set_all_config(swarm_config(**{"workhub:promoteFrom": "staging", **PINNED}), secret_keys=SECRET_KEYS)
    monkeypatch.setattr("components.program.source_stack_hubs", lambda name: DEPLOYED["hubs"])
    pusher = CiPushes()

    def check(chain, deployed, pusher, _):
        names = [r.name for r in commands(mocks)]
        assert not [name for name in names if name.endswith(("-build", "-push"))], names
        assert pusher.pushed == []
        create = by_name(mocks, "swarm-deploy").inputs["create"]
        stack = stack_file_of(create)
        for hub in ("wbhubmanager", "wbsaleshub"):
            assert stack["services"][hub]["image"] == DEPLOYED["hubs"][hub]["image"]

    return run(project, check, pusher)


def test_a_promoting_swarm_stack_without_a_verified_digest_registers_nothing(mocks, project, monkeypatch):
    """A hub the source stack has no image by digest for stops the program before any resource."""
    from components.program import program

    pulumi.runtime.set_mocks(mocks, project="workhub", stack="production", preview=False)
    pulumi.runtime.set_all_config(swarm_config(**{"workhub:promoteFrom": "staging", **PINNED}), secret_keys=SECRET_KEYS)
    source = {"wbhubmanager": DEPLOYED["hubs"]["wbhubmanager"],
              "wbsaleshub": {"image": f"{REGISTRY}/workhub/wbsaleshub:staging-0123456789ab"}}
    monkeypatch.setattr("components.program.source_stack_hubs", lambda name: source)
    with pytest.raises(pulumi.RunError) as caught:
        program(project, CiPushes())
    assert "wbsaleshub: stack staging names no image by digest for it" in str(caught.value)
    assert "wbhubmanager" not in str(caught.value)
    assert mocks.resources == []


def test_a_swarm_stack_without_a_registry_is_refused_naming_the_key(mocks, project):
    from components.program import program

    settings = swarm_config()
    del settings["workhub:registry"], settings["workhub:registryPassword"]
    hubs = json.loads(settings["workhub:hubs"])
    hubs[1]["buildMode"] = "remote"
    settings["workhub:hubs"] = json.dumps(hubs)
    pulumi.runtime.set_all_config(settings, secret_keys=["workhub:sshPrivateKey", "workhub:secrets"])
    with pytest.raises(pulumi.RunError) as caught:
        program(project, CiPushes())
    assert ("workhub:registry.server: is not set, but this stack targets a Swarm: every node pulls the hubs' "
            "images from the stack's image registry") in str(caught.value)
    assert mocks.resources == []


def test_a_rolled_back_deploy_says_why_as_a_step_of_the_stack():
    """The deploy's FAILED line is the reason; the step is the stack's (no hub named)."""
    tail = ["swarm-deploy: workhub-staging_proxy: 2/2 task(s) running",
            "swarm-deploy: FAILED: workhub-staging_wbhubmanager: its update did not stay healthy and Swarm rolled it "
            "back (update rolled back: task unhealthy)",
            "swarm-deploy: the services above run their previous version; the others run this one"]
    message = failure_message("swarm-deploy", "deploy@10.0.0.11:22", 1, tail).splitlines()
    assert message[0] == "step: Swarm deploy (swarm-deploy on deploy@10.0.0.11:22, exit code 1)"
    assert message[1] == ("reason: workhub-staging_wbhubmanager: its update did not stay healthy and Swarm rolled it "
                          "back (update rolled back: task unhealthy)")
    assert failure_message("swarm-build", "h", 1, ["build: FAILED: x"]).splitlines()[0] == "hub: swarm"


STUB_DOCKER = """#!/bin/bash
# A stand-in docker: records each call's words (and a login's stdin); push fails $FAIL_PUSHES times.
printf '%s\\n' "$*" >>"$CALLS"
case "$1" in
  login) printf 'stdin=%s\\n' "$(cat)" >>"$CALLS" ;;
  push)
    n=$(cat "$CALLS.pushes" 2>/dev/null || echo 0); echo $((n + 1)) >"$CALLS.pushes"
    [ "$n" -lt "${FAIL_PUSHES:-0}" ] && { echo "net/http: TLS handshake timeout" >&2; exit 1; } ;;
  image)
    case "$2" in
      inspect) [ "$3" = --format ] && echo "10.0.0.1:5000/workhub/wbhubmanager@sha256:abc other@sha256:def" ;;
    esac ;;
esac
exit 0
"""


def run_push(tmp_path, fail_pushes: int = 0):
    """The push script with a stand-in docker, the registry password in front of it as workhub puts it."""
    import os
    import subprocess

    from components.config.models import BuildSettings, RegistryConfig
    from components.ssh import with_secrets
    from components.render.swarm.scripts import push_script

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(STUB_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    calls = tmp_path / "calls"
    text = push_script("wbhubmanager:staging-0123456789ab", f"{REGISTRY}/workhub/wbhubmanager:staging-0123456789ab",
                       RegistryConfig(server=REGISTRY, username="ci"),
                       BuildSettings.model_validate({"attempts": 3, "retryBackoffSeconds": 0}))
    done = subprocess.run(["bash", "-s"], input=with_secrets(text, {"registry_password": PASSWORD}), text=True,
                          capture_output=True, env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                                                    "CALLS": str(calls), "FAIL_PUSHES": str(fail_pushes)})
    return done, calls.read_text().splitlines()


def test_the_push_logs_in_from_stdin_tags_pushes_and_reports_the_digest(tmp_path):
    done, calls = run_push(tmp_path, fail_pushes=1)
    assert done.returncode == 0, done.stderr
    remote = f"{REGISTRY}/workhub/wbhubmanager:staging-0123456789ab"
    assert f"login --username ci --password-stdin {REGISTRY}" in calls
    assert f"stdin={PASSWORD}" in calls and not any(PASSWORD in call for call in calls if not call.startswith("stdin="))
    assert f"tag wbhubmanager:staging-0123456789ab {remote}" in calls
    assert calls.count(f"push {remote}") == 2, "a push that failed from the network is tried again"
    assert f"image rm {remote}" in calls, "only the registry's tag goes; the build node keeps its image"
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "image": "wbhubmanager:staging-0123456789ab", "pushed": remote,
        "digest": f"{REGISTRY}/workhub/wbhubmanager@sha256:abc"}
    assert PASSWORD not in done.stderr


def test_a_push_that_keeps_failing_says_so_last(tmp_path):
    done, calls = run_push(tmp_path, fail_pushes=5)
    assert done.returncode == 1
    assert calls.count(f"push {REGISTRY}/workhub/wbhubmanager:staging-0123456789ab") == 3
    assert done.stderr.splitlines()[-1] == (f"push: FAILED: could not push {REGISTRY}/workhub/wbhubmanager:"
                                            f"staging-0123456789ab to {REGISTRY} after 3 attempt(s)")


def test_swarm_push_and_remove_scripts_golden():
    from components.config.models import BuildSettings, RegistryConfig
    from components.render.swarm.scripts import push_script, remove_script
    from tests.unit.render.test_scripts import golden

    push = push_script("wbhubmanager:staging-0123456789ab", f"{REGISTRY}/workhub/wbhubmanager:staging-0123456789ab",
                       RegistryConfig(server=REGISTRY, username="ci"), BuildSettings())
    golden("swarm-push.sh", push)
    golden("swarm-remove.sh", remove_script("staging"))
    import subprocess
    for text in (push, remove_script("staging")):
        assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0


@pulumi.runtime.test
def test_a_hubs_volume_on_its_data_node_is_a_resource_after_the_deploy(mocks, project, registered):
    """On a Swarm, each hub volume is a command on the hub's data node, after the deploy (whose task
    makes it), labelled with the Swarm stack's namespace when it has to make it; not protected in
    staging."""
    from components.program import program

    def check(_):
        volume = by_name(mocks, "wbsaleshub-volume-data")
        _, opts = registered["wbsaleshub-volume-data"]
        assert [r._name for r in opts.depends_on] == ["swarm-deploy"] and opts.protect is False
        assert volume.inputs["connection"]["host"] == "10.0.0.12" and volume.inputs["connection"]["hostKey"] == KEYS[1]
        assert "\nvolume=workhub-staging-wbsaleshub-data\n" in volume.inputs["create"]
        assert "\nnamespace=workhub-staging\n" in volume.inputs["create"]
        assert volume.inputs.get("delete") is None
        assert not [name for name in registered if name.startswith("wbhubmanager-volume")], "it has no volume"

    program(project, CiPushes())
    return pulumi.Output.all(*[command.urn for command, _ in registered.values()]).apply(check)
