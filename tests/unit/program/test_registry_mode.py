"""Registry mode's resource graph, with Pulumi's mocks (the docker provider plugin cannot be built
on these machines; the host side runs for real in test_e2e_registry.py): pulumi-docker builds and
pushes each registry-mode hub with BuildKit and a registry cache, and the host pulls it in the same
one-at-a-time chain as the host builds, before the same run step."""

import json

import pulumi
import pytest

from components.render.host.build import pull_script
from tests.unit.program.test_graph import HUBS, SECRET_SIG, Mocks, by_name, commands, config, make_project

SERVER = "registry.example.test:5000"
PASSWORD = "registry-password-for-the-mocks"
MODES = {"wbhubmanager": "remote", "wbsaleshub": "registry", "wbfinhub": "registry"}


def registry_config(modes=MODES, **registry) -> dict:
    values = config()
    values["workhub:hubs"] = json.dumps([{"name": n, "context": c, "port": p, "buildMode": modes[n]} for n, c, p in HUBS])
    values["workhub:registry"] = json.dumps({"server": SERVER, "username": "ci", "platform": "linux/arm64", **registry})
    values["workhub:registryPassword"] = PASSWORD
    return values


class RegistryMocks(Mocks):
    def new_resource(self, args):
        name, outputs = super().new_resource(args)
        if args.typ == "docker:index/image:Image":
            outputs["repoDigest"] = args.inputs["imageName"].rsplit(":", 1)[0] + "@sha256:" + "1" * 64
        return name, outputs


@pytest.fixture
def mocks():
    mocks = RegistryMocks()
    pulumi.runtime.set_mocks(mocks, project="workhub", stack="staging", preview=False)
    pulumi.runtime.set_all_config(registry_config(), secret_keys=["workhub:sshPrivateKey", "workhub:registryPassword"])
    yield mocks
    pulumi.runtime.set_all_config({}, secret_keys=[])


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path)


@pytest.fixture
def depends_on(monkeypatch) -> dict[str, list[str]]:
    """The depends_on each RemoteCommand is created with, by name."""
    from components.resources.command import RemoteCommand

    seen: dict[str, list[str]] = {}
    original = RemoteCommand.__init__

    def spy(self, name, **kwargs):
        seen[name] = [r._name for r in (kwargs["opts"].depends_on or [])]
        original(self, name, **kwargs)

    monkeypatch.setattr(RemoteCommand, "__init__", spy)
    return seen


def run(project, check):
    from components.program import program

    host, chain, _ = program(project)
    return pulumi.Output.all(*[image.url for image in chain.images]).apply(lambda _: check(chain))


def plain(value):
    """An input with every secret left out (the mocks see a secret as {sig: ..., value: ...})."""
    if isinstance(value, dict):
        if SECRET_SIG in value.values():
            return "[secret]"
        return {key: plain(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [plain(inner) for inner in value]
    return value


def is_secret(value) -> bool:
    return isinstance(value, dict) and SECRET_SIG in value.values()


@pulumi.runtime.test
def test_registry_hubs_are_built_by_pulumi_docker_with_buildkit_and_a_registry_cache(mocks, project):
    """docker.Image builds the hub's context with BuildKit, the host build's args (NODE_OPTIONS
    heap, npm settings) plus an inline cache, takes its cache from the stack's newest image, and
    pushes with the registry login; the host-built hub registers no docker resource."""

    def check(chain):
        image = by_name(mocks, "wbsaleshub-image")
        assert image.typ == "docker:index/image:Image"
        tag = chain.images[1].image.split(":", 1)[1]
        assert image.inputs["imageName"] == f"{SERVER}/workhub/wbsaleshub:{tag}" == chain.images[1].pushed
        build = image.inputs["build"]
        assert build["context"] == str(project.parent / "src" / "WBSalesHub")
        assert build["dockerfile"] == str(project.parent / "src" / "WBSalesHub" / "Dockerfile")
        assert build["builderVersion"] == "BuilderBuildKit"
        assert build["cacheFrom"] == {"images": [f"{SERVER}/workhub/wbsaleshub:staging"]}
        assert build["platform"] == "linux/arm64" and build["network"] == "default", "RUN steps on the bridge network"
        assert build["args"]["NODE_OPTIONS"] == "--max-old-space-size=4096"
        assert build["args"]["NPM_CONFIG_FETCH_RETRIES"] == "5" and build["args"]["NPM_CONFIG_PREFER_OFFLINE"] == "true"
        assert build["args"]["BUILDKIT_INLINE_CACHE"] == "1"
        # The login holds the password, so the engine keeps the whole of it secret.
        registry = image.inputs["registry"]
        assert is_secret(registry) and registry["value"] == {"server": SERVER, "username": "ci", "password": PASSWORD}
        assert not [r for r in mocks.resources if r.name.startswith("wbhubmanager-") and r.typ.startswith("docker:")]
        assert by_name(mocks, "wbhubmanager-build").typ == "pulumi-python:dynamic:Resource"

    return run(project, check)


@pulumi.runtime.test
def test_each_new_image_is_pushed_again_as_the_stacks_newest_for_the_next_builds_cache(mocks, project):
    """The pushed image is tagged <hub>:<stack> and pushed through a provider with the login
    (a secret), replaced whenever the image's digest changes."""

    def check(chain):
        tag, newest = by_name(mocks, "wbsaleshub-newest-tag"), by_name(mocks, "wbsaleshub-newest")
        assert tag.typ == "docker:index/tag:Tag" and newest.typ == "docker:index/registryImage:RegistryImage"
        assert tag.inputs["sourceImage"] == chain.images[1].pushed
        assert tag.inputs["targetImage"] == newest.inputs["name"] == f"{SERVER}/workhub/wbsaleshub:staging"
        assert newest.inputs["keepRemotely"] is True
        assert newest.inputs["triggers"] == {"digest": f"{SERVER}/workhub/wbsaleshub@sha256:" + "1" * 64}
        provider = by_name(mocks, "wbsaleshub-registry")
        assert provider.typ == "pulumi:providers:docker" and is_secret(provider.inputs["registryAuth"])
        (auth,) = json.loads(provider.inputs["registryAuth"]["value"])
        assert auth == {"address": SERVER, "username": "ci", "password": PASSWORD}
        assert "::wbsaleshub-registry::" in newest.provider, "the push of the newest tag logs in"

    return run(project, check)


@pulumi.runtime.test
def test_the_host_pulls_in_the_build_chain_after_the_push_then_runs_the_same_step(mocks, project, depends_on):
    """A registry hub's pull takes the build's place in the one-at-a-time chain and also waits
    for its push; its run step waits for the pull, as a run waits for a build."""

    def check(chain):
        assert depends_on["wbhubmanager-build"] == ["build-host-preflight", "build-host-setup"]
        assert depends_on["wbsaleshub-pull"] == ["wbhubmanager-build", "wbsaleshub-image", "wbsaleshub-newest-tag",
                                                 "wbsaleshub-newest"]
        assert depends_on["wbfinhub-pull"][0] == "wbsaleshub-pull"
        assert depends_on["wbsaleshub-run"] == ["wbsaleshub-pull"]
        pull = by_name(mocks, "wbsaleshub-pull")
        image = chain.images[1]
        plan_id = image.image.rsplit("-", 1)[1]
        from components.config.models import BuildSettings, Hub

        hub = Hub(name="wbsaleshub", context="WBSalesHub", port=4091, buildMode="registry")
        assert pull.inputs["create"] == pull_script(hub, "staging", image.image, plan_id, image.pushed, SERVER, "ci",
                                                    BuildSettings())
        assert pull.inputs.get("upload") is None, "nothing is uploaded to the host in registry mode"
        assert sorted(pull.inputs["triggers"]) == ["dockerfile", "settings", "source"]
        assert "image=" + image.image in by_name(mocks, "wbsaleshub-run").inputs["create"]

    return run(project, check)


@pulumi.runtime.test
def test_the_registry_password_reaches_the_pull_only_as_a_secret(mocks, project):
    """The pull gets the password as a secret shell variable; no resource holds it in plain text."""

    def check(chain):
        values = by_name(mocks, "wbsaleshub-pull").inputs["secretValues"]
        assert is_secret(values) and values["value"] == {"registry_password": PASSWORD}
        assert by_name(mocks, "wbhubmanager-build").inputs.get("secretValues") is None
        for resource in mocks.resources:
            assert PASSWORD not in json.dumps(plain(dict(resource.inputs)), default=str), resource.name

    return run(project, check)


@pulumi.runtime.test
def test_a_stack_that_builds_nothing_on_the_host_skips_the_build_checks_of_the_preflight(mocks, project):
    """With every hub in registry mode, the preflight checks disk only (no Node heap, no BuildKit)."""
    pulumi.runtime.set_all_config(registry_config({name: "registry" for name in MODES}),
                                  secret_keys=["workhub:sshPrivateKey", "workhub:registryPassword"])

    def check(chain):
        assert "\nbuilds_here=false\n" in by_name(mocks, "build-host-preflight").inputs["create"]
        assert [c.name for c in commands(mocks) if c.name.endswith("-build")] == []

    return run(project, check)


def test_registry_mode_without_a_registry_registers_nothing(mocks, project):
    """A registry-mode hub in a stack with no workhub:registry stops the program with the fix."""
    from components.program import program

    values = registry_config()
    del values["workhub:registry"], values["workhub:registryPassword"]
    pulumi.runtime.set_all_config(values, secret_keys=["workhub:sshPrivateKey"])
    with pytest.raises(pulumi.RunError) as caught:
        program(project)
    assert ("workhub:registry.server: is not set, but wbsaleshub, wbfinhub build(s) in registry mode"
            in str(caught.value))
    assert mocks.resources == []
