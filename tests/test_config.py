"""Stack config validation: each bad value gives one error naming its key and the fix."""

import pytest

from components.config import ConfigError, StackConfig, namespaced, parse_stack_config

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHtestkeytestkeytestkeytestkeytestkeytest"


def valid() -> dict:
    return {
        "host": {"address": "build.example.test", "user": "deploy", "port": 22, "hostKey": HOST_KEY},
        "sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----...",
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
    assert config.base_image == "node:20-bookworm-slim"


def test_missing_host_names_the_key_and_the_command():
    """An empty stack says exactly which keys to set, and how."""
    found = problems({})
    assert found == [
        "workhub:host: is not set\n"
        "    fix: pulumi config set --stack staging --path 'workhub:host' <value>",
        "workhub:sshPrivateKey: is not set\n"
        "    fix: pulumi config set --stack staging --secret workhub:sshPrivateKey < <path to the deploy key>",
    ]


def test_missing_address_and_host_key():
    """The committed staging file (user and port only) names the two host keys still to set."""
    raw = valid()
    raw["host"] = {"user": "deploy", "port": 22}
    found = problems(raw)
    assert found == [
        "workhub:host.address: is not set\n"
        "    fix: pulumi config set --stack staging --path 'workhub:host.address' <address>",
        "workhub:host.hostKey: is not set\n"
        "    fix: pulumi config set --stack staging --path 'workhub:host.hostKey' 'ssh-ed25519 AAAA...'",
    ]


def test_unknown_key_is_rejected():
    """A typo is an error, not a silently ignored setting."""
    raw = valid()
    raw["host"]["adress"] = "x"
    raw["buildz"] = 1
    found = problems(raw)
    assert "workhub:host.adress: is not a known setting" in found[0]
    assert "pulumi config rm --stack staging --path 'workhub:host.adress'" in found[0]
    assert "known settings here: address, user, port, hostKey" in found[0]
    assert found[1].startswith("workhub:buildz: is not a known setting")
    assert "pulumi config rm --stack staging --path 'workhub:buildz'" in found[1]


def test_plaintext_private_key_is_rejected():
    """The SSH key must be a Pulumi secret."""
    found = problems(valid(), secret_keys=set())
    assert found == [
        "workhub:sshPrivateKey: is stored in plain text; it must be a secret\n"
        "    fix: pulumi config set --stack staging --secret workhub:sshPrivateKey < <path to the deploy key>"
    ]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("address", "host; rm -rf /", "must be a DNS name or an IP address"),
        ("address", "$(reboot)", "must be a DNS name or an IP address"),
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
