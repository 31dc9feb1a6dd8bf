"""The validator over open-ended input (hypothesis): whatever config it accepts renders scripts that
bash accepts and that, run against a stand-in `docker`, execute nothing a value tried to inject;
whatever it refuses, each problem names a key path and a fix."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from components.config.checks import ConfigError
from components.config.models import member
from components.constants import PULUMI_CLI
from components.config.parse import hub_secret_values, parse_stack_config
from components.render.host.deploy import Serving, prune_script, run_script, status_script, stop_script
from components.config.runtime import hub_runtime
from components.render.host.build import (build_runner, build_script, host_facts_script, host_setup_script,
                                          preflight_script, promote_script, pull_script)

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFloHIpcBboBa5fvOHzc3/flmdn24bmBRbRH+dbManFE"
MARK = "INJECTED"
# What a value may try: command substitution, backticks, a second command, a line break.
HOSTILE = [f"$(touch {MARK})", f"`touch {MARK}`", f"; touch {MARK}", f"\ntouch {MARK}\n", f"' ; touch {MARK}; '",
           f"\"$(touch {MARK})\"", "${HOME}", "*", "-rf", " ", ""]

text = st.one_of(st.sampled_from(HOSTILE), st.text(st.characters(codec="utf-8"), max_size=12),
                 st.builds(lambda a, b: a + b, st.sampled_from(["wbsaleshub", "/health", "WBSalesHub", "info"]),
                           st.sampled_from(HOSTILE)))
names = st.one_of(st.sampled_from(["wbsaleshub", "wbfinhub", "a", "x-1"]), text)
numbers = st.one_of(st.integers(-5, 70000), st.sampled_from([True, False, "2222", "22.5", None]), text)
env_names = st.one_of(st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True), text)


@st.composite
def configs(draw) -> dict:
    hubs = draw(st.lists(st.fixed_dictionaries(
        {"name": names, "context": st.one_of(st.just("WBSalesHub"), text), "port": numbers},
        optional={"dockerfile": text, "healthPath": st.one_of(st.just("/health"), text),
                  "buildArgs": st.dictionaries(env_names, text, max_size=2),
                  "env": st.dictionaries(env_names, st.one_of(text, numbers), max_size=2),
                  "secrets": st.lists(env_names, max_size=2),
                  "volumes": st.dictionaries(names, st.one_of(st.just("/app/data"), text), max_size=2)}),
        min_size=1, max_size=2))
    raw = {
        "host": draw(st.fixed_dictionaries(
            {"address": st.one_of(st.just("build.example.test"), text), "user": st.one_of(st.just("deploy"), text),
             "hostKey": st.one_of(st.just(HOST_KEY), text)}, optional={"port": numbers})),
        "sshPrivateKey": "-----BEGIN " + "OPENSSH PRIVATE KEY-----\n",
        "hubs": hubs,
        "hostPorts": {hub["name"]: draw(st.one_of(st.integers(1024, 65535), numbers)) for hub in hubs
                      if isinstance(hub["name"], str)},
        "secrets": {hub["name"]: {name: draw(text) for name in hub.get("secrets", []) if isinstance(name, str)}
                    for hub in hubs if isinstance(hub["name"], str)},
    }
    for key, value in draw(st.dictionaries(st.sampled_from(["baseImage", "publishAddress", "npmRegistry",
                                                             "sourceRoot", "proxyImage"]), text, max_size=2)).items():
        raw[key] = value
    return raw


FAKE_DOCKER = """#!/usr/bin/env bash
printf '%s\\n' "$*" >>"$FAKE/calls"
exit 1
"""
# The build step starts its runner detached and follows its log; here the runner is run on its own
# (below), so these two do nothing.
STAND_INS = {"docker": FAKE_DOCKER, "setsid": "#!/bin/sh\nexit 0\n", "tail": "#!/bin/sh\nexit 0\n"}


def run_all(config, raw, tmp: Path) -> None:
    """Render every script for the accepted config; bash -n each; run each against a docker that fails."""
    stack = "staging"
    serving = Serving(config.publish_address, config.deploy, config.proxy_image)
    secrets = hub_secret_values(raw)
    rendered = [host_facts_script(config.base_image), preflight_script(config.base_image, config.build),
                host_setup_script(config.ssh_keep_alive),
                status_script(stack, config.hubs, config.host_ports, config.publish_address),
                prune_script(stack, config.hubs, 3, False)]
    for hub in config.hubs:
        image = f"{hub.name}:{stack}-0123456789ab"
        runtime = hub_runtime(hub, config, stack, secrets.get(hub.name, {}), "pepper")
        rendered += [build_script(hub, stack, image, "0123456789ab", config.build, config.npm_registry),
                     build_runner(hub, stack, image, "0123456789ab", config.build, config.npm_registry),
                     run_script(hub, stack, image, config.host_ports[hub.name], runtime, serving),
                     stop_script(hub, stack),
                     promote_script(image, f"{hub.name}:production-0123456789ab", None),
                     pull_script(hub, stack, image, "0123456789ab", f"127.0.0.1:5000/w/{hub.name}:x", "127.0.0.1:5000",
                                 "ci", config.build)]
    fake = tmp / "fake"
    (fake / "bin").mkdir(parents=True, exist_ok=True)
    for name, body in STAND_INS.items():
        (fake / "bin" / name).write_text(body)
        (fake / "bin" / name).chmod(0o755)
    env = {"PATH": f"{fake / 'bin'}:/usr/bin:/bin", "HOME": str(tmp / "home"), "FAKE": str(fake)}
    (tmp / "home" / ".workhub" / "builds" / "wbsaleshub-staging-0123456789ab").mkdir(parents=True, exist_ok=True)
    for text_ in rendered:
        subprocess.run(["bash", "-n"], input=text_, text=True, check=True)
        subprocess.run(["bash", "-s"], input=text_, text=True, env=env, cwd=tmp, capture_output=True, timeout=30)
    found = [path for path in tmp.rglob(MARK)] + [path for path in Path(env["HOME"]).rglob(MARK)]
    assert not found, f"a value ran as a command: {found}"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(raw=configs())
def test_accepted_configs_render_inert_scripts_and_refused_ones_say_where_and_how(raw, tmp_path_factory):
    try:
        config = parse_stack_config(raw, stack="staging", secret_keys={"sshPrivateKey", "secrets"})
    except ConfigError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.key.startswith("workhub:") and len(problem.key) > len("workhub:"), problem
            assert len(str(problem).splitlines()) == 2, f"a value broke the problem's two lines: {problem!r}"
            assert problem.fix.strip(), problem
            assert any(word in problem.fix for word in ("pulumi config", "Pulumi.yaml", "check out")), problem
        return
    run_all(config, raw, tmp_path_factory.mktemp("scripts"))


def test_the_stand_in_would_see_an_injection():
    """The check above can fail: an unquoted value does run."""
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    work = subprocess.run(["mktemp", "-d", "-p", str(tmp)], capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run(["bash", "-c", f"value='$(touch {MARK})'; eval \"echo $value\""], cwd=work, check=True,
                   capture_output=True)
    assert (Path(work) / MARK).exists()


# Config values come as JSON text: any character but NUL and (for a one-line value) line breaks.
free = st.one_of(st.sampled_from([h for h in HOSTILE if "\n" not in h]),
                 st.text(st.characters(codec="utf-8", exclude_characters="\0\n\r"), max_size=20))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(arg=free, setting=free, secret=st.one_of(free, st.sampled_from(HOSTILE)).filter(str.strip),
       context=st.one_of(st.sampled_from([h for h in HOSTILE if h.strip() and "\n" not in h]),
                         st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1,
                                 max_size=20)),
       # a tag as Docker's reference grammar has it: a word character, then up to 127 of [\w.-]
       image_tag=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,9}", fullmatch=True))
def test_values_accepted_as_free_text_reach_every_script_as_data(arg, setting, secret, context, image_tag,
                                                                 tmp_path_factory):
    """Build args, settings, secrets and a context path may hold anything a shell would act on; the
    config takes them (Docker does), and the scripts carry them as data."""
    raw = {
        "host": {"address": "build.example.test", "user": "deploy", "hostKey": HOST_KEY},
        "sshPrivateKey": "-----BEGIN " + "OPENSSH PRIVATE KEY-----\n",
        "hubs": [{"name": "wbsaleshub", "context": context.lstrip("/").replace("..", "_") or "x", "port": 4091,
                  "buildArgs": {"APP_FLAVOUR": arg}, "env": {"GREETING": setting}, "secrets": ["TOKEN"],
                  "volumes": {"data": "/app/data"}}],
        "hostPorts": {"wbsaleshub": 14091},
        "secrets": {"wbsaleshub": {"TOKEN": secret}},
        "baseImage": f"node:{image_tag}",
    }
    config = parse_stack_config(raw, stack="staging", secret_keys={"sshPrivateKey", "secrets"})
    run_all(config, raw, tmp_path_factory.mktemp("scripts"))


def path_words(fix: str) -> list[str]:
    """The word after each `--path` of a fix, as a shell reads it (ValueError where a quote is left open)."""
    words = []
    for rest in fix.split("--path ")[1:]:
        lexer = shlex.shlex(rest, posix=True)
        lexer.whitespace_split = True
        words.append(lexer.get_token())
    return words


@settings(max_examples=60, deadline=None)
@given(name=st.one_of(st.sampled_from(["it's", "'", "a'b'c", "x\ny", "a.b", '"', "$(x)", " "]),
                      st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=12)))
def test_a_name_in_any_key_path_is_one_shell_word_in_its_fix(name):
    """A hub, setting or secret name (a `'` in it too) reaches a fix's `--path` as one shell word,
    the problem's key as the shell reads it: a problem that names a key and removes it shell-splits
    into exactly that command."""
    assume(name != "wbsaleshub")
    raw = {
        "host": {"address": "build.example.test", "user": "deploy", "hostKey": HOST_KEY},
        "sshPrivateKey": "-----BEGIN " + "OPENSSH PRIVATE KEY-----\n",
        "hubs": [{"name": "wbsaleshub", "context": "WBSalesHub", "port": 4091, "secrets": ["TOKEN"]}],
        "hostPorts": {"wbsaleshub": 14091, name: 14092},
        "pinnedImages": {name: "wbsaleshub:staging-0123456789ab"},
        "env": {name: {"A": "b"}, "wbsaleshub": {name: "b"}},
        "secrets": {"wbsaleshub": {"TOKEN": "t", name: "v"}, name: {"TOKEN": "t"}},
    }
    with pytest.raises(ConfigError) as refused:
        parse_stack_config(raw, stack="staging", secret_keys={"sshPrivateKey", "secrets"})
    keys = {f"workhub:{section}{member(name)}" for section in ("hostPorts", "pinnedImages", "env", "secrets")}
    keys |= {f"workhub:env.wbsaleshub{member(name)}", f"workhub:secrets.wbsaleshub{member(name)}"}
    named = {problem.key: problem for problem in refused.value.problems if problem.key in keys}
    assert set(named) == keys, refused.value.problems
    for key, problem in named.items():
        assert path_words(problem.fix) == [key], problem
        if problem.fix.startswith(PULUMI_CLI):
            assert shlex.split(problem.fix) == [*PULUMI_CLI.split(), "config", "rm", "--stack", "staging",
                                                "--path", key], problem
