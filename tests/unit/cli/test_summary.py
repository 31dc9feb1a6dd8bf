"""The PR comment made from `pulumi preview --json`: which hubs rebuild or restart, and why.

The unit tests read previews tests/e2e/test_e2e_summary.py captured with preview_json from a real engine
(tests/fixtures/previews/, sanitized: no machine paths, no stack traces). After an intended change
to the program, capture them again: WORKHUB_UPDATE_FIXTURES=1 scripts/test tests/e2e/test_e2e_summary.py
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from workhub import engine as eng
from workhub.summary import main, shown, summarize

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "previews"
UPDATE = os.environ.get("WORKHUB_UPDATE_FIXTURES") == "1"
HUB_NAMES = [hub["name"] for hub in yaml.safe_load((eng.REPO / "Pulumi.yaml").read_text())
             ["config"]["workhub:hubs"]["value"]]
# A stack name of this file's own: its containers, contexts and image tags meet no other test's.
STACK = "summary"


def table(markdown: str) -> dict[str, dict[str, str]]:
    """The comment's table: hub -> {action, why, image}."""
    rows = {}
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 4 and cells[0] not in ("hub", "---"):
            rows[cells[0]] = {"action": cells[1], "why": cells[2], "image": cells[3].strip("`")}
    return rows


def host_line(markdown: str) -> str:
    return next((line for line in markdown.splitlines() if line.startswith("**Host:**")), "")


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def steps_named(preview: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [step for step in preview["steps"] if step["urn"].endswith(f"::{name}")]


# --- unit tests on captured previews -------------------------------------------------------------


def test_new_stack_creates_every_hub_with_its_image():
    """A fresh stack: one `create` row per hub, with the image tag the build will produce."""
    preview = fixture("new-stack")
    text = summarize(preview, STACK)
    assert text.startswith(f"### workhub preview of `{STACK}`: {preview['changeSummary']['create']} to create\n")
    rows = table(text)
    assert list(rows) == HUB_NAMES
    for hub, row in rows.items():
        assert row["action"] == "create" and row["why"] == "new hub"
        assert re.fullmatch(rf"{hub}:{STACK}-[0-9a-f]{{12}}", row["image"]), row
    assert host_line(text) == "**Host:** facts: create; preflight: create; setup: create"
    assert "No changes." not in text


def test_a_registry_mode_pull_counts_as_the_hubs_build():
    """In registry mode the host pulls where it would build: the row reads the same."""
    preview = fixture("source-change")
    pulled = copy.deepcopy(preview)
    for step in pulled["steps"]:
        for key in ("urn", "oldState", "newState"):
            if key == "urn" and step[key].endswith("::wbsaleshub-build"):
                step[key] = step[key][:-len("build")] + "pull"
            elif isinstance(step.get(key), dict) and str(step[key].get("urn", "")).endswith("::wbsaleshub-build"):
                step[key]["urn"] = step[key]["urn"][:-len("build")] + "pull"
    assert any(step["urn"].endswith("::wbsaleshub-pull") for step in pulled["steps"])
    assert table(summarize(pulled, STACK)) == table(summarize(preview, STACK))


def test_source_change_rebuilds_and_restarts_only_that_hub():
    """One source file of WBSalesHub changed: its build and restart, nothing else, and why."""
    preview = fixture("source-change")
    text = summarize(preview, STACK)
    (old_image,) = {shown(step["oldState"]["inputs"])["image"]
                    for step in steps_named(preview, "wbsaleshub-run")}
    assert table(text) == {"wbsaleshub": {
        "action": "build + restart", "why": "source changed",
        "image": shown(steps_named(preview, "wbsaleshub-run")[0]["newState"]["inputs"])["image"],
    }}
    assert table(text)["wbsaleshub"]["image"] != old_image
    assert host_line(text) == "**Host:** preflight: runs again (hub images changed)"
    assert f"{preview['changeSummary']['update']} to update" in text.splitlines()[0]


def test_host_port_change_restarts_only_that_hub():
    """A new host port for WBFinHub: a restart only, naming the old and the new port."""
    preview = fixture("host-port-change")
    new_port = json.loads(preview["config"]["workhub:hostPorts"])["wbfinhub"]
    rows = table(summarize(preview, STACK))
    assert list(rows) == ["wbfinhub"] and rows["wbfinhub"]["action"] == "restart only"
    old, new = map(int, re.fullmatch(r"host port (\d+) -> (\d+)", rows["wbfinhub"]["why"]).groups())
    assert new == new_port and old != new
    assert host_line(summarize(preview, STACK)) == ""


def test_a_run_setting_change_is_named_by_what_the_run_shows():
    """The run's other values (its `summary` input) are named when they change: here its health path."""
    preview = copy.deepcopy(fixture("host-port-change"))
    (run,) = steps_named(preview, "wbfinhub-run")
    run["oldState"]["inputs"]["summary"] = {**run["newState"]["inputs"]["summary"], "health_path": "/old"}
    rows = table(summarize(preview, STACK))
    assert rows["wbfinhub"]["why"] == "container changed (health_path)"


def test_a_run_last_deployed_without_a_summary_input_still_gets_a_reason():
    """A stack last deployed before commands carried `summary`: its old state has none, so a script
    change reads as such (no made-up `?` port), and the new image still shows."""
    preview = copy.deepcopy(fixture("host-port-change"))
    (run,) = steps_named(preview, "wbfinhub-run")
    del run["oldState"]["inputs"]["summary"]
    row = table(summarize(preview, STACK))["wbfinhub"]
    assert (row["action"], row["why"]) == ("restart only", "container changed (run script)")
    assert row["image"] == shown(run["newState"]["inputs"])["image"]


def test_drift_a_refresh_found_restarts_that_hub_and_says_what_it_found():
    """After a refresh found WBFinHub's live container gone, its run is an update that runs again."""
    preview = copy.deepcopy(fixture("host-port-change"))
    (run,) = steps_named(preview, "wbfinhub-run")
    run["newState"]["inputs"]["create"] = run["oldState"]["inputs"]["create"]
    run["oldState"]["inputs"]["drift"] = ["the live container wbfinhub-summary-blue is gone"]
    rows = table(summarize(preview, STACK))
    assert rows["wbfinhub"]["action"] == "restart only"
    assert rows["wbfinhub"]["why"] == "drift: the live container wbfinhub-summary-blue is gone"


def test_an_image_removed_from_the_host_rebuilds_that_hub():
    """After a refresh found WBSalesHub's image gone, its build runs again, for that reason."""
    preview = copy.deepcopy(fixture("source-change"))
    (build,) = steps_named(preview, "wbsaleshub-build")
    (run,) = steps_named(preview, "wbsaleshub-run")
    run["op"] = "same"
    build["newState"]["inputs"] = {**build["oldState"]["inputs"]}
    build["oldState"]["inputs"]["drift"] = ["the image wbsaleshub:summary-0123456789ab is not on the host"]
    assert table(summarize(preview, STACK))["wbsaleshub"] | {"image": ""} == {
        "action": "build only", "why": "drift: the image wbsaleshub:summary-0123456789ab is not on the host",
        "image": ""}


def test_nothing_changing_says_no_changes():
    preview = copy.deepcopy(fixture("source-change"))
    for step in preview["steps"]:
        step["op"] = "same"
    preview["changeSummary"] = {"same": len(preview["steps"])}
    text = summarize(preview, STACK)
    assert text == f"### workhub preview of `{STACK}`: {len(preview['steps'])} unchanged\n\nNo changes.\n"


def test_a_change_outside_the_commands_runs_nothing():
    """Only the stack resource changes (its outputs, say): no row, and the comment says so."""
    preview = copy.deepcopy(fixture("source-change"))
    for step in preview["steps"]:
        step["op"] = "update" if step["urn"].endswith("::pulumi:pulumi:Stack::workhub-" + STACK) else "same"
    preview["changeSummary"] = {"same": len(preview["steps"]) - 1, "update": 1}
    text = summarize(preview, STACK)
    assert text.endswith("\n\nNo hub or host changes; nothing runs on the host.\n") and table(text) == {}


@pytest.mark.parametrize("trigger, why", [
    ("dockerfile", "Dockerfile changed"),
    ("settings", "build settings changed"),
])
def test_each_build_trigger_is_named(trigger, why):
    """Whichever trigger hash moved is the reason (the captured change only moved `source`)."""
    preview = copy.deepcopy(fixture("source-change"))
    (build,) = steps_named(preview, "wbsaleshub-build")
    new = build["newState"]["inputs"]["triggers"]
    new["source"] = build["oldState"]["inputs"]["triggers"]["source"]
    new[trigger] = "0" * 64
    assert table(summarize(preview, STACK))["wbsaleshub"]["why"] == why


def test_removed_hub_is_a_delete_with_its_last_image():
    preview = copy.deepcopy(fixture("source-change"))
    old_image = None
    for name in ("wbsaleshub-build", "wbsaleshub-run"):
        (step,) = steps_named(preview, name)
        step["op"], step["newState"] = "delete", None
        old_image = shown(step["oldState"]["inputs"])["image"]
    assert table(summarize(preview, STACK))["wbsaleshub"] == {"action": "delete", "why": "hub removed", "image": old_image}


def test_secret_inputs_never_reach_the_comment():
    """Even a preview run with --show-secrets (plain secret values in the inputs) leaks none of them."""
    preview = copy.deepcopy(fixture("host-port-change"))
    key = "-----BEGIN " + "OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n"
    (run,) = steps_named(preview, "wbfinhub-run")
    for same in ("create", "check", "summary"):
        run["oldState"]["inputs"][same] = run["newState"]["inputs"][same]
    run["oldState"]["inputs"]["privateKey"] = key
    run["newState"]["inputs"]["privateKey"] = key.replace("b3Bl", "c4Cm")
    run["newState"]["inputs"]["notifyUrl"] = "https://hooks.example.test/s3cr3t-token"
    text = summarize(preview, STACK)
    assert table(text)["wbfinhub"] == {"action": "update (nothing runs on the host)",
                                       "why": "notifyUrl, privateKey changed",
                                       "image": table(text)["wbfinhub"]["image"]}
    for secret in ("PRIVATE KEY", "b3Bl", "c4Cm", "s3cr3t", "[secret]"):
        assert secret not in text


def rekeyed_preview(key_made: bool) -> dict[str, Any]:
    """WBFinHub's run with only its secret's fingerprint changed, and (`key_made`) the stack's key
    made in the same preview: the first preview of a stack deployed before the stack key."""
    preview = copy.deepcopy(fixture("host-port-change"))
    (run,) = steps_named(preview, "wbfinhub-run")
    run["oldState"]["inputs"]["create"] = run["newState"]["inputs"]["create"]
    for state, digest in (("oldState", "0123456789abcdef"), ("newState", "fedcba9876543210")):
        run[state]["inputs"]["triggers"] = {"env": {"PORT": "4092"}, "secrets": {"LEDGER_SIGNING_KEY": digest},
                                            "volumes": {}}
    if key_made:
        urn = f"urn:pulumi:{STACK}::workhub::pulumi-python:dynamic:Resource::fingerprint-key"
        preview["steps"].append({"op": "create", "urn": urn, "newState": {
            "urn": urn, "type": "pulumi-python:dynamic:Resource", "custom": True, "inputs": {"key": "[secret]"}}})
    return preview


def test_the_first_preview_with_the_stack_key_says_why_every_secret_reads_changed():
    """The stack's key is made: the comment says the secrets are re-keyed and each hub with secrets
    restarts once, instead of listing the key as an unexplained other change."""
    from components.resources.host.stack_key import NAME
    from workhub.summary import STACK_KEY

    assert STACK_KEY == NAME
    text = summarize(rekeyed_preview(key_made=True), STACK)
    assert table(text)["wbfinhub"]["why"] == "secret LEDGER_SIGNING_KEY changed"
    assert "**Stack key:** made now." in text and "restarts this once" in text
    assert "**Other:**" not in text and "[secret]" not in text
    plain = summarize(rekeyed_preview(key_made=False), STACK)
    assert table(plain)["wbfinhub"]["why"] == "secret LEDGER_SIGNING_KEY changed" and "Stack key" not in plain


def test_failed_preview_shows_its_error_once(tmp_path, capsys):
    preview = copy.deepcopy(fixture("new-stack"))
    message = "workhub: the stack config has 1 problem(s):\n  - workhub:host.address: is not set\n"
    preview["diagnostics"] = [{"message": f"error: {message}", "severity": "error"},
                              {"message": f"error: an unhandled error occurred: {message}", "severity": "error"}]
    text = summarize(preview, STACK)
    assert text.count("workhub:host.address: is not set") == 1 and "**The preview failed:**" in text
    saved = tmp_path / "preview.json"
    saved.write_text(json.dumps(preview))
    assert main(["--json", str(saved), "--stack", STACK]) == 1
    assert capsys.readouterr().out == text


def test_cli_reads_a_saved_preview(tmp_path, capsys):
    saved = tmp_path / "preview.json"
    saved.write_text(json.dumps(fixture("source-change")))
    assert main(["--json", str(saved), "--stack", "staging"]) == 0
    assert capsys.readouterr().out == summarize(fixture("source-change"), "staging")
    saved.write_text("warning: not json\n")
    assert main(["--json", str(saved), "--stack", "staging"]) == 2
    assert "is not the JSON of `pulumi preview --json`" in capsys.readouterr().err


def test_fixtures_hold_no_machine_path_and_no_secret():
    for path in sorted(FIXTURES.glob("*.json")):
        text = path.read_text()
        assert not re.search(r"/(tmp|home|work)/", text), path
        assert "/root/" not in text.replace("/root/.npm", ""), path
        assert "PRIVATE KEY" not in text and "stackTrace" not in text, path
        for step in json.loads(text)["steps"]:
            for state in (step.get("oldState"), step.get("newState")):
                for inputs in ((state or {}).get("inputs"), (state or {}).get("outputs")):
                    if inputs and "privateKey" in inputs:
                        assert inputs["privateKey"] == "[secret]", path
