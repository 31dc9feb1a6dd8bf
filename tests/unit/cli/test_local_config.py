"""The local stack's config (Pulumi.local.yaml) follows Pulumi.yaml and stacks/local.yaml as `up`
generates it: what they no longer give goes, and a value the user set by hand wins until removed.
Through the path `scripts/workhub up` takes (engine.local_stack), with the real Pulumi CLI."""

from __future__ import annotations

import pytest

from tests.unit.cli.test_noop_fast_paths import local_project
from workhub import engine as eng

VALUES = {"workhub:host.address": "127.0.0.1", "workhub:host.port": "2222", "workhub:sourceRoot": "examples",
          "workhub:hostPorts.wbsaleshub": "24091", "workhub:hostPorts.wbfinhub": "24092",
          "workhub:env.wbsaleshub.PUBLIC_URL": "http://127.0.0.1:24091",
          "workhub:env.wbfinhub.PUBLIC_URL": "http://127.0.0.1:24092"}
SECRETS = {"wbsaleshub": {"LEADS_API_TOKEN": "generated-leads-token"},
           "wbfinhub": {"LEDGER_SIGNING_KEY": "-----BEGIN TEST KEY-----\nAbC\n-----END TEST KEY-----"}}


@pytest.fixture
def local(tmp_path, toolchain):
    """A local stack's project and state in tmp_path, and the test host's client key."""
    return local_project(tmp_path)


def _up(engine: eng.Engine, host: dict, values=VALUES, secrets=SECRETS) -> dict[str, str]:
    """What `scripts/workhub up` leaves in the local stack's config (secrets in clear)."""
    return eng.flat_config(eng.local_stack(engine, eng.LOCAL_STACK, host, values, secrets).get_all_config())


def test_a_hub_gone_from_the_committed_files_leaves_nothing_in_the_generated_config(local, capsys):
    engine, host = local
    stack = eng.local_stack(engine, eng.LOCAL_STACK, host, VALUES, SECRETS)
    stack.set_config("workhub:deploy.healthTimeoutSeconds", eng.auto.ConfigValue("90"), path=True)  # the user's own

    without = {key: value for key, value in VALUES.items() if ".wbfinhub" not in key}
    config = _up(engine, host, without, {"wbsaleshub": SECRETS["wbsaleshub"]})
    assert not [key for key in config if "wbfinhub" in key]
    assert "wbfinhub" not in (engine.work_dir / "Pulumi.local.yaml").read_text(), \
        "no empty object is left (it would name no hub either)"
    assert config["workhub:hostPorts.wbsaleshub"] == "24091" and config["workhub:env.wbsaleshub.PUBLIC_URL"]
    assert config["workhub:secrets.wbsaleshub.LEADS_API_TOKEN"] == "generated-leads-token"
    assert config["workhub:deploy.healthTimeoutSeconds"] == "90", "a key workhub never wrote is the user's"
    said = capsys.readouterr().err
    assert ("workhub: stack 'local': removed workhub:env.wbfinhub.PUBLIC_URL, workhub:hostPorts.wbfinhub, "
            "workhub:secrets.wbfinhub.LEDGER_SIGNING_KEY (no longer in Pulumi.yaml or stacks/local.yaml)") in said

    # A stack every hub's secrets left: no secrets object at all; the hub back: its keys back.
    assert not [key for key in _up(engine, host, without, {}) if key.startswith("workhub:secrets")]
    assert _up(engine, host)["workhub:secrets.wbfinhub.LEDGER_SIGNING_KEY"] == SECRETS["wbfinhub"]["LEDGER_SIGNING_KEY"]


def test_a_value_set_by_hand_on_the_local_stack_wins_until_it_is_removed(local, capsys):
    engine, host = local
    stack = eng.local_stack(engine, eng.LOCAL_STACK, host, VALUES, SECRETS)
    # As `scripts/workhub pulumi config set [--secret]` sets them (the secret through stdin).
    engine.set_secret(eng.LOCAL_STACK, "workhub:secrets.wbsaleshub.LEADS_API_TOKEN", "the-users-own-token", path=True)
    stack.set_config("workhub:hostPorts.wbsaleshub", eng.auto.ConfigValue("25091"), path=True)
    stack.set_config("workhub:host.port", eng.auto.ConfigValue("2999"), path=True)

    config = _up(engine, host)
    assert config["workhub:secrets.wbsaleshub.LEADS_API_TOKEN"] == "the-users-own-token"
    assert config["workhub:hostPorts.wbsaleshub"] == "25091"
    assert config["workhub:host.port"] == "2222", "the test host's own keys always follow the test host"
    said = capsys.readouterr().err
    assert ("workhub: stack 'local' keeps workhub:secrets.wbsaleshub.LEADS_API_TOKEN as you set it (workhub's own "
            "value comes back after `scripts/workhub pulumi config rm --stack local --path "
            "'workhub:secrets.wbsaleshub.LEADS_API_TOKEN'`)") in said
    assert "the-users-own-token" not in said and "generated-leads-token" not in said
    record = eng.written_path(engine, eng.LOCAL_STACK).read_text()
    assert "token" not in record and "TEST KEY" not in record and "PRIVATE KEY" not in record

    # A change in the committed files leaves the user's value, and sets the others.
    changed = {**VALUES, "workhub:hostPorts.wbsaleshub": "24191", "workhub:hostPorts.wbfinhub": "24192"}
    config = _up(engine, host, changed)
    assert (config["workhub:hostPorts.wbsaleshub"], config["workhub:hostPorts.wbfinhub"]) == ("25091", "24192")
    assert config["workhub:secrets.wbsaleshub.LEADS_API_TOKEN"] == "the-users-own-token"

    stack.remove_config("workhub:secrets.wbsaleshub.LEADS_API_TOKEN", path=True)
    stack.remove_config("workhub:hostPorts.wbsaleshub", path=True)
    config = _up(engine, host, changed)
    assert config["workhub:secrets.wbsaleshub.LEADS_API_TOKEN"] == "generated-leads-token"
    assert config["workhub:hostPorts.wbsaleshub"] == "24191"
