"""An operation's outputs and summary are read from the CLI only when used (workhub/lean.py), and a
result held across the next operation still shows what its own operation left: the real CLI, a
local file backend, an inline program, every CLI start recorded."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest
from pulumi import automation as auto

from workhub import engine as eng
from workhub.lean import lean, masked_outputs


class Recording(auto.PulumiCommand):
    """The real CLI, each run's first two arguments recorded."""

    def __init__(self, root: str) -> None:
        super().__init__(root=root)
        self.runs: list[str] = []

    def run(self, args, *rest, **kwargs):  # type: ignore[override]
        self.runs.append(" ".join(arg for arg in args[:2] if not arg.startswith("-")))
        return super().run(args, *rest, **kwargs)


def program() -> None:
    pulumi.export("n", pulumi.Config().get("n"))
    pulumi.export("hidden", pulumi.Output.secret("s3cret-output"))


@pytest.fixture
def stack(tmp_path: Path, toolchain: Path) -> tuple[auto.Stack, Recording]:
    command = Recording(root=str(toolchain.parent))
    backend = tmp_path / "state"
    backend.mkdir()
    options = auto.LocalWorkspaceOptions(
        work_dir=str(tmp_path), pulumi_command=command,
        project_settings=auto.ProjectSettings(name="lean", runtime="python"),
        env_vars={"PULUMI_BACKEND_URL": f"file://{backend}", "PULUMI_CONFIG_PASSPHRASE": "lean-test",
                  "PULUMI_SKIP_UPDATE_CHECK": "true"})
    made = auto.create_or_select_stack("dev", project_name="lean", program=program, opts=options)
    return lean(made), command


def test_up_reads_no_output_nor_history_until_used_and_the_table_reads_them_once(stack):
    stack, command = stack
    stack.set_config("n", auto.ConfigValue("1"))
    del command.runs[:]
    result = stack.up(color="never")
    assert command.runs == ["up"], "the SDK's up read its results another way: workhub/lean.py no longer holds"
    assert result.outputs["n"].value == "1" and result.outputs["hidden"].secret
    assert command.runs == ["up", "stack output", "stack output"]
    assert result.summary.result == "succeeded" and result.summary.kind == "update"
    assert command.runs[-1] == "stack history"
    assert result.outputs["n"].value == "1" and result.summary.kind == "update", "read once"
    assert len(command.runs) == 4
    # The CLI's table of outputs: one start, the secret one masked.
    outputs = masked_outputs(stack)
    assert command.runs[4:] == ["stack output"]
    assert (outputs["n"].value, outputs["n"].secret) == ("1", False)
    assert outputs["hidden"].secret and "s3cret" not in repr(outputs["hidden"].value)


def test_a_result_held_across_the_next_operation_shows_its_own(stack):
    stack, command = stack
    stack.set_config("n", auto.ConfigValue("1"))
    first = stack.up(color="never")
    stack.set_config("n", auto.ConfigValue("2"))
    stack.up(color="never")  # dropped: never read
    second = stack.refresh(color="never")
    assert first.outputs["n"].value == "1" and first.summary.kind == "update"
    assert second.summary.kind == "refresh" and stack.outputs()["n"].value == "2"
    # first's outputs and summary (read before the second up), second's summary and the last
    # stack.outputs(): the dropped up's results were never read.
    assert command.runs.count("stack output") == 4 and command.runs.count("stack history") == 2


def test_the_engine_selects_and_creates_local_stacks_with_one_cli_start_at_most(tmp_path, toolchain, monkeypatch):
    work = tmp_path / "project"
    work.mkdir()
    (work / "Pulumi.yaml").write_text("name: lean\nruntime: python\n")
    engine = eng.Engine(work_dir=work, backend_url=f"file://{tmp_path / 'state'}", passphrase="lean-test")
    (tmp_path / "state").mkdir()
    runs: list[str] = []
    real = auto.PulumiCommand.run
    monkeypatch.setattr(auto.PulumiCommand, "run", lambda self, args, *rest, **kwargs: (
        runs.append(" ".join(a for a in args[:2] if not a.startswith("-"))), real(self, args, *rest, **kwargs))[1])
    engine.stack("fresh")
    assert runs == ["stack init"]
    engine.stack("fresh")
    assert runs == ["stack init"], "an existing stack is selected with no CLI run"
    assert eng.backend_stacks(tmp_path / "state", work) == ["fresh"]
