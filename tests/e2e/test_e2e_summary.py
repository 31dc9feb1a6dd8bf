"""The preview summary of a real stack on the test host (marker `e2e`): a new stack, a one-hub change,
a failing preview; with WORKHUB_UPDATE_FIXTURES=1 these previews are saved as the fixtures the unit
tests (tests/unit/cli/test_summary.py) read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from tests.e2e_fixtures import deploy_home, free_ports, new_local_stack, on_the_side_host
from tests.unit.cli.test_summary import FIXTURES, HUB_NAMES, STACK, UPDATE, host_line, table
from workhub import engine as eng
from workhub.engine import print_line
from workhub.summary import summarize

# Beside the one-host tests, on a test host of its own (tests/e2e_fixtures.py: on_the_side_host).
test_host, host_state, beside_the_one_host = on_the_side_host()


def key_lines(host: dict) -> list[str]:
    """The body lines of the test host's private key, to look for in what the preview shows."""
    text = Path(host["private_key_path"]).read_text()
    return [line for line in text.splitlines() if line and not line.startswith("-----")]


def assert_no_key(text: str, host: dict) -> None:
    leaked = [line for line in key_lines(host) if line in text]
    assert not leaked, "the private key appears in the preview"


def save(name: str, preview: dict[str, Any], tmp_path: Path, host: dict, sources: Path) -> None:
    """With WORKHUB_UPDATE_FIXTURES=1: keep `preview` as a fixture, without machine paths."""
    if not UPDATE:
        return
    replacements = {str(tmp_path): "<tmp>", str(sources): "<sources>", str(eng.REPO): "<repo>",
                    str(deploy_home(host["user"])): "<deploy home>",
                    host["host_public_key"]: "ssh-ed25519 <test host key>"}

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in ("stackTrace", "sourcePosition")}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str):
            for old, new in replacements.items():
                value = value.replace(old, new)
        return value

    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / f"{name}.json").write_text(json.dumps(clean(preview), indent=2, sort_keys=True) + "\n")


@pytest.mark.e2e
def test_preview_of_a_new_stack_lists_every_hub_as_created(tmp_path, toolchain, test_host, npm_registry, sources):
    from workhub.preview import preview_json

    engine, stack = new_local_stack(tmp_path, test_host, npm_registry, source_root=sources, name=STACK)
    try:
        preview = preview_json(stack)
        save("new-stack", preview, tmp_path, test_host, sources)
        assert set(preview["changeSummary"]) == {"create"}
        assert_no_key(json.dumps(preview), test_host)
        text = summarize(preview, stack.name)
        print(text)
        rows = table(text)
        assert list(rows) == HUB_NAMES
        assert all(row["action"] == "create" and row["image"].startswith(f"{hub}:{STACK}-") for hub, row in rows.items())
    finally:
        stack.destroy(color="never")


@pytest.mark.e2e
@pytest.mark.slow
def test_preview_names_the_one_hub_a_change_rebuilds_or_restarts(tmp_path, toolchain, test_host, npm_registry, sources):
    """After an up: a source change rebuilds and restarts WBSalesHub only; a new host port
    restarts WBFinHub only. One stack for both, to build the hubs once."""
    from workhub.preview import preview_json

    engine, stack = new_local_stack(tmp_path, test_host, npm_registry, source_root=sources, name=STACK)
    try:
        stack.up(on_output=print_line, color="never")

        server = sources / "WBSalesHub" / "server.js"
        original = server.read_text()
        server.write_text(original + "\n// a source-only change\n")
        try:
            preview = preview_json(stack)
        finally:
            # Back as deployed: the port change below is then the only one, and destroy can
            # upload the context the state names.
            server.write_text(original)
        save("source-change", preview, tmp_path, test_host, sources)
        assert_no_key(json.dumps(preview), test_host)
        text = summarize(preview, stack.name)
        print(text)
        rows = table(text)
        assert list(rows) == ["wbsaleshub"], text
        assert rows["wbsaleshub"]["action"] == "build + restart" and rows["wbsaleshub"]["why"] == "source changed"
        assert rows["wbsaleshub"]["image"].startswith(f"wbsaleshub:{STACK}-")
        assert rows["wbsaleshub"]["image"] != stack.outputs()["hubs"].value["wbsaleshub"]["image"]

        old_port = int(stack.get_config("workhub:hostPorts.wbfinhub", path=True).value)
        (new_port,) = free_ports(1)
        stack.set_config("workhub:hostPorts.wbfinhub", auto.ConfigValue(str(new_port)), path=True)
        preview = preview_json(stack)
        save("host-port-change", preview, tmp_path, test_host, sources)
        assert_no_key(json.dumps(preview), test_host)
        text = summarize(preview, stack.name)
        print(text)
        assert table(text) == {"wbfinhub": {
            "action": "restart only", "why": f"host port {old_port} -> {new_port}",
            "image": stack.outputs()["hubs"].value["wbfinhub"]["image"],
        }}
        assert host_line(text) == "" and "[secret]" not in text
    finally:
        stack.destroy(on_output=print_line, color="never")


@pytest.mark.e2e
def test_a_failing_preview_is_summarized_with_its_error(tmp_path, toolchain, test_host, sources):
    """A program that stops (a non-conforming Dockerfile) still gives the CLI's JSON and its error."""
    from workhub.preview import PreviewFailed, preview_json

    dockerfile = sources / "WBSalesHub" / "Dockerfile"
    install = 'mode=0444 eval "$WORKHUB_RETRY" npm ci\n'
    assert install in dockerfile.read_text(), "the sample Dockerfile's root install changed: update this test"
    dockerfile.write_text(dockerfile.read_text().replace(install, install[:-1] + " && npm cache clean --force\n", 1))
    engine, stack = new_local_stack(tmp_path, test_host, source_root=sources, name=STACK)
    with pytest.raises(PreviewFailed) as caught:
        preview_json(stack)
    assert caught.value.preview is not None
    text = summarize(caught.value.preview, stack.name)
    print(text)
    assert "**The preview failed:**" in text
    assert f"workhub:hubs[1].dockerfile: {dockerfile}:" in text and "npm cache clean" in text
    assert table(text) == {}
