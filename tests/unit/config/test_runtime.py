"""Run-time settings, secrets and volumes: each rule of the config with its exact key and fix, what a
hub's container gets in one stack, the documents a deploy writes, and the preview's reasons."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.render.host.documents import env_file, slot_compose
from components.config.checks import ConfigError
from components.config.models import DeploySettings, StackConfig
from components.config.parse import parse_stack_config
from components.render.host.deploy import Serving, run_script
from components.plan.hubs import plain_secret_problems, volume_warnings
from components.config.runtime import fingerprint, hub_runtime
from components.render.shell import assignments
from workhub.summary import setting_reasons

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFloHIpcBboBa5fvOHzc3/flmdn24bmBRbRH+dbManFE"
KEY = "-----BEGIN " + "OPENSSH PRIVATE KEY-----...\n"


def hub(**fields) -> dict:
    return {"name": "wbsaleshub", "context": "WBSalesHub", "port": 4091, **fields}


def raw(hub_fields: dict | None = None, **changes) -> dict:
    config = {
        "host": {"address": "build.example.test", "user": "deploy", "hostKey": HOST_KEY},
        "sshPrivateKey": KEY,
        "hubs": [hub(**(hub_fields or {}))],
        "hostPorts": {"wbsaleshub": 14091},
    }
    config.update(changes)
    return config


def parse(config: dict, secret_keys=("sshPrivateKey", "secrets")) -> StackConfig:
    return parse_stack_config(config, stack="staging", secret_keys=set(secret_keys))


def problems(config: dict, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(config, **kwargs)
    return [str(p) for p in caught.value.problems]


SETTINGS = {"env": {"LOG_LEVEL": "info", "DEBUG": True, "WORKERS": 3}, "stackEnv": ["PUBLIC_URL"],
            "secrets": ["SESSION_SECRET", "TLS_KEY"], "volumes": {"data": "/app/data/"}, "portEnv": "APP_PORT"}
STACK_VALUES = {"env": {"wbsaleshub": {"PUBLIC_URL": "https://sales.example.test"}},
                "secrets": {"wbsaleshub": {"SESSION_SECRET": "s3cret", "TLS_KEY": "-----BEGIN\nabc\n-----END"}}}


def test_settings_secrets_and_volumes_parse():
    """Plain values are text as written (YAML's true and 3 included), names and paths kept."""
    config = parse(raw(SETTINGS, **STACK_VALUES))
    (parsed,) = config.hubs
    assert parsed.env == {"LOG_LEVEL": "info", "DEBUG": "true", "WORKERS": "3"}
    assert parsed.stack_env == ["PUBLIC_URL"] and parsed.secrets == ["SESSION_SECRET", "TLS_KEY"]
    assert parsed.volumes == {"data": "/app/data/"} and parsed.port_env == "APP_PORT"
    assert config.env == {"wbsaleshub": {"PUBLIC_URL": "https://sales.example.test"}}
    assert config.deploy == DeploySettings() and config.proxy_image == "haproxy:2.6"


@pytest.mark.parametrize("fields, expected", [
    ({"env": {"LOG-LEVEL": "x"}},
     "workhub:hubs[0].env.LOG-LEVEL: 'LOG-LEVEL' is not an environment variable name (letters, digits and '_', "
     "not starting with a digit; hub wbsaleshub)\n"
     "    fix: correct workhub:hubs[0].env.LOG-LEVEL in the config: section of Pulumi.yaml (one value for every stack)"),
    ({"env": {"PORT": "1"}},
     "workhub:hubs[0].env.PORT: PORT is PORT, which workhub sets from the hub's port 4091 (hub wbsaleshub)\n"
     "    fix: remove it from workhub:hubs[0] in Pulumi.yaml; the port is workhub:hubs[0].port"),
    ({"portEnv": "APP_PORT", "secrets": ["APP_PORT"]},
     "workhub:hubs[0].secrets[0]: APP_PORT is the port variable (portEnv: APP_PORT), which workhub sets from the "
     "hub's port 4091 (hub wbsaleshub)\n"
     "    fix: remove it from workhub:hubs[0] in Pulumi.yaml; the port is workhub:hubs[0].port"),
    ({"env": {"TOKEN": "x"}, "secrets": ["TOKEN"]},
     "workhub:hubs[0].secrets[0]: TOKEN is also declared at hubs[0].env.TOKEN (hub wbsaleshub); a variable has "
     "one source\n"
     "    fix: correct workhub:hubs[0].secrets[0] in the config: section of Pulumi.yaml (one value for every stack)"),
    ({"portEnv": ""},
     "workhub:hubs[0].portEnv: is empty, so it names no variable and would be ignored (hub wbsaleshub)\n"
     "    fix: set workhub:hubs[0].portEnv in Pulumi.yaml to the variable's name, or remove it"),
    ({"env": {"GREETING": "two\nlines"}},
     "workhub:hubs[0].env.GREETING: holds a line break, which a plain setting cannot carry (one line each in the "
     "container's env file); make it a secret, which reaches the container as a file when it has line breaks "
     "(hub wbsaleshub)\n"
     "    fix: correct workhub:hubs[0].env.GREETING in the config: section of Pulumi.yaml (one value for every stack)"),
    ({"env": {"APP_VERSION": 1.1}},
     "workhub:hubs[0].env.APP_VERSION: is a YAML number, read as 1.1 whatever digits were written (1.10 reads as "
     "1.1); put the value in quotes, such as '1.10' (hub wbsaleshub)\n"
     "    fix: correct workhub:hubs[0].env.APP_VERSION in the config: section of Pulumi.yaml (one value for every stack)"),
    ({"buildArgs": {"BUILD_ID": 12345678901234567000}},
     "workhub:hubs[0].buildArgs.BUILD_ID: is a YAML number too long to arrive exactly (it is read as "
     "12345678901234567000); put the value in quotes (hub wbsaleshub)\n"
     "    fix: correct workhub:hubs[0].buildArgs.BUILD_ID in the config: section of Pulumi.yaml (one value for every "
     "stack)"),
    ({"volumes": {"data": "app/data"}},
     "workhub:hubs[0].volumes.data: 'app/data' is not a directory in the container: an absolute path such as "
     "/app/data, not / and without '..' or line breaks (hub wbsaleshub)\n"
     "    fix: correct workhub:hubs[0].volumes.data in the config: section of Pulumi.yaml (one value for every stack)"),
    ({"volumes": {"data": "/app/data:ro"}},
     "workhub:hubs[0].volumes.data: '/app/data:ro' ends in Docker's mount option ':ro', which a volume's path here "
     "does not take: the container would get a read-write volume at the directory '/app/data:ro', not at "
     "'/app/data' (hub wbsaleshub)\n"
     "    fix: write the path without ':ro' in workhub:hubs[0].volumes.data in Pulumi.yaml; a hub's volumes are "
     "read-write"),
    ({"volumes": {"Data Dir": "/app/data"}},
     "workhub:hubs[0].volumes.Data Dir: 'Data Dir' is not a volume name (lower-case letters, digits, '_', '.', '-', "
     "at most 48; hub wbsaleshub)\n"
     "    fix: correct workhub:hubs[0].volumes.Data Dir in the config: section of Pulumi.yaml (one value for every "
     "stack)"),
    ({"volumes": {"a": "/app/data", "b": "/app/data/"}},
     "workhub:hubs[0].volumes.b: /app/data is also the path of volume a (hub wbsaleshub)\n"
     "    fix: correct workhub:hubs[0].volumes.b in the config: section of Pulumi.yaml (one value for every stack)"),
])
def test_each_bad_hub_setting_names_its_key_and_fix(fields, expected):
    assert problems(raw(fields)) == [expected]


@pytest.mark.parametrize("target", ["/", "/app/../etc", "/app//data", "relative"])
def test_volume_paths_docker_would_refuse_or_misplace_are_refused(target):
    (found,) = problems(raw({"volumes": {"data": target}}))
    assert found.startswith("workhub:hubs[0].volumes.data: ") and "is not a directory in the container" in found


@pytest.mark.parametrize("target, option", [("/app/data:rw", "rw"), ("/app/data:ro,z", "ro,z"),
                                            ("/app/data:nocopy", "nocopy"), ("/app/data/:Z", "Z")])
def test_a_volume_path_ending_in_a_mount_option_is_refused(target, option):
    (found,) = problems(raw({"volumes": {"data": target}}))
    assert found.startswith(f"workhub:hubs[0].volumes.data: {target!r} ends in Docker's mount option ':{option}'")
    assert parse(raw({"volumes": {"data": "/app/da:ta"}})).hubs[0].volumes == {"data": "/app/da:ta"}


@pytest.mark.parametrize("changes, expected", [
    ({"hub": {"env": {"A\nB": "x"}}},
     "workhub:hubs[0].env[\"A\\nB\"]: 'A\\nB' is not an environment variable name (letters, digits and '_', not "
     "starting with a digit; hub wbsaleshub)\n"
     "    fix: correct workhub:hubs[0].env[\"A\\nB\"] in the config: section of Pulumi.yaml (one value for every stack)"),
    ({"hub": {"volumes": {"da\nta": "/app/data"}}}, "workhub:hubs[0].volumes[\"da\\nta\"]: 'da\\nta' is not a volume name"),
    ({"hostPorts": {"wbsaleshub": 14091, "x\ny": 70000}}, "workhub:hostPorts[\"x\\ny\"]: Input should be less than"),
    ({"env": {"wbsaleshub": {"X.Y": "1"}}}, "workhub:env.wbsaleshub[\"X.Y\"]: \"X.Y\" is not declared in "
                                           "workhub:hubs[0].stackEnv (hub wbsaleshub)"),
    ({"secrets": {"wbsaleshub": {"T\r": "y"}}}, "workhub:secrets.wbsaleshub[\"T\\r\"]: \"T\\r\" is not declared"),
    ({"hub": {"adr\ness": 1}}, "workhub:hubs[0][\"adr\\ness\"]: is not a known setting (hub wbsaleshub)"),
])
def test_a_name_with_a_line_break_is_quoted_in_the_key_and_the_fix(changes, expected):
    """A name that would break a problem's two lines (or its key path) is shown JSON-quoted, as
    `pulumi config --path` reads a quoted step: hubs[0].env["A\\nB"]."""
    config = raw(changes.pop("hub", None), **changes)
    found = problems(config)
    assert found[0].startswith(expected), found
    assert all(len(line.splitlines()) == 2 for line in found), found


def test_a_secret_and_its_file_variable_cannot_both_be_declared():
    """A secret with a line break becomes <NAME>_FILE; a setting of that name would hide it."""
    (found,) = problems(raw({"secrets": ["TLS_KEY"], "env": {"TLS_KEY_FILE": "/x"}},
                            secrets={"wbsaleshub": {"TLS_KEY": "k"}}))
    assert found.startswith("workhub:hubs[0].env.TLS_KEY_FILE: TLS_KEY_FILE is where secret TLS_KEY is named")


def test_a_stack_value_written_as_a_yaml_fraction_asks_for_quotes():
    """`1.10` would reach the container as 1.1; a whole number (as `config set --path` stores it) is text as read."""
    found = problems(raw({"stackEnv": ["APP_VERSION"]}, env={"wbsaleshub": {"APP_VERSION": 1.1}}))
    assert found == [
        "workhub:env.wbsaleshub.APP_VERSION: is a YAML number, read as 1.1 whatever digits were written (1.10 reads "
        "as 1.1); put the value in quotes, such as '1.10'\n"
        "    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:env.wbsaleshub.APP_VERSION' <value>"]
    config = parse(raw({"stackEnv": ["WORKERS"], "buildArgs": {"NODE_MAJOR": 20}}, env={"wbsaleshub": {"WORKERS": 3}}))
    assert config.env["wbsaleshub"]["WORKERS"] == "3" and config.hubs[0].build_args == {"NODE_MAJOR": "20"}


def test_stack_values_must_be_declared_and_never_override_pulumi_yaml():
    found = problems(raw({"env": {"LOG_LEVEL": "info"}, "stackEnv": ["PUBLIC_URL"]},
                         env={"wbsaleshub": {"LOG_LEVEL": "debug", "EXTRA": "1"}, "other": {"X": "1"}}))
    assert found == [
        "workhub:env.wbsaleshub.LOG_LEVEL: LOG_LEVEL is pinned in Pulumi.yaml (workhub:hubs[0].env.LOG_LEVEL), the "
        "same in every stack\n"
        "    fix: scripts/workhub pulumi config rm --stack staging --path 'workhub:env.wbsaleshub.LOG_LEVEL'; to let stacks differ, "
        "move LOG_LEVEL from env to stackEnv of the hub in Pulumi.yaml",
        "workhub:env.wbsaleshub.EXTRA: EXTRA is not declared in workhub:hubs[0].stackEnv (hub wbsaleshub)\n"
        "    fix: add EXTRA to stackEnv of the hub in Pulumi.yaml, or scripts/workhub pulumi config rm --stack staging --path "
        "'workhub:env.wbsaleshub.EXTRA'",
        "workhub:env.other: names no hub in workhub:hubs\n"
        "    fix: scripts/workhub pulumi config rm --stack staging --path 'workhub:env.other'",
        "workhub:env.wbsaleshub.PUBLIC_URL: is not set: hub wbsaleshub declares PUBLIC_URL in stackEnv, so each "
        "stack gives it a value\n"
        "    fix: scripts/workhub pulumi config set --stack staging --path 'workhub:env.wbsaleshub.PUBLIC_URL' <value>",
    ]


def test_every_declared_secret_is_set_as_a_secret_and_nothing_else_is():
    missing = problems(raw({"secrets": ["SESSION_SECRET"]}))
    assert missing == [
        "workhub:secrets.wbsaleshub.SESSION_SECRET: is not set: hub wbsaleshub declares the secret SESSION_SECRET\n"
        "    fix: scripts/workhub pulumi config set --stack staging --secret --path 'workhub:secrets.wbsaleshub.SESSION_SECRET' "
        "<value>  (or < <file> for a value with line breaks)"]
    plain = problems(raw({"secrets": ["S"]}, secrets={"wbsaleshub": {"S": "x"}}), secret_keys=("sshPrivateKey",))
    assert plain == [
        "workhub:secrets: is stored in plain text; it must be a secret\n"
        "    fix: scripts/workhub pulumi config set --stack staging --secret --path 'workhub:secrets.<hub>.<NAME>' <value>  (or < "
        "<file> for a value with line breaks) for each of them"]
    stray = problems(raw({"secrets": ["S"]}, secrets={"wbsaleshub": {"S": "x", "T": "y", "N": "a\0b"},
                                                      "nohub": {"S": "x"}}))
    assert [line.split("\n")[0] for line in stray] == [
        "workhub:secrets.wbsaleshub.T: T is not declared in workhub:hubs[0].secrets (hub wbsaleshub)",
        "workhub:secrets.wbsaleshub.N: N is not declared in workhub:hubs[0].secrets (hub wbsaleshub)",
        "workhub:secrets.nohub: names no hub in workhub:hubs",
    ]


@pytest.mark.parametrize("value", ["", " \n"])
def test_an_empty_secret_is_refused(value):
    assert problems(raw({"secrets": ["S"]}, secrets={"wbsaleshub": {"S": value}})) == [
        "workhub:secrets.wbsaleshub.S: is empty (or only white space): the hub would get no secret\n"
        "    fix: scripts/workhub pulumi config set --stack staging --secret --path 'workhub:secrets.wbsaleshub.S' "
        "<value>  (or < <file> for a value with line breaks)"]


def test_one_secret_set_without_secret_in_the_stack_file_is_refused():
    """The engine only says workhub:secrets holds a secret; the stack file shows each value."""
    values = {"workhub:secrets": {"wbsaleshub": {"A": {"secure": "v1:..."}, "B": "plain"}}}
    (found,) = plain_secret_problems(values, "staging")
    assert str(found).startswith("workhub:secrets.wbsaleshub.B: is stored in plain text in Pulumi.staging.yaml")


def test_the_moved_health_timeout_says_where_it_went():
    (found,) = problems(raw(build={"healthTimeoutSeconds": 60}))
    assert found == ("workhub:build.healthTimeoutSeconds: is not a known setting\n"
                     "    fix: move it to workhub:deploy.healthTimeoutSeconds in the config: section of Pulumi.yaml")


def runtime(**secrets):
    config = parse(raw(SETTINGS, **STACK_VALUES))
    values = {"SESSION_SECRET": "s3cret", "TLS_KEY": "-----BEGIN\nabc\n-----END", **secrets}
    return hub_runtime(config.hubs[0], config, "staging", values, "stack key")


def test_a_hubs_runtime_in_one_stack():
    """PORT and the port variable first, HOME, then the pinned settings, then the stack's; a one-line
    secret in the env file, one with line breaks as a file named by <NAME>_FILE; the volume per stack."""
    found = runtime()
    assert found.env == {"PORT": "4091", "APP_PORT": "4091", "HOME": "/tmp", "LOG_LEVEL": "info", "DEBUG": "true",
                         "WORKERS": "3",
                         "PUBLIC_URL": "https://sales.example.test", "TLS_KEY_FILE": "/run/secrets/TLS_KEY"}
    assert found.secret_env == ("SESSION_SECRET",) and found.secret_files == ("TLS_KEY",)
    assert found.secret_values == {"secret_0": "s3cret", "secret_1": "-----BEGIN\nabc\n-----END"}
    (volume,) = found.volumes
    assert (volume.docker_name, volume.target) == ("workhub-staging-wbsaleshub-data", "/app/data")
    assert found.triggers["secrets"] == found.fingerprints and set(found.fingerprints) == {"SESSION_SECRET", "TLS_KEY"}
    assert "s3cret" not in repr(found), "the values stay out of the repr"


def test_fingerprints_are_keyed_and_say_nothing_of_the_value():
    """The same value gives the same fingerprint; another stack key or value another one; and
    neither the value nor its plain sha256 is in it."""
    import hashlib
    first = fingerprint("stack key", "hub", "NAME", "hunter2")
    assert first == fingerprint("stack key", "hub", "NAME", "hunter2") and len(first) == 16
    assert first != fingerprint("other", "hub", "NAME", "hunter2") != fingerprint("stack key", "hub", "NAME", "hunter3")
    assert first not in hashlib.sha256(b"hunter2").hexdigest()
    assert runtime(SESSION_SECRET="changed").fingerprints["TLS_KEY"] == runtime().fingerprints["TLS_KEY"]


def test_the_slot_compose_file_mounts_the_volume_and_reads_the_env_file_literally():
    import json
    found = runtime()
    config = parse(raw(SETTINGS, **STACK_VALUES))
    document = json.loads(slot_compose(config.hubs[0], "staging", "green", "wbsaleshub:staging-0123", found,
                                       DeploySettings(stopGraceSeconds=12)))
    service = document["services"]["wbsaleshub-staging-green"]
    assert service["env_file"] == [{"path": "../env/wbsaleshub-staging-green.env", "format": "raw"}]
    assert service["volumes"] == [{"type": "volume", "source": "workhub-staging-wbsaleshub-data", "target": "/app/data",
                                   "volume": {"nocopy": True}}], "an empty volume never takes the image's owner"
    assert document["volumes"]["workhub-staging-wbsaleshub-data"]["external"] is True
    assert service["stop_grace_period"] == "12s" and "ports" not in service, "only the proxy publishes"


def test_the_slot_runs_boxed_as_the_hubs_own_uid():
    """The slot runs as the hub's uid and gid, drops every capability but those it declares (in Docker's
    names), gains none (no-new-privileges), and has a pids limit (512 unless it says) and its memory
    limit only when it has one."""
    import json

    from components.config.models import run_uid

    def service(**hub) -> dict:
        config = parse(raw({**SETTINGS, **hub}, **STACK_VALUES))
        document = json.loads(slot_compose(config.hubs[0], "staging", "blue", "wbsaleshub:staging-0123", runtime(),
                                           DeploySettings()))
        return document["services"]["wbsaleshub-staging-blue"]

    plain = service()
    uid = run_uid(parse(raw(SETTINGS, **STACK_VALUES)).hubs[0], "staging")
    assert uid >= 1_200_000
    assert plain["user"] == f"{uid}:{uid}" and plain["cap_drop"] == ["ALL"] and "cap_add" not in plain
    assert plain["security_opt"] == ["no-new-privileges:true"]
    assert plain["pids_limit"] == 512 and "mem_limit" not in plain
    own = service(uid=4321, capAdd=["net_bind_service", "CAP_NET_BIND_SERVICE", "CAP_KILL"], pidsLimit=64,
                  memoryMb=256)
    assert own["user"] == "4321:4321" and own["cap_add"] == ["NET_BIND_SERVICE", "KILL"]
    assert own["pids_limit"] == 64 and own["mem_limit"] == "256m"


def test_home_is_writable_unless_the_hub_sets_its_own():
    """The hub's uid has no account in the image: HOME is /tmp, unless the hub declares HOME itself."""
    assert runtime().env["HOME"] == "/tmp"
    config = parse(raw({**SETTINGS, "env": {"LOG_LEVEL": "info", "HOME": "/app/home"}}, **STACK_VALUES))
    values = STACK_VALUES["secrets"]["wbsaleshub"]
    assert hub_runtime(config.hubs[0], config, "staging", values, "pepper").env["HOME"] == "/app/home"


def test_a_dockerfile_volume_without_a_named_volume_is_a_warning(tmp_path):
    context = tmp_path / "WBSalesHub"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM node:20-bookworm-slim\nWORKDIR /app\nVOLUME data /cache\n")
    values = {k: v for k, v in raw({"volumes": {"data": "/app/data"}}).items() if k != "sshPrivateKey"}
    config = StackConfig.model_validate({**values, "sourceRoot": str(tmp_path)})
    (warning,) = volume_warnings(config, tmp_path)
    assert warning.startswith(f"wbsaleshub: {context / 'Dockerfile'}:3 declares VOLUME /cache, but "
                              "workhub:hubs[0].volumes mounts no named volume there")
    assert warning.endswith("add `volumes: {cache: /cache}` to hub wbsaleshub in Pulumi.yaml")


def test_the_preview_names_the_setting_the_secret_and_the_volume_that_changed():
    old = {"env": {"PORT": "1", "LOG_LEVEL": "info"}, "secrets": {"A": "f1", "B": "f2"}, "volumes": {"data": "/d"}}
    new = {"env": {"PORT": "1", "LOG_LEVEL": "debug"}, "secrets": {"A": "f1", "B": "f3", "C": "f4"}, "volumes": {}}
    assert setting_reasons(old, new) == ["setting LOG_LEVEL changed", "secret B changed", "secret C added",
                                         "volume data removed"]
    assert setting_reasons(None, old)[:1] == ["setting LOG_LEVEL added"]


# --- open-ended values ---------------------------------------------------------------------------

env_names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,20}", fullmatch=True).filter(lambda n: n != "PORT")
one_line = st.text(st.characters(exclude_characters="\0\n\r", codec="utf-8"), max_size=40)
any_text = st.text(st.characters(exclude_characters="\0", codec="utf-8"), max_size=60)


@settings(max_examples=60, deadline=None)
@given(env=st.dictionaries(env_names, one_line, max_size=5), secret=any_text.filter(str.strip))
def test_any_accepted_value_reaches_the_env_file_as_it_is(env, secret):
    """For any settings and secret the config accepts: the rendered deploy script is valid bash, and the
    env file it writes holds each value literally, one `NAME=value` line each (Compose's raw format)."""
    env.pop("SESSION_SECRET", None)
    env.pop("SESSION_SECRET_FILE", None)
    config = parse(raw({"env": env, "secrets": ["SESSION_SECRET"]}, secrets={"wbsaleshub": {"SESSION_SECRET": secret}}))
    found = hub_runtime(config.hubs[0], config, "staging", {"SESSION_SECRET": secret}, "stack key")
    text = run_script(config.hubs[0], "staging", "wbsaleshub:staging-0123", 14091, found,
                      Serving("127.0.0.1", DeploySettings(), "haproxy:2.6"))
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)
    # Split as Compose does (on \n only: other line separators are part of a value).
    lines = dict(line.split("=", 1) for line in env_file(found).split("\n")[:-1])
    assert lines == found.env and {k: v for k, v in lines.items() if k in env} == env
    # The shell carries the file's text unchanged to the host (what `printf '%s' "$env_plain"` writes).
    echoed = subprocess.run(["bash", "-c", assignments({"env_plain": env_file(found)}) + '\nprintf %s "$env_plain"'],
                            capture_output=True, check=True).stdout.decode()
    assert echoed == env_file(found)
    assert (found.secret_files == ("SESSION_SECRET",)) == ("\n" in secret or "\r" in secret)


def test_repo_pulumi_yaml_hubs_parse_with_their_settings():
    """The sample hubs' own catalog (what the quick start deploys) is valid, and each has a plain
    setting, a secret and a volume."""
    import yaml
    project = yaml.safe_load((Path(__file__).resolve().parents[3] / "Pulumi.yaml").read_text())
    hubs = project["config"]["workhub:hubs"]["value"]
    for entry in hubs:
        assert entry["env"] and entry["secrets"] and entry["volumes"], entry["name"]
