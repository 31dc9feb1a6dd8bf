"""Run-time settings and secrets on the test host, with the real engine: plain settings and secrets
reach the app (a one-line secret in its environment, one with line breaks as a file), a changed
secret restarts only the hub that uses it and the preview names it, a rotated SSH key restarts no
hub (the fingerprints are keyed with the stack's own key), a stack that gets that key restarts each
hub with secrets once, and no secret value (nor the stack's key) shows up in the state, the
engine's output, the stack outputs, the preview JSON, the PR summary, the host's other files, or
any process's command line or environment (the webhook's URL among them)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import threading
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e_fixtures import (assert_no_secret_in_any_process, deploy_home, docker, forget_local_images,
                                 new_local_stack, secret_values, serving_container)
from workhub.engine import print_line
from workhub.preview import preview_json
from workhub.summary import summarize

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MARK = uuid.uuid4().hex[:12]
HUBS = [
    {"name": "wbhubmanager", "context": "WBHubManager", "port": 4090, "healthPath": "/health",
     "env": {"LOG_LEVEL": "debug"}, "stackEnv": ["PUBLIC_URL"], "secrets": ["SESSION_SECRET"]},
    {"name": "wbfinhub", "context": "WBFinHub", "port": 4092, "healthPath": "/health",
     "secrets": ["LEDGER_SIGNING_KEY"], "volumes": {"data": "/app/data"}},
]
# Every character an env file or a shell would take for something else.
SESSION = f"s3cr3t-{MARK} with spaces, 'single' \"double\" $HOME ${{PATH}} #not-a-comment `id` back\\slash\\"
KEY = f"-----BEGIN TEST KEY-----\nMIIB{MARK}{'x' * 48}\n{'y' * 64}\n-----END TEST KEY-----"
NEW_SESSION = f"rotated-{MARK}-{uuid.uuid4().hex}"


def digests(url: str) -> dict:
    with urllib.request.urlopen(url + "/debug/digests", timeout=10) as response:
        return json.loads(response.read())


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def started_at(container: str) -> str:
    return docker("inspect", "--format", "{{.State.StartedAt}}", container)


def assert_no_secret(text: str, where: str) -> None:
    for value in (SESSION, KEY, NEW_SESSION):
        assert value not in text, f"a secret value is in {where}"
    assert MARK not in text, f"a secret value (its marker {MARK}) is in {where}"


SECRET_SIG = ("4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270")


def without_secrets(value):
    """`value` (exported state) with every value marked secret left out."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG[0]) == SECRET_SIG[1]:
            return "[secret]"
        return {key: without_secrets(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [without_secrets(inner) for inner in value]
    return value


def stack_key(deployment: dict) -> str:
    """The stack's key (components/resources/host/stack_key.py), from an export made with its secrets shown."""
    (resource,) = [r for r in deployment["resources"] if r["urn"].endswith("::fingerprint-key")]
    return json.loads(resource["outputs"]["key"]["plaintext"])


def run_triggers(deployment: dict) -> dict:
    """Each hub's run triggers as the state holds them, by resource name."""
    return {r["urn"].rsplit("::", 1)[1]: r["inputs"]["triggers"] for r in deployment["resources"]
            if r["urn"].endswith("-run")}


def authorize_a_new_key(tmp_path: Path) -> tuple[str, str]:
    """A new SSH key for the deploy user, in its authorized_keys beside the test host's own (which
    other tests go on using): its private key, and its authorized_keys line."""
    path = tmp_path / "rotated_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"workhub-e2e-rotated-{MARK}", "-f",
                    str(path)], check=True)
    line = path.with_suffix(".pub").read_text().strip()
    authorized = deploy_home() / ".ssh" / "authorized_keys"
    with authorized.open("a") as keys:
        keys.write(line + "\n")
    return path.read_text(), line


def forget_key(line: str) -> None:
    authorized = deploy_home() / ".ssh" / "authorized_keys"
    kept = [entry for entry in authorized.read_text().splitlines() if entry.strip() != line]
    authorized.write_text("".join(entry + "\n" for entry in kept))


def host_files_outside_secrets() -> list[Path]:
    """Every file workhub keeps on the host, but the env files and secret files themselves."""
    root = deploy_home() / ".workhub"
    return [path for path in root.rglob("*") if path.is_file()
            and not {"env", "secrets", "contexts", "builds"} & set(path.relative_to(root).parts[:1])]


class Webhook(BaseHTTPRequestHandler):
    """The stack's notification webhook: takes each notice (its URL is a secret)."""

    notices: list[dict] = []

    def do_POST(self) -> None:
        self.notices.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_) -> None:
        pass


def test_settings_and_secrets_reach_the_app_and_nothing_else(tmp_path, toolchain, test_host, npm_registry, sources,
                                                             process_watch):
    engine, stack = new_local_stack(
        tmp_path, test_host, npm_registry, hubs=HUBS, source_root=sources,
        secrets={"wbhubmanager": {"SESSION_SECRET": SESSION}, "wbfinhub": {"LEDGER_SIGNING_KEY": KEY}},
        overrides={"workhub:env.wbhubmanager.PUBLIC_URL": "https://hubs.example.test/manager"})
    webhook = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    engine.set_secret(stack.name, "workhub:notifyWebhook",
                      f"http://127.0.0.1:{webhook.server_port}/notify/{uuid.uuid4().hex}")
    forget_local_images()
    seen: list[str] = []
    try:
        up = stack.up(on_output=seen.append, color="never")
        hubs = up.outputs["hubs"].value
        manager, finance = digests(hubs["wbhubmanager"]["url"]), digests(hubs["wbfinhub"]["url"])
        assert manager["settings"] == {"LOG_LEVEL": "debug", "PUBLIC_URL": "https://hubs.example.test/manager"}
        assert manager["secrets"]["SESSION_SECRET"] == {"sha256": sha256(SESSION), "bytes": len(SESSION.encode()),
                                                        "source": "env"}
        assert finance["secrets"]["LEDGER_SIGNING_KEY"] == {"sha256": sha256(KEY), "bytes": len(KEY.encode()),
                                                            "source": "file"}, "a secret with line breaks is a file"

        # On the host the secrets live in files only the deploy user can read.
        home = deploy_home() / ".workhub"
        env_file = home / "env" / f"{serving_container('wbhubmanager', 'e2e')}.env"
        key_file = home / "secrets" / serving_container("wbfinhub", "e2e") / "LEDGER_SIGNING_KEY"
        for path in (env_file, key_file):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert stat.S_IMODE((home / "env").stat().st_mode) == 0o700
        assert key_file.read_text() == KEY

        # One secret changes: the preview and its summary name it, and only its hub restarts.
        finance_container = serving_container("wbfinhub", "e2e")
        finance_started = started_at(finance_container)
        engine.set_secret(stack.name, "workhub:secrets.wbhubmanager.SESSION_SECRET", NEW_SESSION, path=True)
        preview = preview_json(stack)
        summary = summarize(preview, stack.name)
        print(summary)
        assert "| wbhubmanager | restart only | secret SESSION_SECRET changed |" in summary
        assert "wbfinhub" not in summary.split("| --- |", 1)[1].split("**Host:**")[0], summary
        again = stack.up(on_output=seen.append, color="never")
        assert again.summary.resource_changes.get("update") == 1, again.summary.resource_changes
        assert digests(hubs["wbhubmanager"]["url"])["secrets"]["SESSION_SECRET"]["sha256"] == sha256(NEW_SESSION)
        assert serving_container("wbfinhub", "e2e") == finance_container
        assert started_at(finance_container) == finance_started, "wbfinhub did not restart"

        # The SSH key rotates (a new key, authorized on the host): the fingerprints, keyed with the
        # stack's own key, stay as they are, and no hub restarts.
        before = stack.export_stack().deployment
        manager_container = serving_container("wbhubmanager", "e2e")
        started = {name: started_at(name) for name in (manager_container, finance_container)}
        private_key, authorized_line = authorize_a_new_key(tmp_path)
        engine.set_secret(stack.name, "workhub:sshPrivateKey", private_key)
        rotated = stack.up(on_output=seen.append, color="never")
        after = stack.export_stack().deployment
        assert [serving_container(hub, "e2e") for hub in ("wbhubmanager", "wbfinhub")] == list(started)
        assert {name: started_at(name) for name in started} == started, "no hub restarted"
        assert not [line for line in rotated.stdout.splitlines() if "-run: " in line], "no deploy script ran"
        assert run_triggers(after) == run_triggers(before)
        key = stack_key(before)
        assert stack_key(after) == key

        # A stack deployed before it had a key (here: the key taken out of the state) gets one at its
        # next up: each hub with secrets restarts that once, and the summary says why; then no more.
        subprocess.run(["pulumi", "state", "delete", "--yes", "--stack", stack.name,
                        next(r["urn"] for r in after["resources"] if r["urn"].endswith("::fingerprint-key"))],
                       cwd=engine.work_dir, env={**os.environ, **engine.env()}, check=True, capture_output=True)
        rekeyed = summarize(preview_json(stack), stack.name)
        print(rekeyed)
        assert "**Stack key:** made now." in rekeyed
        assert "| wbhubmanager | restart only | secret SESSION_SECRET changed |" in rekeyed
        assert "| wbfinhub | restart only | secret LEDGER_SIGNING_KEY changed |" in rekeyed
        stack.up(on_output=seen.append, color="never")
        keys = [key, stack_key(stack.export_stack().deployment)]
        assert keys[1] != key
        for hub, name in zip(("wbhubmanager", "wbfinhub"), started):
            assert serving_container(hub, "e2e") != name, f"{hub} restarted once, into its other slot"
        settled = preview_json(stack)
        assert set(settled["changeSummary"]) == {"same"}, settled["changeSummary"]

        # Nowhere else: the engine's output, the outputs, the state, the preview, the summary, the host.
        assert_no_secret("\n".join(seen), "the engine's output")
        assert_no_secret(json.dumps({k: v.value for k, v in again.outputs.items()}), "the stack outputs")
        # The Automation API exports with --show-secrets: a secret must sit only inside a secret's envelope.
        deployment = stack.export_stack().deployment
        assert_no_secret(json.dumps(without_secrets(deployment)), "the state's plain values")
        texts = {"the engine's output": "\n".join(seen),
                 "the state's plain values": json.dumps(without_secrets(deployment)),
                 "the preview JSON": json.dumps(preview) + json.dumps(settled), "the PR summaries": summary + rekeyed}
        for path in (tmp_path / "state").rglob("*"):
            if path.is_file():
                assert_no_secret(path.read_text(errors="replace"), f"the state backend's {path.name}")
                texts[f"the state backend's {path.name}"] = path.read_text(errors="replace")
        for where, text in texts.items():
            assert not [k for k in keys if k in text], f"the stack key is in {where}"
        assert_no_secret(json.dumps(preview), "the preview JSON")
        assert_no_secret(summary, "the PR summary")
        for path in host_files_outside_secrets():
            assert_no_secret(path.read_text(errors="replace"), f"the host's {path}")
        assert {"succeeded"} == {notice["result"] for notice in Webhook.notices}, Webhook.notices
    finally:
        stack.destroy(on_output=print_line, color="never")
        if "authorized_line" in locals():
            forget_key(authorized_line)
        webhook.shutdown()
        # Every secret the stack had: the SSH key before its rotation, the secret before its change and
        # the stack's keys among them; checked at the module's end.
        process_watch.secrets.update({
            **secret_values(stack), "SESSION_SECRET (before its change)": SESSION,
            "workhub:sshPrivateKey (before its rotation)": Path(test_host["private_key_path"]).read_text(),
            **{f"the stack key ({i})": value for i, value in enumerate(locals().get("keys", []))}})


def test_a_dockerfile_volume_without_a_named_volume_is_reported_in_the_preview(tmp_path, toolchain, test_host):
    """The sample Dockerfiles declare VOLUME /app/data; a hub that keeps no named volume there gets a
    warning naming the path and the setting that keeps its data, before anything runs."""
    hub = {"name": "wbsaleshub", "context": "WBSalesHub", "port": 4091, "healthPath": "/health"}
    _, stack = new_local_stack(tmp_path, test_host, hubs=[hub])
    preview = stack.preview(color="never")
    assert "wbsaleshub: " in preview.stdout and "declares VOLUME /app/data, but workhub:hubs[0].volumes" in preview.stdout
    assert "add `volumes: {data: /app/data}` to hub wbsaleshub in Pulumi.yaml" in preview.stdout


def test_no_secret_was_in_any_process_command_line_or_environment(process_watch):
    """While the deploys, the secret's change, the preview and the destroy above ran, no process on
    this machine (the engine, its providers, sshd and the scripts on the test host, Docker's
    clients) held a secret value in its command line or environment, but the hubs' own containers:
    the watcher saw SESSION_SECRET in wbhubmanager's, and left it out by design."""
    by_design = assert_no_secret_in_any_process(process_watch)
    assert any("SESSION_SECRET" in f.secret and f.holder.container.startswith("wbhubmanager-e2e-")
               for f in by_design), by_design
