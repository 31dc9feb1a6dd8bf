"""The documents of a stack on a Docker Swarm: the stack file, the proxy's HAProxy config and the
nodes' labels, rendered from the same hub data as one host's Compose files; golden files for the
exact text, and the properties that keep requests and secret values safe."""

import hashlib
import json
import os
import re
import subprocess

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from components.config.models import StackConfig, run_uid
from components.config.parse import hub_secret_values, parse_stack_config
from components.config.runtime import fingerprint, hub_runtime
from components.render.swarm.data import owners_script
from components.render.swarm.stack import (node_labels, proxy_config, proxy_config_name, publish_config, secret_name,
                                           service_name, stack_file, task_slots)
from components.render.swarm.scripts import (deploy_script, deploy_secret_values, init_script, join_script,
                                             join_token_script, labels_script)
from tests.unit.render.test_scripts import golden
from tests.unit.config.test_swarm_config import swarm_stack

STACK_KEY = "5" * 64
"""The stack's own key (components/resources/host/stack_key.py) the secrets' fingerprints are keyed with."""
SECRET_VALUES = {"wbhubmanager": {"SESSION_SECRET": "s3cr3t $HOME `id`"},
                 "wbsaleshub": {"LEADS_API_TOKEN": "line one\nline two"}}
IMAGES = {"wbhubmanager": "10.0.0.1:5000/workhub/wbhubmanager:staging-0123456789ab",
          "wbsaleshub": "10.0.0.1:5000/workhub/wbsaleshub@sha256:" + "ab" * 32}


def config_and_runtimes():
    raw = swarm_stack()
    raw["hubs"][0].update(env={"LOG_LEVEL": "info", "PRICE": "$5"}, secrets=["SESSION_SECRET"])
    raw["hubs"][1].update(secrets=["LEADS_API_TOKEN"], stackEnv=["PUBLIC_URL"], portEnv="APP_PORT")
    raw["env"] = {"wbsaleshub": {"PUBLIC_URL": "https://sales.staging.example.test"}}
    raw["secrets"] = SECRET_VALUES
    config = parse_stack_config(raw, stack="staging", secret_keys={"sshPrivateKey", "secrets"})
    secrets = hub_secret_values(raw)
    runtimes = {hub.name: hub_runtime(hub, config, "staging", secrets[hub.name], STACK_KEY) for hub in config.hubs}
    return config, runtimes


def rendered() -> tuple[StackConfig, str, str]:
    config, runtimes = config_and_runtimes()
    proxy = proxy_config(config, "staging")
    return config, stack_file(config, "staging", IMAGES, runtimes, proxy), proxy


def test_stack_file_golden():
    golden("swarm-stack.json", rendered()[1])


def test_proxy_config_golden():
    golden("swarm-proxy.cfg", rendered()[2])


def test_publish_config_golden():
    golden("swarm-publish.cfg", publish_config(config_and_runtimes()[0], "staging"))


def test_hubs_roll_out_start_first_and_roll_back_on_failure():
    """Every hub: dnsrr, start-first, rollback on failure after a monitor window, its health check."""
    config, text, _ = rendered()
    services = yaml.safe_load(text)["services"]
    for hub in config.hubs:
        service = services[hub.name]
        deploy = service["deploy"]
        assert deploy["endpoint_mode"] == "dnsrr"
        assert deploy["update_config"]["order"] == "start-first"
        assert deploy["update_config"]["failure_action"] == "rollback"
        assert deploy["update_config"]["monitor"] == "30s"
        assert f"port:{hub.port},path:'{hub.health_path}'" in service["healthcheck"]["test"][3]
        assert "ports" not in service, "a hub service that publishes a port cannot update start-first"
    assert services["wbhubmanager"]["deploy"]["replicas"] == 2
    assert services["wbhubmanager"]["deploy"]["resources"] == {"limits": {"pids": 512, "memory": "256M"}}


def test_hub_services_run_boxed_as_on_one_host():
    """Each hub's service runs as its own uid and gid, drops every capability but those it declares,
    has a pids limit and its memory limit (the stack's own, else the hub's); its volumes mount with
    nocopy (the owners step gives a new one its content and its uid). No-new-privileges is not in the
    stack file: no Swarm service takes it before Docker 25 (the nodes' engines set it)."""
    raw = swarm_stack()
    raw["hubs"][1].update(capAdd=["NET_BIND_SERVICE"], pidsLimit=100, memoryMb=300, uid=5001)
    raw["hubs"][0].update(memoryMb=999)
    config = parse_stack_config(raw, stack="staging", secret_keys={"sshPrivateKey"})
    runtimes = {hub.name: hub_runtime(hub, config, "staging", {}, "pepper") for hub in config.hubs}
    services = yaml.safe_load(stack_file(config, "staging", IMAGES, runtimes, ""))["services"]
    manager, sales = services["wbhubmanager"], services["wbsaleshub"]
    uid = run_uid(config.hubs[0], "staging")
    assert manager["user"] == f"{uid}:{uid}" and manager["cap_drop"] == ["ALL"] and "cap_add" not in manager
    assert manager["deploy"]["resources"] == {"limits": {"pids": 512, "memory": "256M"}}, "the stack's memoryMb wins"
    assert sales["user"] == "5001:5001" and sales["cap_add"] == ["NET_BIND_SERVICE"]
    assert sales["deploy"]["resources"] == {"limits": {"pids": 100, "memory": "300M"}}
    assert sales["volumes"] == [{"type": "volume", "source": "workhub-staging-wbsaleshub-data", "target": "/app/data",
                                 "volume": {"nocopy": True}}]
    assert "security_opt" not in sales


def test_the_owners_step_runs_on_each_data_node_only_for_its_hubs():
    """The owners script of a data node names the volumes, images and uids of the hubs whose data it holds."""
    config, _ = config_and_runtimes()
    text = owners_script(config, "staging", "node2", IMAGES)
    uid = run_uid(config.hubs[1], "staging")
    assert "\nvolumes=(workhub-staging-wbsaleshub-data)\n" in text and f"\nuids=({uid})\n" in text
    assert f"\nimages=({IMAGES['wbsaleshub']})\n" in text and "\ntargets=(/app/data)\n" in text
    assert "\nvolumes=()\n" in owners_script(config, "staging", "node3", IMAGES)
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0


def test_placement_follows_the_labels():
    """A hub with volumes runs on its data node; the others keep off the build node."""
    _, text, _ = rendered()
    services = yaml.safe_load(text)["services"]
    assert services["wbsaleshub"]["deploy"]["placement"] == {"constraints": ["node.labels.workhub.data.wbsaleshub == true"]}
    assert services["wbhubmanager"]["deploy"]["placement"] == {"constraints": ["node.labels.workhub.build != true"]}
    for role in ("proxy", "publish"):
        assert services[role]["deploy"]["mode"] == "global"
        assert services[role]["deploy"]["placement"] == {"constraints": ["node.labels.workhub.serve == true"]}
    config, _ = config_and_runtimes()
    assert [node_labels(node) for node in config.swarm.nodes] == [
        {"workhub.serve": "true", "workhub.build": "true"},
        {"workhub.serve": "true", "workhub.data.wbsaleshub": "true"},
        {},
    ]


def test_secrets_are_docker_secrets_by_versioned_name_never_values():
    """Each secret is an external Docker secret named by its value's fingerprint, mounted as a file
    that <NAME>_FILE names; no value is anywhere in the documents."""
    config, runtimes = config_and_runtimes()
    _, text, proxy = rendered()
    for values in SECRET_VALUES.values():
        for value in values.values():
            assert value not in text and value not in proxy
            assert json.dumps(value)[1:-1] not in text
    document = yaml.safe_load(text)
    fingerprint = runtimes["wbhubmanager"].fingerprints["SESSION_SECRET"]
    assert document["secrets"]["wbhubmanager_SESSION_SECRET"] == {
        "external": True, "name": f"staging-wbhubmanager-SESSION_SECRET-{fingerprint[:12]}"}
    service = document["services"]["wbhubmanager"]
    uid = str(run_uid(config.hubs[0], "staging"))
    assert service["secrets"] == [{"source": "wbhubmanager_SESSION_SECRET", "target": "SESSION_SECRET",
                                   "uid": uid, "gid": uid, "mode": 0o400}], "only the hub's uid reads them"
    assert service["environment"]["SESSION_SECRET_FILE"] == "/run/secrets/SESSION_SECRET"
    assert document["services"]["wbsaleshub"]["environment"]["LEADS_API_TOKEN_FILE"] == "/run/secrets/LEADS_API_TOKEN"


def test_a_new_secret_value_is_a_new_secret_name():
    assert secret_name("staging", "wbhubmanager", "S", "a" * 16) != secret_name("staging", "wbhubmanager", "S", "b" * 16)
    assert len(secret_name("s" * 40, "h" * 31, "N" * 60, "f" * 16)) == 64


# Docker's rule for a secret's or config's name (swarmkit's controlapi): at most 64 of these characters.
DOCKER_NAME = re.compile(r"[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?")


def test_a_name_that_fits_is_the_one_existing_stacks_made():
    """Only names Docker's 64 characters would have cut change: a short one is what it always was."""
    assert secret_name("staging", "wbhubmanager", "SESSION_SECRET", "0123456789abcdef") == \
        "staging-wbhubmanager-SESSION_SECRET-0123456789ab"
    fits = "s" * 10 + "-" + "h" * 31 + "-" + "N" * 8 + "-" + "f" * 12
    assert len(fits) == 64 and secret_name("s" * 10, "h" * 31, "N" * 8, "f" * 16) == fits
    assert proxy_config_name("staging", "x") == "workhub-staging-proxy-" + hashlib.sha256(b"x").hexdigest()[:12]


def test_long_secret_names_stay_apart_and_change_with_their_value():
    """Two long names of one hub sharing their first 64 characters are two secrets; a new value of a
    long-named secret is a new name (so the deploy makes it rather than skipping it as present)."""
    first, second = "DATABASE_CONNECTION_STRING_FOR_THE_REPORTING_REPLICA_" + "A", \
        "DATABASE_CONNECTION_STRING_FOR_THE_REPORTING_REPLICA_" + "B"
    names = {secret_name("staging", "wbhubmanager", name, fingerprint(STACK_KEY, "wbhubmanager", name, value))
             for name in (first, second) for value in ("old", "new")}
    assert len(names) == 4
    assert all(len(name) == 64 and DOCKER_NAME.fullmatch(name) for name in names)


def test_a_long_stack_names_proxy_configs_fit_docker():
    long_stack = "a-rather-long-stack-name-for-the-reporting-team"
    names = {proxy_config_name(long_stack, text, role) for text in ("a", "b") for role in ("proxy", "publish")}
    assert len(names) == 4 and all(len(name) <= 64 and DOCKER_NAME.fullmatch(name) for name in names)


_STACKS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,59}", fullmatch=True)
_HUBS = st.from_regex(r"[a-z][a-z0-9-]{0,30}", fullmatch=True)
_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,90}", fullmatch=True)
# A secret as (which of two hubs, the end of its name after a start all share, its value): names
# that share their first characters, and one name with two values, come up often.
_SECRETS = st.tuples(st.sampled_from([0, 1]), st.from_regex(r"[A-Z0-9_]{0,3}", fullmatch=True),
                     st.sampled_from(["", "old", "new"]) | st.text(max_size=20))


@settings(max_examples=300, deadline=None)
@given(stack=_STACKS, hubs=st.tuples(_HUBS, _HUBS), start=_NAMES, one=_SECRETS, other=_SECRETS)
def test_any_two_secrets_of_a_stack_get_two_valid_docker_names(stack, hubs, start, one, other):
    """Whatever their length: distinct (hub, name, value) are distinct Docker secrets, each a name
    Docker takes."""
    secrets = [(hubs[hub], start + end, value) for hub, end, value in (one, other)]
    made = [secret_name(stack, hub, name, fingerprint(STACK_KEY, hub, name, value)) for hub, name, value in secrets]
    assert all(len(name) <= 64 and DOCKER_NAME.fullmatch(name) for name in made), made
    assert (made[0] == made[1]) == (secrets[0] == secrets[1]), made


def test_settings_reach_the_stack_file_literally():
    """`$` is doubled, so `docker stack deploy` does not read it as one of its variables."""
    _, text, _ = rendered()
    assert '"PRICE": "$$5"' in text
    assert yaml.safe_load(text)["services"]["wbsaleshub"]["environment"]["APP_PORT"] == "4091"


def test_nothing_publishes_a_port_through_swarm():
    """Swarm would publish on every interface of the node (its port config has no host address):
    no service publishes one; the publish relay binds the host ports itself, in the node's network
    namespace, and shares the socket volume with the proxy."""
    _, text, _ = rendered()
    document = yaml.safe_load(text)
    assert not [name for name, service in document["services"].items() if "ports" in service]
    publish, proxy = document["services"]["publish"], document["services"]["proxy"]
    assert publish["networks"] == ["hostnet"] and document["networks"]["hostnet"] == {"external": True, "name": "host"}
    assert publish["environment"] == {"WORKHUB_NODE": "{{.Node.Hostname}}"}
    assert proxy["networks"] == ["hubs"]
    sockets = {"type": "volume", "source": "sockets", "target": "/var/lib/haproxy"}
    assert publish["volumes"] == proxy["volumes"] == [sockets]
    assert document["volumes"]["sockets"] == {"name": "workhub-staging-proxy-sockets"}
    assert document["configs"]["publish"]["file"] == "./publish.cfg"


def test_the_publish_relay_binds_each_serving_nodes_publish_address_only():
    config, _ = config_and_runtimes()
    text = publish_config(config, "staging")
    node1 = text.split('.if streq("$WORKHUB_NODE","node1")\n', 1)[1].split(".endif", 1)[0]
    assert node1 == ("frontend wbhubmanager\n    bind ipv4@10.0.0.11:24090\n    default_backend proxy-wbhubmanager\n"
                     "frontend wbsaleshub\n    bind ipv4@10.0.0.11:24091\n    default_backend proxy-wbsaleshub\n")
    assert '"node3"' not in text, "a node that does not serve binds nothing"
    assert "    server proxy unix@/var/lib/haproxy/wbsaleshub.sock send-proxy-v2\n" in text
    raw = swarm_stack()
    raw["swarm"]["nodes"][0]["publishAddress"] = "fd00::11"
    raw["swarm"]["nodes"][1]["publishAddress"] = "127.0.0.1"
    text = publish_config(parse_stack_config(raw, stack="staging", secret_keys={"sshPrivateKey"}), "staging")
    assert "    bind ipv6@fd00::11:24090\n" in text and "    bind ipv4@127.0.0.1:24091\n" in text


def test_haproxy_accepts_the_publish_config_on_each_node(tmp_path):
    """HAProxy's own check passes the relay's config as each serving node reads it."""
    path = tmp_path / "publish.cfg"
    path.write_text(publish_config(config_and_runtimes()[0], "staging"))
    for node in ("node1", "node2"):
        checked = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True,
                                 env={**os.environ, "WORKHUB_NODE": node})
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "Configuration file is valid" in checked.stdout


def test_the_proxy_routes_each_host_port_to_the_hubs_tasks_health_checked():
    config, _, proxy = rendered()
    assert ("    bind unix@/var/lib/haproxy/wbsaleshub.sock mode 600 accept-proxy\n"
            "    default_backend slots-wbsaleshub\n") in proxy
    assert f"    server-template task 5 tasks.{service_name('staging', 'wbhubmanager')}:4090\n" in proxy
    assert "    http-check send meth GET uri /health\n    http-check expect status 200\n" in proxy
    assert "check inter 500ms fall 2 rise 3 resolvers docker init-addr none" in proxy
    assert "    hold valid 1s\n" in proxy and "    option redispatch 1\n" in proxy
    assert task_slots(1) == 3 and task_slots(0) == 3


def test_the_proxy_config_is_versioned_by_its_text():
    """Docker configs cannot change: new text, new name; the stack file names the one it reads."""
    _, text, proxy = rendered()
    name = proxy_config_name("staging", proxy)
    assert yaml.safe_load(text)["configs"]["proxy"] == {"name": name, "file": "./haproxy.cfg"}
    assert proxy_config_name("staging", proxy + "#") != name


def test_haproxy_accepts_the_proxy_config(tmp_path):
    """HAProxy's own check (the version the proxy image is made from) passes the rendered config."""
    path = tmp_path / "haproxy.cfg"
    path.write_text(rendered()[2])
    checked = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Configuration file is valid" in checked.stdout


def deploy_text() -> str:
    config, runtimes = config_and_runtimes()
    _, text, proxy = rendered()
    return deploy_script(config, "staging", runtimes, text, proxy, proxy_config_name("staging", proxy),
                         config.registry, 300)


def test_swarm_scripts_golden():
    config, _ = config_and_runtimes()
    golden("swarm-labels.sh", labels_script(config))
    golden("swarm-deploy.sh", deploy_text())
    golden("swarm-owners.sh", owners_script(config, "staging", "node2", IMAGES))


def test_swarm_scripts_are_bash_and_hold_no_secret_value():
    config, runtimes = config_and_runtimes()
    for text in (labels_script(config), deploy_text()):
        assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
        for values in SECRET_VALUES.values():
            assert not any(value in text for value in values.values())
    # The values go in as secret_0, secret_1 in the order of the script's secret_names.
    assert deploy_secret_values(config, runtimes) == {"secret_0": "s3cr3t $HOME `id`",
                                                      "secret_1": "line one\nline two"}
    assert "secret_names=(staging-wbhubmanager-SESSION_SECRET-" in deploy_text()


def test_swarm_member_scripts_golden():
    """Creating the Swarm on the first manager and joining it, each a no-op on a node already in one;
    the join token only as the secret variable join_token."""
    config, _ = config_and_runtimes()
    first, second, _ = config.swarm.nodes
    golden("swarm-init.sh", init_script(first))
    golden("swarm-join.sh", join_script(second, first, "manager"))
    assert join_token_script("worker").endswith('docker swarm join-token --quiet "$role"\n')
    for text in (init_script(first), join_script(second, first, "worker")):
        assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
        assert "join_token=" not in text


FAKE_DOCKER = r"""#!/bin/bash
# Just enough of the Docker CLI for the deploy script: a `docker stack deploy` sets each service's
# image from the stack file and starts a rollout that has completed at once.
state=$FAKE_STATE
case "$1 $2" in
  "stack deploy")
    python3 - "${@: -1}" "$state" <<'PY'
import json, os, pathlib, sys
stack, state = sys.argv[1], pathlib.Path(sys.argv[2])
for name, service in json.loads(pathlib.Path("stack.json").read_text())["services"].items():
    (state / f"image.{stack}_{name}").write_text(service["image"])
    started = state / f"started.{stack}_{name}"
    if os.environ.get("FAKE_NO_ROLLOUT"):  # Swarm clears the last rollout of a service it updates
        started.write_text("")
    else:
        started.write_text(str(int(started.read_text() if started.exists() and started.read_text() else "0") + 1))
PY
    ;;
  "service inspect")
    case "$4" in
      *StartedAt*) cat "$state/started.$5" 2>/dev/null ;;
      *UpdateStatus.State*) if [ -s "$state/started.$5" ]; then echo completed; fi ;;
      *Image*) cat "$state/image.$5" ;;
    esac ;;
  "service ls") echo "${4#name=} 1/1" ;;
  "login "*) cat >/dev/null ;;
esac
"""


def test_the_deploy_reports_each_hubs_previous_image_until_its_image_changes_again(tmp_path):
    """The image a rollback pins: what the service ran before the deploy that last changed its image,
    kept through deploys that leave the image as it is, and none for a new service."""
    config, runtimes = config_and_runtimes()
    proxy = proxy_config(config, "staging")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "docker").write_text(FAKE_DOCKER)
    (fake / "docker").chmod(0o755)
    (tmp_path / "state").mkdir()
    env = {**os.environ, "HOME": str(tmp_path), "FAKE_STATE": str(tmp_path / "state"),
           "PATH": f"{fake}:{os.environ['PATH']}"}
    first, second = IMAGES["wbhubmanager"] + "@sha256:" + "01" * 32, IMAGES["wbhubmanager"] + "@sha256:" + "02" * 32

    def deploy(image: str) -> dict:
        text = stack_file(config, "staging", {**IMAGES, "wbhubmanager": image}, runtimes, proxy)
        done = subprocess.run(["bash", "-c", deploy_script(config, "staging", runtimes, text, proxy,
                                                          proxy_config_name("staging", proxy), config.registry, 30)],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        hubs = json.loads(done.stdout.strip().splitlines()[-1])["hubs"]
        assert hubs["wbhubmanager"]["image"] == image
        return {hub: found["previous"] for hub, found in hubs.items()}

    assert deploy(first) == {"wbhubmanager": "", "wbsaleshub": ""}
    assert deploy(second) == {"wbhubmanager": first, "wbsaleshub": ""}
    assert deploy(second) == {"wbhubmanager": first, "wbsaleshub": ""}, "a deploy that keeps the image keeps it"
    assert deploy(first) == {"wbhubmanager": second, "wbsaleshub": ""}, "a rollback's own previous: undo it"


def test_a_deploy_that_starts_no_rollout_after_a_rollout_converges(tmp_path):
    """Swarm clears a service's last rollout when `docker stack deploy` updates it: a deploy that
    changes nothing after one that rolled out (or back) waits the settle window, not its timeout."""
    import time

    config, runtimes = config_and_runtimes()
    proxy = proxy_config(config, "staging")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "docker").write_text(FAKE_DOCKER)
    (fake / "docker").chmod(0o755)
    (tmp_path / "state").mkdir()
    env = {**os.environ, "HOME": str(tmp_path), "FAKE_STATE": str(tmp_path / "state"),
           "PATH": f"{fake}:{os.environ['PATH']}"}
    text = stack_file(config, "staging", IMAGES, runtimes, proxy)
    script = deploy_script(config, "staging", runtimes, text, proxy, proxy_config_name("staging", proxy),
                           config.registry, 30)
    assert subprocess.run(["bash", "-c", script], env=env, capture_output=True, timeout=60).returncode == 0
    start = time.monotonic()
    again = subprocess.run(["bash", "-c", script], env={**env, "FAKE_NO_ROLLOUT": "1"}, capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "swarm-deploy: workhub-staging_wbhubmanager: 1/1 task(s) running" in again.stderr
    assert time.monotonic() - start < 20, "it waited for a rollout that never starts"
