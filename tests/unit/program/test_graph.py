"""The resource graph, with Pulumi's mocks: what gets registered, under which parent, in which
order, with which inputs, and that no secret reaches a plain input or output."""

import json
from pathlib import Path

import pulumi
import pytest

from components.render.host.build import host_facts_script, image_check_script
from components.render.shell import quote
from tests.hub_context import write_hub_context

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFloHIpcBboBa5fvOHzc3/flmdn24bmBRbRH+dbManFE"
PRIVATE_KEY = "-----BEGIN " + "OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n"
FACTS = {"docker_version": "20.10.24", "builder": "docker-build", "buildkit": True,
         "cpus": 2, "memory_mb": 24000, "swap_mb": 0, "disk_free_mb": 50000}
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"  # Pulumi's marker for a secret value on the wire
HUBS = [("wbhubmanager", "WBHubManager", 4090), ("wbsaleshub", "WBSalesHub", 4091), ("wbfinhub", "WBFinHub", 4092)]


class Mocks(pulumi.runtime.Mocks):
    def __init__(self):
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args):
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ == "pulumi-python:dynamic:Resource":
            if args.name.endswith("-run"):
                outputs["stdout"] = json.dumps({"container": "c", "url": f"http://127.0.0.1/{args.name}"})
            else:
                outputs["stdout"] = "noise\n" + json.dumps(FACTS) + "\n"
        return f"{args.name}-id", outputs

    def call(self, args):
        return {}


def make_project(root: Path) -> Path:
    for _, context, _ in HUBS:
        write_hub_context(root / "src" / context, f"// {context}\n")
    (root / "project").mkdir()
    return root / "project"


def config(**host) -> dict:
    return {
        "workhub:host": json.dumps({"address": "build.example.test", "user": "deploy", "port": 2222,
                                    "hostKey": HOST_KEY, **host}),
        "workhub:sshPrivateKey": PRIVATE_KEY,
        "workhub:sourceRoot": "../src",
        "workhub:hubs": json.dumps([{"name": n, "context": c, "port": p} for n, c, p in HUBS]),
        "workhub:hostPorts": json.dumps({n: 10000 + p for n, _, p in HUBS}),
    }


@pytest.fixture
def mocks(stack_state):
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="workhub", stack="staging", preview=False)
    pulumi.runtime.set_all_config(config(), secret_keys=["workhub:sshPrivateKey"])
    yield mocks
    pulumi.runtime.set_all_config({}, secret_keys=[])


@pytest.fixture
def project(tmp_path) -> Path:
    return make_project(tmp_path)


def commands(mocks: Mocks) -> list:
    """Every remote command registered (the stack's key is a dynamic resource too, not a command)."""
    return [r for r in mocks.resources if r.typ == "pulumi-python:dynamic:Resource" and "connection" in r.inputs]


def by_name(mocks: Mocks, name: str):
    (found,) = [r for r in mocks.resources if r.name == name]
    return found


def run(project: Path, check):
    """Run the program and call check() once every output has resolved."""
    from components.program import program

    host, chain, _ = program(project)
    urns = ([host.facts_command.urn] + [image.build.urn for image in chain.images]
            + [image.urn for image in chain.images] + [image.url for image in chain.images])
    return pulumi.Output.all(*urns).apply(lambda values: check(host, chain, values))


@pulumi.runtime.test
def test_components_and_their_children(mocks, project):
    """BuildHost holds facts, preflight and setup; BuildChain holds one HubImage per hub, each with build and run."""

    def check(host, chain, urns):
        assert by_name(mocks, "build-host").typ == "workhub:host:BuildHost"
        assert by_name(mocks, "hubs").typ == "workhub:hub:BuildChain"
        for name, _, _ in HUBS:
            assert by_name(mocks, name).typ == "workhub:hub:HubImage"
            assert by_name(mocks, f"{name}-build").typ == "pulumi-python:dynamic:Resource"
            assert by_name(mocks, f"{name}-run").typ == "pulumi-python:dynamic:Resource"
        facts_urn, *build_urns = urns[:4]
        image_urns = urns[4:7]
        # A child's URN carries its parent's type: that is how the parent link shows.
        assert facts_urn.endswith("workhub:host:BuildHost$pulumi-python:dynamic:Resource::build-host-facts")
        assert image_urns[1].endswith("workhub:hub:BuildChain$workhub:hub:HubImage::wbsaleshub")
        assert build_urns[1].endswith("workhub:hub:HubImage$pulumi-python:dynamic:Resource::wbsaleshub-build")

    return run(project, check)


@pytest.fixture
def depends_on(monkeypatch) -> dict[str, list[str]]:
    """The depends_on each RemoteCommand is created with, by name (what the engine orders by)."""
    from components.resources.command import RemoteCommand

    seen: dict[str, list[str]] = {}
    original = RemoteCommand.__init__

    def spy(self, name, **kwargs):
        opts = kwargs.get("opts")
        seen[name] = [r._name for r in (opts.depends_on or [])] if opts else []
        original(self, name, **kwargs)

    monkeypatch.setattr(RemoteCommand, "__init__", spy)
    return seen


@pulumi.runtime.test
def test_builds_run_one_after_another_in_config_order(mocks, project, depends_on):
    """Each build depends on the previous hub's build; the first on the preflight and the host setup."""

    def check(host, chain, urns):
        assert depends_on["build-host-preflight"] == []
        assert depends_on["build-host-setup"] == ["build-host-preflight"]
        assert depends_on["wbhubmanager-build"] == ["build-host-preflight", "build-host-setup"]
        assert depends_on["wbsaleshub-build"] == ["wbhubmanager-build"]
        assert depends_on["wbfinhub-build"] == ["wbsaleshub-build"]
        for name, _, _ in HUBS:
            assert depends_on[f"{name}-run"] == [f"{name}-build"]

    return run(project, check)


@pulumi.runtime.test
def test_connection_pins_host_key_and_limits_dials(mocks, project):
    """Every command carries the pinned host key, the dial limit and the per-dial timeout."""

    def check(host, chain, urns):
        for resource in commands(mocks):
            assert resource.inputs["connection"] == {
                "host": "build.example.test", "port": 2222, "user": "deploy", "hostKey": HOST_KEY,
                "dialErrorLimit": 10, "perDialTimeout": 15, "keepAliveInterval": 30,
            }, resource.name
        assert by_name(mocks, "build-host-facts").inputs["create"] == host_facts_script("node:24-bookworm-slim")

    return run(project, check)


@pulumi.runtime.test
def test_build_triggers_and_image_tag_come_from_content(mocks, project):
    """The build's triggers are the source, Dockerfile and settings hashes; the tag is derived from them."""

    def check(host, chain, urns):
        build = by_name(mocks, "wbsaleshub-build")
        triggers = build.inputs["triggers"]
        assert sorted(triggers) == ["dockerfile", "settings", "source"]
        image = chain.images[1].image
        assert image.startswith("wbsaleshub:staging-") and len(image.split("-")[-1]) == 12
        assert f"image={image}" in build.inputs["create"]
        assert build.inputs["upload"]["remoteDir"] == ".workhub/contexts/staging/wbsaleshub"
        assert build.inputs["upload"]["hash"] == triggers["source"]
        run = by_name(mocks, "wbsaleshub-run")
        assert "\nport=4091\n" in run.inputs["create"] and "\nhost_port=14091\n" in run.inputs["create"]

    return run(project, check)


@pulumi.runtime.test
def test_a_hubs_commands_show_what_their_scripts_carry_as_data(mocks, project):
    """Each hub's build shows its image, and its run the plain values at the top of its script (its
    image, host port, ...), in their `summary` input: what workhub.summary reads, none of it parsed
    back out of a script."""

    def check(host, chain, urns):
        for name, _, port in HUBS:
            build_inputs, run_inputs = (by_name(mocks, f"{name}-{role}").inputs for role in ("build", "run"))
            shown = run_inputs["summary"]
            assert build_inputs["summary"] == {"image": shown["image"]}, name
            assert (shown["hub"], shown["port"], shown["host_port"]) == (name, port, 10000 + port), name
            lines = run_inputs["create"].splitlines()
            for key, value in shown.items():
                value = int(value) if isinstance(value, float) else value  # the mocks' numbers are floats
                assert f"{key}={quote(value)}" in lines, f"{name}-run: {key} is not what its script carries"

    return run(project, check)


@pulumi.runtime.test
def test_private_key_is_secret_and_only_in_its_own_input(mocks, project):
    """The SSH key reaches each command only as a secret, and appears in no other input."""

    def check(host, chain, urns):
        for resource in commands(mocks):
            key = resource.inputs["privateKey"]
            assert isinstance(key, dict) and SECRET_SIG in key.values(), resource.name
            others = {k: v for k, v in resource.inputs.items() if k != "privateKey"}
            assert "PRIVATE KEY" not in json.dumps(others, default=str), resource.name

    return run(project, check)


@pulumi.runtime.test
def test_facts_are_parsed_from_the_last_stdout_line(mocks, project):
    """Facts come from the JSON the script prints last; earlier lines are ignored."""
    from components.program import program

    host, _, _ = program(project)
    return host.facts.apply(lambda facts: assert_equal(facts, FACTS))


def test_the_free_disk_shown_is_the_last_preflights_and_the_other_facts_the_first_check():
    """The outputs' free disk is what the preflight measured last (it runs on each up that builds or
    changes an image); the other facts are read once; a preflight from before it printed its figure
    leaves the facts' own."""
    from components.resources.host.build_host import facts_now

    facts = "noise\n" + json.dumps(FACTS) + "\n"
    assert facts_now(facts, 'ok\n{"disk_free_mb": 123}\n') == {**FACTS, "disk_free_mb": 123}
    assert facts_now(facts, "") == FACTS and facts_now(facts, None) == FACTS


def assert_equal(got, want):
    assert got == want


def test_bad_config_registers_nothing(mocks, project):
    """An invalid stack config stops the program before any resource is registered."""
    from components.program import program

    pulumi.runtime.set_all_config(config(address="bad host;"), secret_keys=[])
    with pytest.raises(pulumi.RunError) as caught:
        program(project)
    message = str(caught.value)
    assert "workhub:host.address: must be a DNS name" in message
    assert "workhub:sshPrivateKey: is stored in plain text" in message
    assert mocks.resources == []


SECRET_VALUE = "not-a-real-session-secret-0123456789"


@pulumi.runtime.test
def test_a_hubs_secrets_reach_only_its_run_and_only_as_secrets(mocks, project, monkeypatch):
    """A hub's secret values are one secret input of its own run command; its triggers name each
    secret by a fingerprint; no other input of any command holds the value; the run names the
    PromotedHub's run as an alias, so pinning it later is an update, not a delete of the running hub."""
    from components.resources.command import RemoteCommand

    aliases: dict[str, list] = {}
    original = RemoteCommand.__init__

    def spy(self, name, **kwargs):
        aliases[name] = list(kwargs["opts"].aliases or [])
        original(self, name, **kwargs)

    monkeypatch.setattr(RemoteCommand, "__init__", spy)
    settings = config()
    hubs = json.loads(settings["workhub:hubs"])
    hubs[1].update(env={"LOG_LEVEL": "info"}, secrets=["SESSION_SECRET"], volumes={"data": "/app/data"})
    settings["workhub:hubs"] = json.dumps(hubs)
    settings["workhub:secrets"] = json.dumps({"wbsaleshub": {"SESSION_SECRET": SECRET_VALUE}})
    pulumi.runtime.set_all_config(settings, secret_keys=["workhub:sshPrivateKey", "workhub:secrets"])

    def check(host, chain, urns):
        run = by_name(mocks, "wbsaleshub-run")
        secret = run.inputs["secretValues"]
        assert isinstance(secret, dict) and SECRET_SIG in secret.values()
        assert set(run.inputs["triggers"]["secrets"]) == {"SESSION_SECRET"}
        assert run.inputs["triggers"]["env"]["LOG_LEVEL"] == "info"
        assert run.inputs["triggers"]["volumes"] == {"data": "/app/data"}
        assert "secret_env=(SESSION_SECRET)" in run.inputs["create"]
        for resource in commands(mocks):
            plain = {k: v for k, v in resource.inputs.items() if k != "secretValues"}
            assert SECRET_VALUE not in json.dumps(plain, default=str), resource.name
        assert "secretValues" not in by_name(mocks, "wbhubmanager-run").inputs or \
            by_name(mocks, "wbhubmanager-run").inputs["secretValues"] is None
        (alias,) = aliases["wbsaleshub-run"]
        assert alias.parent == "urn:pulumi:staging::workhub::workhub:hub:PromotedHub::wbsaleshub"

    return run(project, check)


STACK_KEY = "c0ffee" * 10 + "abcd"
"""The key a stack made on its first `up` with a secret, as the engine hands it back from then on."""


class KeyedMocks(Mocks):
    """The stack's key resource answers with the key stored in the state, as the engine does."""

    def new_resource(self, args):
        name, outputs = super().new_resource(args)
        if args.name == "fingerprint-key":
            outputs = {"key": STACK_KEY}
        return name, outputs


def with_a_secret(ssh_key: str = PRIVATE_KEY) -> dict:
    settings = {**config(), "workhub:sshPrivateKey": ssh_key}
    hubs = json.loads(settings["workhub:hubs"])
    hubs[1].update(secrets=["SESSION_SECRET"])
    settings["workhub:hubs"] = json.dumps(hubs)
    settings["workhub:secrets"] = json.dumps({"wbsaleshub": {"SESSION_SECRET": SECRET_VALUE}})
    return settings


@pytest.fixture
def keyed_mocks(stack_state) -> KeyedMocks:
    stack_state.key = STACK_KEY  # what the program reads of the state before it declares anything
    mocks = KeyedMocks()
    pulumi.runtime.set_mocks(mocks, project="workhub", stack="staging", preview=False)
    yield mocks
    pulumi.runtime.set_all_config({}, secret_keys=[])


@pytest.fixture
def dynamic_options(monkeypatch) -> dict[str, pulumi.ResourceOptions]:
    """The options each dynamic resource is registered with, by name."""
    seen: dict[str, pulumi.ResourceOptions] = {}
    original = pulumi.dynamic.Resource.__init__

    def spy(self, provider, name, props, opts=None):
        seen[name] = opts
        original(self, provider, name, props, opts)

    monkeypatch.setattr(pulumi.dynamic.Resource, "__init__", spy)
    return seen


@pytest.mark.parametrize("ssh_key", [PRIVATE_KEY, PRIVATE_KEY.replace("not-a-real-key", "a-rotated-key")])
@pulumi.runtime.test
def test_secret_fingerprints_are_keyed_with_the_stacks_own_key_not_the_ssh_key(keyed_mocks, project, dynamic_options,
                                                                               ssh_key):
    """With either SSH key, the run's trigger for a secret is the same: its fingerprint under the
    stack's own key, a resource of the stack's root made once (later runs' fresh keys ignored) and a
    secret in and out; its value reaches no other resource."""
    from components.config.runtime import fingerprint

    pulumi.runtime.set_all_config(with_a_secret(ssh_key), secret_keys=["workhub:sshPrivateKey", "workhub:secrets"])

    def check(host, chain, urns):
        run = by_name(keyed_mocks, "wbsaleshub-run")
        assert run.inputs["triggers"]["secrets"] == {
            "SESSION_SECRET": fingerprint(STACK_KEY, "wbsaleshub", "SESSION_SECRET", SECRET_VALUE)}
        assert run.inputs["triggers"]["secrets"]["SESSION_SECRET"] == "2f4ece54aeaefb9f", "the same under either SSH key"
        (key,) = [r for r in keyed_mocks.resources if r.name == "fingerprint-key"]
        assert key.typ == "pulumi-python:dynamic:Resource" and SECRET_SIG in key.inputs["key"].values()
        options = dynamic_options["fingerprint-key"]
        assert options.ignore_changes == ["key"] and options.additional_secret_outputs == ["key"]
        assert options.parent is None, "a resource of the stack itself: no component's change moves it"
        for resource in keyed_mocks.resources:
            if resource.name != "fingerprint-key":
                assert STACK_KEY not in json.dumps(resource.inputs, default=str), resource.name

    return run(project, check)


@pulumi.runtime.test
def test_a_stack_whose_hubs_have_no_secret_makes_no_key(mocks, project):
    def check(host, chain, urns):
        assert "fingerprint-key" not in [r.name for r in mocks.resources]

    return run(project, check)


def test_the_stack_key_keeps_the_key_it_was_made_with():
    """Its provider stores the first key offered, never sees a change, and an update (which the
    engine has no cause to run) keeps the stored key."""
    from components.resources.host.stack_key import StackKeyProvider

    provider = StackKeyProvider()
    made = provider.create({"key": "k1"})
    assert made.outs == {"key": "k1"}
    assert provider.diff(made.id, {"key": "k1"}, {"key": "k2"}).changes is False
    assert provider.update(made.id, {"key": "k1"}, {"key": "k2"}).outs == {"key": "k1"}


def test_the_stack_key_is_read_from_an_export_with_its_secrets_shown():
    """The key as `pulumi stack export --show-secrets` shows it (a secret's envelope with its
    plaintext), "" for a key resource without one, None for a stack that has none yet."""
    from components.resources.host.stack_key import DYNAMIC, NAME, stored_key

    urn = f"urn:pulumi:staging::workhub::{DYNAMIC}::{NAME}"
    shown = {"4dabf18193072939515e22adb298388d": SECRET_SIG, "plaintext": json.dumps(STACK_KEY)}
    other = {"urn": "urn:pulumi:staging::workhub::workhub:hub:BuildChain::hubs", "type": "workhub:hub:BuildChain"}
    assert stored_key({"resources": [other, {"urn": urn, "type": DYNAMIC, "outputs": {"key": shown}}]}) == STACK_KEY
    assert stored_key({"resources": [{"urn": urn, "type": DYNAMIC, "outputs": {}}]}) == ""
    assert stored_key({"resources": [other]}) is None and stored_key(None) is None and stored_key({}) is None


@pulumi.runtime.test
def test_a_stack_without_a_key_makes_one_and_its_input_carries_it(mocks, project, stack_state):
    """The first run with a secret: the key is new, read from nowhere but this run's own resource input."""
    pulumi.runtime.set_all_config(with_a_secret(), secret_keys=["workhub:sshPrivateKey", "workhub:secrets"])

    def check(host, chain, urns):
        assert stack_state.read == ["state of staging"]
        (key,) = [r for r in mocks.resources if r.name == "fingerprint-key"]
        assert len(key.inputs["key"]["value"]) == 64, "32 random bytes, as hex"

    return run(project, check)


def test_a_key_resource_without_a_key_stops_the_program_with_the_fix(mocks, project, stack_state):
    from components.program import program

    stack_state.key = ""
    pulumi.runtime.set_all_config(with_a_secret(), secret_keys=["workhub:sshPrivateKey", "workhub:secrets"])
    with pytest.raises(pulumi.RunError, match=r"the stack's key \(fingerprint-key\) has no value in the state; "
                                              r"take it out with `.* state delete --stack staging <its URN>`"):
        program(project)


@pulumi.runtime.test
def test_a_stack_with_no_hubs_runs_only_the_hosts_own_commands_and_says_so(mocks, project, monkeypatch):
    """An empty workhub:hubs is a host check: facts, preflight and SSH setup only, and one warning
    naming the key and how to add a hub."""
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warnings.append(message))
    pulumi.runtime.set_all_config({**config(), "workhub:hubs": "[]", "workhub:hostPorts": "{}"},
                                  secret_keys=["workhub:sshPrivateKey"])

    def check(host, chain, urns):
        assert sorted(r.name for r in commands(mocks)) == ["build-host-facts", "build-host-preflight",
                                                           "build-host-setup"]
        assert chain.images == []
        (warning,) = warnings
        assert warning.startswith("workhub:hubs is empty: this stack builds and deploys nothing, it only checks the host")
        assert "add it to workhub:hubs in Pulumi.yaml and its host port as workhub:hostPorts.<hub>" in warning
        assert "(registry mode)" not in by_name(mocks, "build-host-preflight").inputs["create"]

    from components.program import program

    host, chain, _ = program(project)
    return pulumi.Output.all(host.facts_command.urn, *[command.urn for command in host.ready]).apply(
        lambda _: check(host, chain, []))


@pulumi.runtime.test
def test_each_hubs_run_and_build_carry_the_drift_check_of_what_they_leave(mocks, project):
    """A refresh checks each hub's run against the host (components.render.host.deploy.check_script, for the same
    image, port and settings the run deploys) and its build (the image is there); the host's own
    commands have no check."""

    def check(host, chain, urns):
        for name, _, port in HUBS:
            run = by_name(mocks, f"{name}-run")
            image = [i.image for i in chain.images if i.image.startswith(f"{name}:")][0]
            assert f"\nimage={image}\n" in run.inputs["check"] and f"\nbase={name}-staging\n" in run.inputs["check"]
            assert f'"published": "{10000 + port}"' in run.inputs["check"], "the proxy's Compose file, host port and all"
            assert by_name(mocks, f"{name}-build").inputs["check"] == image_check_script(image)
        for resource in commands(mocks):
            if resource.name.startswith("build-host-"):
                assert resource.inputs.get("check") is None, resource.name

    return run(project, check)


@pytest.fixture
def registered(monkeypatch) -> dict:
    """Each RemoteCommand by name, with the options it was created with."""
    from components.resources.command import RemoteCommand

    seen: dict = {}
    original = RemoteCommand.__init__

    def spy(self, name, **kwargs):
        seen[name] = (self, kwargs.get("opts"))
        original(self, name, **kwargs)

    monkeypatch.setattr(RemoteCommand, "__init__", spy)
    return seen


def with_volumes(**more) -> dict:
    """The config with volumes on wbsaleshub (two) and wbfinhub (one), and `more` settings."""
    settings = {**config(), **more}
    hubs = json.loads(settings["workhub:hubs"])
    hubs[1]["volumes"] = {"data": "/app/data", "uploads": "/app/uploads"}
    hubs[2]["volumes"] = {"ledger": "/app/ledger"}
    settings["workhub:hubs"] = json.dumps(hubs)
    return settings


VOLUMES = {"wbsaleshub-volume-data": "wbsaleshub", "wbsaleshub-volume-uploads": "wbsaleshub",
           "wbfinhub-volume-ledger": "wbfinhub"}


@pytest.mark.parametrize("stack, setting, protected", [
    ("staging", None, False), ("production", None, True), ("production", "false", False), ("staging", "true", True)])
@pulumi.runtime.test
def test_each_hub_volume_is_a_resource_after_its_deploy_protected_where_data_is(stack, setting, protected, project,
                                                                                registered):
    """Each volume of each hub is a command of a HubData component that makes it when the host lacks
    it and adopts it otherwise (its delete removes nothing), after the hub's run (whose deploy moves a
    pre-proxy container's data into a volume it makes first); protected in production unless
    workhub:protectData says otherwise, and in any stack where it says so. A pinned hub's too."""
    from components.program import program

    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="workhub", stack=stack, preview=False)
    more = {"workhub:pinnedImages": json.dumps({"wbfinhub": "wbfinhub:staging-0123456789ab"})}
    if stack == "production":  # production pins every image its host pulls by digest
        more.update({"workhub:baseImage": "node:24-bookworm-slim@sha256:" + "a" * 64,
                     "workhub:proxyImage": "haproxy:2.6@sha256:" + "b" * 64,
                     "workhub:helperImage": "busybox:1.37@sha256:" + "d" * 64})
    if setting is not None:
        more["workhub:protectData"] = setting
    pulumi.runtime.set_all_config(with_volumes(**more), secret_keys=["workhub:sshPrivateKey"])

    def check(_):
        assert sorted(name for name in registered if "-volume-" in name) == sorted(VOLUMES)
        for name, hub in VOLUMES.items():
            command, opts = registered[name]
            key = name.rsplit("-", 1)[-1]
            assert [r._name for r in opts.depends_on] == [f"{hub}-run"], name
            assert opts.protect is protected, name
            assert type(opts.parent).__name__ == "HubData" and opts.parent._name == hub, name
            inputs = by_name(mocks, name).inputs
            assert f"\nvolume=workhub-{stack}-{hub}-{key}\n" in inputs["create"]
            assert f"\nvolume_key={key}\n" in inputs["create"] and "\nnamespace=''\n" in inputs["create"]
            assert inputs.get("delete") is None, "its delete removes nothing"
            assert "is gone from the host" in inputs["check"]
        data = [r for r in mocks.resources if r.typ == "workhub:hub:HubData"]
        assert sorted(r.name for r in data) == ["wbfinhub", "wbsaleshub"], "none for a hub without volumes"

    program(project)
    return pulumi.Output.all(*[command.urn for command, _ in registered.values()]).apply(check)
