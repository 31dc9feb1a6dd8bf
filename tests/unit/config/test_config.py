"""Stack config validation: each bad value gives one error naming its key and the fix."""

from pathlib import Path

import pytest

from components.config.checks import ConfigError
from components.config.models import BuildSettings, StackConfig
from components.config.parse import namespaced, parse_stack_config

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFloHIpcBboBa5fvOHzc3/flmdn24bmBRbRH+dbManFE"


def valid() -> dict:
    return {
        "host": {"address": "build.example.test", "user": "deploy", "port": 22, "hostKey": HOST_KEY},
        "sshPrivateKey": "-----BEGIN " + "OPENSSH PRIVATE KEY-----...",
    }


def parse(raw: dict, secret_keys=frozenset({"sshPrivateKey"})) -> StackConfig:
    return parse_stack_config(raw, stack="staging", secret_keys=set(secret_keys))


def problems(raw: dict, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(raw, **kwargs)
    return [str(p) for p in caught.value.problems]


def test_valid_config_parses_with_defaults():
    """A minimal valid config gets the documented defaults."""
    config = parse(valid())
    assert config.host.address == "build.example.test"
    assert config.host.dial_error_limit == 10
    assert config.host.per_dial_timeout == 15
    assert config.host.keep_alive_interval == 30
    assert config.base_image == "node:24-bookworm-slim"


def test_missing_host_names_the_key_and_the_command():
    """An empty stack says exactly which keys to set, and how."""
    found = problems({})
    assert found == [
        "workhub:host: is not set\n"
        "    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:host' <value>",
        "workhub:sshPrivateKey: is not set\n"
        "    fix: scripts/workhub pulumi config set --stack staging --secret workhub:sshPrivateKey < <path to the deploy key>",
    ]


def test_missing_address_and_host_key():
    """The committed staging file (user and port only) names the two host keys still to set."""
    raw = valid()
    raw["host"] = {"user": "deploy", "port": 22}
    found = problems(raw)
    assert found == [
        "workhub:host.address: is not set\n"
        "    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:host.address' <address>",
        "workhub:host.hostKey: is not set\n"
        "    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:host.hostKey' 'ssh-ed25519 AAAA...'",
    ]


def test_unknown_key_is_rejected():
    """A typo is an error, not a silently ignored setting."""
    raw = valid()
    raw["host"]["adress"] = "x"
    raw["buildz"] = 1
    found = problems(raw)
    assert "workhub:host.adress: is not a known setting" in found[0]
    assert "scripts/workhub pulumi config rm --stack staging --path 'workhub:host.adress'" in found[0]
    assert "known settings here: address, user, port, hostKey" in found[0]
    assert found[1].startswith("workhub:buildz: is not a known setting")
    assert "scripts/workhub pulumi config rm --stack staging --path 'workhub:buildz'" in found[1]


def test_plaintext_private_key_is_rejected():
    """The SSH key must be a Pulumi secret."""
    found = problems(valid(), secret_keys=set())
    assert found == [
        "workhub:sshPrivateKey: is stored in plain text; it must be a secret\n"
        "    fix: scripts/workhub pulumi config set --stack staging --secret workhub:sshPrivateKey < <path to the deploy key>"
    ]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("address", "host; rm -rf /", "must be a DNS name or an IP address"),
        ("address", "$(reboot)", "must be a DNS name or an IP address"),
        ("address", "10.0.0.5:2222", "holds ':', which only an IPv6 address has: SSH would look up '10.0.0.5:2222' "
                                     "as a host name; the SSH port is a setting of its own"),
        ("address", "build.example.test:22", "holds ':', which only an IPv6 address has"),
        ("address", "10.0.0.300", "must be a DNS name or an IP address; 10.0.0.300 is not an IPv4 address (four "
                                  "numbers from 0 to 255)"),
        ("address", "10.5", "10.5 is not an IPv4 address"),
        ("user", "deploy user", "must be a POSIX user name"),
        ("port", 70000, "less than or equal to 65535"),
        ("hostKey", "not a key", "must be one public key line"),
        ("dialErrorLimit", 0, "greater than or equal to 1"),
    ],
)
def test_bad_host_values(key, value, message):
    """Each bad host value names its own key path."""
    raw = valid()
    raw["host"][key] = value
    (found,) = problems(raw)
    assert found.startswith(f"workhub:host.{key}: ")
    assert message in found
    assert f"--path 'workhub:host.{key}'" in found


@pytest.mark.parametrize("address", ["fe80::1", "2001:db8::5", "10.0.0.5", "build.example.test"])
def test_host_addresses_ssh_reads_as_written_are_accepted(address):
    raw = valid()
    raw["host"]["address"] = address
    assert parse(raw).host.address == address


def test_numbers_given_as_text_are_accepted():
    """`pulumi config set --path host.port 2222` may arrive as text."""
    raw = valid()
    raw["host"]["port"] = "2222"
    assert parse(raw).host.port == 2222


def test_namespaced_picks_and_decodes_workhub_keys():
    """Only workhub: keys are read; object values arrive as JSON text and are decoded."""
    raw, secrets = namespaced(
        {
            "workhub:host": '{"address": "a", "port": 22}',
            "workhub:baseImage": "node:20-bookworm-slim",
            "aws:region": "x",
        },
        ["workhub:sshPrivateKey", "other:token"],
    )
    assert raw == {"host": {"address": "a", "port": 22}, "baseImage": "node:20-bookworm-slim"}
    assert secrets == {"sshPrivateKey"}


def with_hubs(**changes) -> dict:
    raw = valid()
    raw["hubs"] = [{"name": "wbhubmanager", "context": "WBHubManager", "port": 4090},
                   {"name": "wbsaleshub", "context": "WBSalesHub", "port": 4091}]
    raw["hostPorts"] = {"wbhubmanager": 14090, "wbsaleshub": 14091}
    raw.update(changes)
    return raw


def test_hub_catalog_parses():
    config = parse(with_hubs())
    assert [h.name for h in config.hubs] == ["wbhubmanager", "wbsaleshub"]
    assert config.hubs[0].health_path == "/health" and config.hubs[0].dockerfile == "Dockerfile"
    assert config.build.node_heap_mb == 4096


def test_duplicate_host_ports_in_one_stack():
    """Two hubs cannot share a host port."""
    (found,) = problems(with_hubs(hostPorts={"wbhubmanager": 14090, "wbsaleshub": 14090}))
    assert found == (
        "workhub:hostPorts.wbsaleshub: port 14090 is also the host port of wbhubmanager\n"
        "    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:hostPorts.wbsaleshub' <a free port>"
    )


def test_every_hub_needs_a_host_port_and_every_port_a_hub():
    found = problems(with_hubs(hostPorts={"wbhubmanager": 14090, "wbrefhub": 14093}))
    assert found[0].startswith("workhub:hostPorts.wbsaleshub: is not set: hub wbsaleshub needs a host port")
    assert found[1].startswith("workhub:hostPorts.wbrefhub: names no hub in workhub:hubs")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("name", "wb;rm -rf", "must be lower-case letters, digits and '-'"),
        ("name", "$(reboot)", "must be lower-case letters, digits and '-'"),
        ("name", "wbsaleshub\n", "must be lower-case letters, digits and '-'"),
        ("name", "a" * 32, "at most 31 characters"),
        ("context", "../../etc", "without '..'"),
        ("context", "/srv/WBSalesHub", "must be relative"),
        ("context", "WBSalesHub\n", "without '..' or control characters"),
        ("healthPath", "/health; reboot", "must be a URL path"),
        ("healthPath", "/health\n", "must be a URL path"),
        ("port", 0, "greater than or equal to 1"),
        ("port", True, "must be a whole number, not true or false"),
    ],
)
def test_hub_names_and_paths_with_shell_metacharacters_are_refused(field, value, message):
    """Hub values are checked before anything reaches a shell; the error names the hub entry."""
    raw = with_hubs()
    raw["hubs"][1] = dict(raw["hubs"][1], **{field: value})
    found = problems(raw)
    assert found[0].startswith(f"workhub:hubs[1].{field}: ")
    assert message in found[0]
    assert "in the config: section of Pulumi.yaml" in found[0]


@pytest.mark.parametrize("field, value", [("context", "WB Sales"), ("context", "x`id`$(y)"),
                                          ("dockerfile", "docker/Docker;file")])
def test_paths_docker_accepts_are_accepted(field, value):
    """Docker takes any path in a context; every value reaches a shell quoted, so workhub does too."""
    raw = with_hubs()
    raw["hubs"][1] = dict(raw["hubs"][1], **{field: value})
    assert getattr(parse(raw).hubs[1], field) == value


def test_reserved_build_args_belong_to_build_settings():
    raw = with_hubs()
    raw["hubs"][0]["buildArgs"] = {"NODE_OPTIONS": "--max-old-space-size=1"}
    (found,) = problems(raw)
    assert "NODE_OPTIONS is set by workhub from workhub:build; set it there (hub wbhubmanager)" in found


def test_unknown_hub_setting_is_refused():
    raw = with_hubs()
    raw["hubs"][0]["prot"] = 1
    (found,) = problems(raw)
    assert found.startswith("workhub:hubs[0].prot: is not a known setting (hub wbhubmanager)")
    assert "known settings here: name, context, dockerfile, port, healthPath, buildArgs" in found


def test_build_settings_cross_check():
    (found,) = problems(with_hubs(build={"npmFetchRetryMinTimeoutMs": 20000, "npmFetchRetryMaxTimeoutMs": 10000}))
    assert found.startswith("workhub:build.npmFetchRetryMinTimeoutMs: 20000 is more than npmFetchRetryMaxTimeoutMs")

    (found,) = problems(with_hubs(build={"installTries": 5, "installMaxTries": 4}))
    assert found.startswith("workhub:build.installMaxTries: 4 is less than installTries (5)")
    assert parse(with_hubs(build={"installTries": 4, "installMaxTries": 4})).build.install_max_tries == 4


def test_the_projects_npm_network_settings_are_the_measured_defaults():
    """Issue 22: Pulumi.yaml pinned fetch-timeout 30000 and retry pauses 2-15 s, the defaults before
    issue 13, while the benchmark measured BuildSettings' defaults: every stack waited out each
    stall. What the project builds with is what docs/benchmarks.md measured."""
    import yaml

    pinned = yaml.safe_load((Path(__file__).resolve().parents[3] / "Pulumi.yaml").read_text())["config"]["workhub:build"]["value"]
    project, defaults = BuildSettings(**pinned), BuildSettings()
    for field in ("npm_fetch_retries", "npm_fetch_timeout_ms", "npm_fetch_retry_min_timeout_ms",
                  "npm_fetch_retry_max_timeout_ms", "npm_prefer_offline"):
        assert getattr(project, field) == getattr(defaults, field), field


def test_health_passes_that_cannot_fit_in_the_health_timeout_are_refused():
    """A new container misses its first probe: passes x interval at or beyond the timeout fails every deploy."""
    (found,) = problems(with_hubs(deploy={"healthTimeoutSeconds": 30, "healthyPasses": 10, "healthIntervalMs": 3000}))
    assert found == (
        "workhub:deploy.healthTimeoutSeconds: 30 s is not more than healthyPasses x healthIntervalMs (10 x 3000 ms = "
        "30 s): a new container misses the probe made as it starts, so its answers in a row end that long after at "
        "the earliest, and every deploy would fail\n"
        "    fix: raise workhub:deploy.healthTimeoutSeconds above 30, or lower healthyPasses or healthIntervalMs, in "
        "the config: section of Pulumi.yaml")
    assert parse(with_hubs(deploy={"healthTimeoutSeconds": 31, "healthyPasses": 10, "healthIntervalMs": 3000}))


# --- registry mode ------------------------------------------------------------------------------

def registry_stack(**registry) -> dict:
    raw = valid()
    raw["hubs"] = [{"name": "wbsaleshub", "context": "WBSalesHub", "port": 4091, "buildMode": "registry"}]
    raw["hostPorts"] = {"wbsaleshub": 14091}
    if registry:
        raw["registry"] = registry
    return raw


def test_registry_mode_parses_with_its_defaults():
    config = parse(registry_stack(server="127.0.0.1:5000"))
    assert config.hubs[0].build_mode == "registry"
    assert config.registry.server == "127.0.0.1:5000" and config.registry.repository == "workhub"
    assert config.registry.username is None and config.registry.platform is None
    assert parse(valid()).registry is None


def test_unknown_build_mode_names_the_modes():
    raw = registry_stack(server="127.0.0.1:5000")
    raw["hubs"][0]["buildMode"] = "ci"
    (found,) = problems(raw)
    assert found.startswith("workhub:hubs[0].buildMode: must be remote (build on the host) or registry "
                            "(build where Pulumi runs, then pull) (hub wbsaleshub)")
    assert "in the config: section of Pulumi.yaml" in found


def test_registry_hubs_need_a_registry_unless_the_stack_builds_nothing():
    (found,) = problems(registry_stack())
    assert found.startswith("workhub:registry.server: is not set, but wbsaleshub build(s) in registry mode")
    assert "fix: scripts/workhub pulumi config set --stack staging --path 'workhub:registry.server' <registry host[:port]>" in found
    promoting = {**registry_stack(), "promoteFrom": "staging-eu"}
    assert parse(promoting).promote_from == "staging-eu", "a promoting stack pulls nothing from a registry"
    pinned = {**registry_stack(), "pinnedImages": {"wbsaleshub": "wbsaleshub:staging-0123456789ab"}}
    assert parse(pinned).pinned_images


@pytest.mark.parametrize("field, value, message", [
    ("server", "https://registry.example.test", "must be a registry host[:port]"),
    ("server", "registry.example.test/team", "must be a registry host[:port]"),
    ("server", "registry.example.test:99999", "must be a registry host[:port] that can be reached; its port 99999 is "
                                              "outside 1 to 65535"),
    ("server", "registry.example.test:0", "must be a registry host[:port] that can be reached; its port 0 is "
                                          "outside 1 to 65535"),
    ("server", "10.0.0.300:5000", "must be a registry host[:port] that can be reached; 10.0.0.300 is not an IPv4 "
                                  "address (four numbers from 0 to 255)"),
    ("repository", "Team/WorkHub", "must be a lower-case repository path"),
    ("platform", "windows/amd64", "must be a Linux platform"),
    ("username", "ci user", "must be a user name"),
])
def test_bad_registry_settings_name_their_key(field, value, message):
    (found,) = problems(registry_stack(**{"server": "127.0.0.1:5000", field: value}))
    assert found.startswith(f"workhub:registry.{field}: {message}")
    assert f"fix: scripts/workhub pulumi config set --stack staging --path 'workhub:registry.{field}'" in found


def test_registry_login_needs_its_password_as_a_secret():
    secrets = {"sshPrivateKey", "registryPassword"}
    (missing,) = problems(registry_stack(server="127.0.0.1:5000", username="ci"))
    assert missing == ("workhub:registryPassword: is not set, but workhub:registry.username (ci) is\n"
                       "    fix: scripts/workhub pulumi config set --stack staging --secret workhub:registryPassword "
                       "< <file holding the password>")
    plain = {**registry_stack(server="127.0.0.1:5000", username="ci"), "registryPassword": "hunter22"}
    (found,) = problems(plain)
    assert found.startswith("workhub:registryPassword: is stored in plain text; it must be a secret")
    assert parse(plain, secret_keys=secrets).registry.username == "ci"
    empty = {**registry_stack(server="127.0.0.1:5000", username="ci"), "registryPassword": ""}
    assert problems(empty, secret_keys=secrets) == [missing.replace("is not set, but workhub:registry.username (ci) "
                                                                    "is", "is empty (or only white space): the "
                                                                    "registry login would fail")]
    orphan = {**registry_stack(server="127.0.0.1:5000"), "registryPassword": "hunter22"}
    (found,) = problems(orphan, secret_keys=secrets)
    assert found.startswith("workhub:registryPassword: is set, but workhub:registry.username is not")


def test_an_out_of_range_or_boolean_host_port_names_that_hub_alone():
    """Each bad host port is its own key, with a fix for that key, not for the whole map."""
    found = problems(with_hubs(hostPorts={"wbhubmanager": 70000, "wbsaleshub": True}))
    assert found == [
        "workhub:hostPorts.wbhubmanager: Input should be less than or equal to 65535\n"
        "    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:hostPorts.wbhubmanager' <port>",
        "workhub:hostPorts.wbsaleshub: must be a whole number, not true or false\n"
        "    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:hostPorts.wbsaleshub' <port>",
    ]


def test_a_host_key_of_the_right_type_with_bad_key_data_is_refused_at_config_time():
    raw = valid()
    raw["host"]["hostKey"] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFloHIpcBboBa5fvOHzc3/fl"
    (found,) = problems(raw)
    assert found.startswith("workhub:host.hostKey: is not a valid ssh-ed25519 public key (")


@pytest.mark.parametrize("value", ["localhost", "0.0.0.0\n", "127.0.0.256", "127.0.0.1; id"])
def test_a_publish_address_is_an_ip_address(value):
    raw = valid()
    raw["publishAddress"] = value
    (found,) = problems(raw)
    assert found.startswith("workhub:publishAddress: must be an IP address such as 127.0.0.1")


def test_sizes_have_an_upper_bound_the_hosts_shell_can_compare():
    raw = valid()
    raw["build"] = {"minFreeDiskMb": 10 ** 12, "cacheKeepStorageMb": 10 ** 12}
    found = problems(raw)
    assert [line.split(":", 2)[1] for line in found] == ["build.cacheKeepStorageMb", "build.minFreeDiskMb"]
    assert all("less than or equal to 16777216" in line and "Pulumi.yaml" in line for line in found)


@pytest.mark.parametrize("url, problem", [("http://127.0.0.1:99999/", "its port 99999 is outside 1 to 65535"),
                                          ("http://10.0.0.300:4873/", "10.0.0.300 is not an IPv4 address")])
def test_an_npm_registry_url_names_a_reachable_port_and_address(url, problem):
    (found,) = problems({**valid(), "npmRegistry": url})
    assert found.startswith(f"workhub:npmRegistry: must be an http(s) URL that can be reached; {problem}")
    assert parse({**valid(), "npmRegistry": "http://[::1]:4873/"}).npm_registry == "http://[::1]:4873/"


@pytest.mark.parametrize("key, value", [("host", {"user": "deploy\n"}), ("baseImage", "node:20\n"),
                                        ("npmRegistry", "http://127.0.0.1:4873/\n"), ("promoteFrom", "staging\n")])
def test_text_ending_in_a_line_break_is_refused(key, value):
    """Every pattern is matched whole: `$` would also match before a final line break."""
    raw = valid()
    raw[key] = {**raw[key], **value} if isinstance(value, dict) else value
    (found,) = problems(raw)
    assert found.startswith(f"workhub:{key}") and "fix: " in found


@pytest.mark.parametrize("image", ["node:20-bookworm-slim", "127.0.0.1:5000/team/haproxy:2.6",
                                   "registry.example:5000/node@sha256:" + "a" * 64, "[::1]:5000/haproxy:2.6",
                                   "team/sub/haproxy", "haproxy__x:2.6"])
@pytest.mark.parametrize("key", ["baseImage", "proxyImage", "helperImage"])
def test_image_references_docker_accepts_are_accepted(key, image):
    """A registry with a port, a digest, several path parts: Docker's reference grammar."""
    raw = valid()
    raw[key] = image
    assert getattr(parse(raw), {"baseImage": "base_image", "proxyImage": "proxy_image",
                                "helperImage": "helper_image"}[key]) == image
    raw = with_hubs(pinnedImages={"wbsaleshub": image})
    assert parse(raw).pinned_images == {"wbsaleshub": image}


@pytest.mark.parametrize("image, why", [("Node:20", "lowercase"), ("node:", "invalid reference format"),
                                        ("node:20 ", "a space"), ("-node", "invalid reference format"),
                                        ("a" * 256, "more than 255"), ("node@sha256:abc", "invalid"),
                                        ("registry.example:99999/node:24", "registry registry.example:99999: its "
                                                                           "port 99999 is outside 1 to 65535")])
def test_image_references_docker_refuses_are_refused_saying_why(image, why):
    raw = valid()
    raw["proxyImage"] = image
    (found,) = problems(raw)
    assert found.startswith("workhub:proxyImage") and why in found and "fix: " in found


def test_the_helper_image_is_busybox_unless_set():
    """The containers that copy, check or re-own a volume run workhub:helperImage, by default a
    minimal image (busybox), not the proxy's, whatever the proxy's image is."""
    from components.render.host.deploy import Serving, backup_script, restore_script, run_script
    from components.config.models import DeploySettings
    from components.config.runtime import hub_runtime

    raw = valid()
    raw["proxyImage"] = "haproxy:2.6@sha256:" + "b" * 64
    assert parse(raw).helper == "busybox:1.37"
    raw["helperImage"] = "registry.example:5000/tools/busybox:1.37"
    assert parse(raw).helper == "registry.example:5000/tools/busybox:1.37"
    config = parse(with_hubs())
    hub = config.hubs[0]
    assert Serving("127.0.0.1", DeploySettings(), "haproxy:2.6").helper == "busybox:1.37"
    serving = Serving("127.0.0.1", DeploySettings(), "haproxy:2.6", "tools/busybox:1.37")
    assert "\nhelper_image=tools/busybox:1.37\n" in restore_script(hub, "staging", "data", "0" * 64, 1, 4090, serving)
    assert "\nhelper_image=tools/busybox:1.37\n" in run_script(hub, "staging", "hub:staging-0", 4090,
                                                               hub_runtime(hub, config, "staging", {}, "k"), serving)
    assert "\nhelper_image=tools/busybox:1.37\n" in backup_script("v", "tools/busybox:1.37")


def one_hub(name: str, **extra) -> dict:
    return {"name": name, "context": name, "port": 4090, **extra}


def stack_of(*hubs: dict) -> dict:
    raw = valid()
    raw["hubs"] = list(hubs)
    raw["hostPorts"] = {h["name"]: 5000 + i for i, h in enumerate(hubs)}
    return raw


def test_a_hub_runs_as_a_uid_of_its_own_above_every_host_account():
    """By default each hub of a stack gets a stable uid of its own, above login accounts and the
    usual subordinate id ranges, different in another stack, and low enough for any tar format."""
    from components.config.models import MAX_UID, run_uid

    config = parse(stack_of(one_hub("alpha"), one_hub("beta")))
    uids = [run_uid(h, "staging") for h in config.hubs]
    assert len(set(uids)) == 2
    assert all(1_200_000 <= uid <= MAX_UID for uid in uids)
    assert uids == [run_uid(h, "staging") for h in config.hubs]
    assert run_uid(config.hubs[0], "production") != uids[0]


def test_a_hub_uid_is_configurable_but_never_root_and_never_shared():
    """`uid` sets it; 0 (root) and two hubs on one uid are refused, naming the key."""
    from components.config.models import run_uid

    config = parse(stack_of(one_hub("alpha", uid=5001)))
    assert run_uid(config.hubs[0], "staging") == 5001
    found = problems(stack_of(one_hub("alpha", uid=0)))
    assert found[0].startswith("workhub:hubs[0].uid: ")
    found = problems(stack_of(one_hub("alpha", uid=7000), one_hub("beta", uid=7000)))
    assert found == ["workhub:hubs[1].uid: beta would run as uid 7000, as alpha does\n"
                     "    fix: give hubs[1] in Pulumi.yaml a uid of its own (uid: <a number no host account has>)"]


WEBHOOK_FIX = ("    fix: scripts/workhub pulumi config set --stack staging --secret workhub:notifyWebhook "
               "< <file holding the https URL>")


@pytest.mark.parametrize("url", [
    "https://hooks.example.test/services/T0/B0/tok3n",
    "HTTPS://hooks.example.test/x",
    "http://127.0.0.1:8080/hook",
    "http://127.255.0.9/hook",
    "http://[::1]:9000/hook",
    "http://localhost:9000/hook",
    "http://LocalHost/hook",
])
def test_the_webhook_is_https_or_plain_http_to_loopback(url):
    """https anywhere; plain http only to 127.0.0.0/8, ::1 or localhost (the e2e tests' own server)."""
    parse({**valid(), "notifyWebhook": url}, secret_keys={"sshPrivateKey", "notifyWebhook"})


@pytest.mark.parametrize("url, reason", [
    ("http://hooks.example.test/services/T0/B0/tok3n", "is plain http to a host that is not loopback"),
    ("http://10.0.0.7/hook", "is plain http to a host that is not loopback"),
    ("http://127.0.0.1.hooks.example.test/tok3n", "is plain http to a host that is not loopback"),
    ("http://localhost.example.test/tok3n", "is plain http to a host that is not loopback"),
    ("http://[::ffff:10.0.0.7]/tok3n", "is plain http to a host that is not loopback"),
    ("ftp://hooks.example.test/tok3n", "must be an https URL"),
    ("hooks.example.test/tok3n", "is not a URL with a host"),
    ("https:///tok3n", "is not a URL with a host"),
    ("https://[not-an-address/tok3n", "is not a URL"),
    ("https://hooks.example.test:99999/tok3n", "names a port outside 1 to 65535; it must be an https URL"),
    ("https://hooks.example.test:0/tok3n", "names a port outside 1 to 65535"),
])
def test_a_webhook_that_is_not_https_is_refused_without_its_url(url, reason):
    """The problem names the key, says why and how to fix it, and never repeats the URL: it is a
    secret, and may carry a token."""
    (found,) = problems({**valid(), "notifyWebhook": url}, secret_keys={"sshPrivateKey", "notifyWebhook"})
    assert found.startswith(f"workhub:notifyWebhook: {reason}"), found
    assert found.endswith(WEBHOOK_FIX), found
    assert "tok3n" not in found and "hooks.example" not in found and "10.0.0.7" not in found, found


def test_a_plain_text_webhook_is_refused_whatever_its_scheme():
    (found,) = problems({**valid(), "notifyWebhook": "https://hooks.example.test/tok3n"})
    assert found == "workhub:notifyWebhook: is stored in plain text; it must be a secret\n" + WEBHOOK_FIX


@pytest.mark.parametrize("value, production, staging", [(None, True, False), ("false", False, False),
                                                        ("true", True, True), (True, True, True)])
def test_protect_data_defaults_to_production_only_and_is_a_yes_or_no(value, production, staging):
    raw = valid() if value is None else {**valid(), "protectData": value}
    config = parse(raw)
    assert (config.protects_data("production"), config.protects_data("staging")) == (production, staging)
    assert problems({**valid(), "protectData": "maybe"}) == [
        "workhub:protectData: Input should be a valid boolean, unable to interpret input\n"
        "    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:protectData' true"]


PINNED = "@sha256:" + "c" * 64


def test_the_production_stack_pins_every_image_its_hosts_pull():
    """Production refuses a base, proxy or helper image without a digest, each with the command that
    pins the digest its tag names now; other stacks take tags."""
    raw = valid()
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(raw, stack="production", secret_keys={"sshPrivateKey"})
    assert [str(p) for p in caught.value.problems] == [
        "workhub:baseImage: is node:24-bookworm-slim (the default), without a digest: the production stack pins "
        "every image its hosts pull (name:tag@sha256:...), so a tag that moves cannot change what runs there\n"
        "    fix: scripts/workhub pulumi config set --stack production workhub:baseImage \"node:24-bookworm-slim@$("
        "docker buildx imagetools inspect node:24-bookworm-slim | awk '/^Digest:/ {print $2; exit}')\"",
        "workhub:proxyImage: is haproxy:2.6 (the default), without a digest: the production stack pins every image "
        "its hosts pull (name:tag@sha256:...), so a tag that moves cannot change what runs there\n"
        "    fix: scripts/workhub pulumi config set --stack production workhub:proxyImage \"haproxy:2.6@$("
        "docker buildx imagetools inspect haproxy:2.6 | awk '/^Digest:/ {print $2; exit}')\"",
        "workhub:helperImage: is busybox:1.37 (the default), without a digest: the production stack pins every "
        "image its hosts pull (name:tag@sha256:...), so a tag that moves cannot change what runs there\n"
        "    fix: scripts/workhub pulumi config set --stack production workhub:helperImage \"busybox:1.37@$("
        "docker buildx imagetools inspect busybox:1.37 | awk '/^Digest:/ {print $2; exit}')\""]
    raw.update(baseImage="node:24-bookworm-slim" + PINNED, proxyImage="haproxy:2.6" + PINNED,
               helperImage="registry.example:5000/tools/busybox:1.37")
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(raw, stack="production", secret_keys={"sshPrivateKey"})
    assert [p.key for p in caught.value.problems] == ["workhub:helperImage"]
    assert "is registry.example:5000/tools/busybox:1.37, without a digest" in caught.value.problems[0].message
    raw["helperImage"] = "busybox:1.37" + PINNED
    assert parse_stack_config(raw, stack="production", secret_keys={"sshPrivateKey"}).helper == "busybox:1.37" + PINNED
    assert parse(valid()).proxy_image == "haproxy:2.6"  # staging: tags are fine


def test_the_committed_production_stack_pins_its_images_by_index_digest():
    import yaml

    from components.config.checks import PULLED_IMAGES

    committed = yaml.safe_load((Path(__file__).resolve().parents[3] / "Pulumi.production.yaml").read_text())["config"]
    raw = {**valid(), **{key.removeprefix("workhub:"): value for key, value in committed.items()
                         if key.removeprefix("workhub:") in dict(PULLED_IMAGES)}}
    config = parse_stack_config(raw, stack="production", secret_keys={"sshPrivateKey"})
    assert config.base_image.startswith("node:24-bookworm-slim@sha256:")
    assert config.proxy_image.startswith("haproxy:2.6@sha256:")
    # The official busybox image's index digest: the helpers run a minimal image, not the proxy's.
    assert config.helper == ("busybox:1.37@sha256:"
                             "9db7b59979c38555a39def84a31fb98b5296952f9e3afd4f6f11f05b07adfab0")


def test_a_hub_declares_its_capabilities_pids_memory_and_build_network():
    """capAdd takes Docker's names (any case, with or without CAP_), once each; pidsLimit defaults to
    512, memoryMb to none, buildNetwork to Docker's bridge network (default)."""
    config = parse(stack_of(one_hub("alpha", capAdd=["net_bind_service", "CAP_NET_BIND_SERVICE", "Cap_Kill"],
                                    pidsLimit=64, memoryMb=256, buildNetwork="host"), one_hub("beta")))
    alpha, beta = config.hubs
    assert alpha.cap_add == ["NET_BIND_SERVICE", "KILL"] and beta.cap_add == []
    assert (alpha.pids_limit, alpha.memory_mb, alpha.build_network) == (64, 256, "host")
    assert (beta.pids_limit, beta.memory_mb, beta.build_network) == (512, None, "default")


@pytest.mark.parametrize("field, value, expected", [
    ("capAdd", ["NET_BIND"], "'NET_BIND' is not a capability Docker knows (such as NET_BIND_SERVICE or "
                             "CAP_NET_BIND_SERVICE)"),
    ("capAdd", ["all"], "ALL would give the hub back every capability; name the ones it needs, such as "
                        "NET_BIND_SERVICE"),
    ("pidsLimit", 0, "Input should be greater than or equal to 1"),
    ("memoryMb", 4, "Input should be greater than or equal to 6"),
    ("buildNetwork", "bridge", "must be default (Docker's bridge network), host (the host's network, for a build "
                               "that must reach a service on the host's loopback) or none"),
])
def test_a_hubs_box_settings_docker_refuses_are_refused(field, value, expected):
    (found,) = problems(stack_of(one_hub("alpha", **{field: value})))
    assert found.startswith(f"workhub:hubs[0].{field}: {expected} (hub alpha)\n    fix: correct "), found
