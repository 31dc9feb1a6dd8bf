"""The GitHub Actions workflows: actionlint finds nothing, and each does what its name says
(pr.yml runs the whole test suite and previews both stacks on a pull request, main.yml deploys
staging only, promote.yml deploys production only after the production environment's approval)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
ACTIONLINT = "v1.7.12"
ACTIONLINT_MODULE = "github.com/rhysd/actionlint/cmd/actionlint"
CACHE = Path(os.environ.get("WORKHUB_CACHE_DIR")
             or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "workhub")


@pytest.fixture(scope="session")
def actionlint() -> Path:
    """actionlint at the pinned version, built once from its Go module into the workhub cache."""
    bin_dir = CACHE / "toolchain" / f"actionlint-{ACTIONLINT}" / "bin"
    binary = bin_dir / "actionlint"
    if not binary.exists():
        if not shutil.which("go"):
            pytest.fail(f"actionlint {ACTIONLINT} is not in {bin_dir} and there is no `go` to build it with")
        built = subprocess.run(["go", "install", f"{ACTIONLINT_MODULE}@{ACTIONLINT}"],
                               env={**os.environ, "GOBIN": str(bin_dir)}, capture_output=True, text=True)
        if built.returncode != 0:
            pytest.fail(f"go install {ACTIONLINT_MODULE}@{ACTIONLINT} failed:\n{built.stderr}")
    return binary


@pytest.fixture(scope="session")
def shellcheck() -> Path:
    """The pinned shellcheck from requirements-ci.txt (not whatever the machine has)."""
    binary = Path(sys.executable).parent / "shellcheck"
    if not binary.exists():
        pytest.fail(f"no shellcheck next to {sys.executable}: pip install -r requirements-ci.txt")
    return binary


def workflow(name: str) -> dict[str, Any]:
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    document["on"] = document.pop(True, document.get("on"))
    return document


def triggers(document: dict[str, Any]) -> set[str]:
    on = document["on"]
    return {on} if isinstance(on, str) else set(on)


def pulumi_steps(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str, str]]:
    """(job id, job, command, stack) of every pulumi/actions step that runs a command, with a
    matrix stack expanded into each of its values."""
    for job_id, job in document["jobs"].items():
        matrix = (job.get("strategy") or {}).get("matrix") or {}
        for step in job.get("steps", []):
            if not step.get("uses", "").startswith("pulumi/actions@") or "command" not in step.get("with", {}):
                continue
            stack = str(step["with"]["stack-name"])
            found = re.fullmatch(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", stack)
            for value in (matrix[found.group(1)] if found else [stack]):
                yield job_id, job, step["with"]["command"], value


def environment(job: dict[str, Any]) -> str | None:
    env = job.get("environment")
    return env.get("name") if isinstance(env, dict) else env


def test_actionlint_finds_nothing(actionlint, shellcheck):
    """actionlint (with the pinned shellcheck over every run: script) reports no finding."""
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {path.name for path in files} >= {"pr.yml", "main.yml", "promote.yml"}
    result = subprocess.run([str(actionlint), f"-shellcheck={shellcheck}", "-pyflakes=", *map(str, files)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pr_runs_the_unit_suite_and_previews_both_stacks_with_a_summary():
    pr = workflow("pr.yml")
    assert triggers(pr) == {"pull_request"}
    assert any("not e2e" in s for job in pr["jobs"].values() for s in pytest_selections(job))
    previews = list(pulumi_steps(pr))
    assert {(command, stack) for _, _, command, stack in previews} == {("preview", "staging"), ("preview", "production")}
    for job_id, job, _, _ in previews:
        step = next(s for s in job["steps"] if s.get("uses", "").startswith("pulumi/actions@"))
        assert step["with"]["comment-on-pr"] is True and environment(job) is None, job_id
        assert any("pulumi preview" in s.get("run", "") and "--json" in s.get("run", "") for s in job["steps"])
        assert any("workhub.summary --json" in s.get("run", "") for s in job["steps"])
        assert any(s.get("uses", "").startswith("marocchino/sticky-pull-request-comment@") for s in job["steps"])
        assert job["permissions"]["pull-requests"] == "write"


def pytest_selections(job: dict[str, Any]) -> list[str]:
    """The marker expression of each test-suite run in a job's steps ("" for a run of every test)."""
    found = []
    for step in job.get("steps", []):
        for line in step.get("run", "").splitlines():
            command = re.search(r"\b(pytest|scripts/test)\b", line)
            if command:
                marker = re.search(r"\s-m\s+('([^']*)'|\"([^\"]*)\"|(\S+))", line[command.end():])
                found.append(next(g for g in marker.groups()[1:] if g is not None) if marker else "")
    return found


def test_pr_runs_the_end_to_end_suite_with_the_toolchain_cached():
    """Some job of pr.yml runs the e2e tests (together with the unit job: the whole suite), where
    the test host can start its dockerd and sshd, with the toolchain directory cached between runs."""
    pr = workflow("pr.yml")
    selections = {job_id: pytest_selections(job) for job_id, job in pr["jobs"].items()}
    assert any("not e2e" in s for runs in selections.values() for s in runs)
    e2e = [job_id for job_id, runs in selections.items() if any(s in ("", "e2e") for s in runs)]
    assert e2e, f"no job of pr.yml runs the end-to-end tests: {selections}"
    for job_id in e2e:
        job = pr["jobs"][job_id]
        container = job.get("container") or {}
        assert "--privileged" in container.get("options", ""), f"{job_id}: the test host cannot start dockerd"
        assert "if" not in job, f"{job_id}: the end-to-end tests run on every pull request"
        cache_dir = (job.get("env") or {}).get("WORKHUB_CACHE_DIR")
        assert cache_dir, f"{job_id}: WORKHUB_CACHE_DIR is not set, so no cache step can name the toolchain's directory"
        caches = [s["with"] for s in job["steps"] if s.get("uses", "").startswith("actions/cache@")]
        toolchain = [c for c in caches if c["path"] == "${{ env.WORKHUB_CACHE_DIR }}/toolchain"]
        assert toolchain, f"{job_id}: the toolchain directory is not cached: {caches}"
        assert "hashFiles('scripts/toolchain.sh')" in toolchain[0]["key"], "a new toolchain version gets a new cache"
        steps = [s.get("run", "") for s in job["steps"]]
        assert steps.index(next(r for r in steps if "scripts/test" in r)) > [
            i for i, s in enumerate(job["steps"]) if s.get("uses", "").startswith("actions/cache@")][-1]


def test_main_deploys_staging_only():
    main = workflow("main.yml")
    assert main["on"]["push"]["branches"] == ["main"]
    assert [(command, stack) for _, _, command, stack in pulumi_steps(main)] == [("up", "staging")]
    assert "production" not in (WORKFLOWS / "main.yml").read_text()


def test_promote_deploys_production_only_through_the_production_environment():
    """The manual approval is the production environment's required reviewers."""
    promote = workflow("promote.yml")
    assert triggers(promote) == {"workflow_dispatch"}
    ups = list(pulumi_steps(promote))
    assert [(command, stack) for _, _, command, stack in ups] == [("up", "production")]
    assert all(environment(job) == "production" for _, job, _, _ in ups)


def test_two_deploys_of_one_stack_never_overlap():
    """Every job that runs `up` is in its stack's concurrency group and never cancels a deploy."""
    for name in ("main.yml", "promote.yml"):
        for job_id, job, command, stack in pulumi_steps(workflow(name)):
            assert command == "up"
            concurrency = job.get("concurrency")
            assert isinstance(concurrency, dict), f"{name}: job {job_id} has no concurrency group"
            assert concurrency["group"] == f"deploy-{stack}" and concurrency["cancel-in-progress"] is False, name


def test_actions_are_pinned_and_nothing_secret_is_written_in():
    """Actions by version tag; no address, URL, key or token in the text: secrets come from secrets.*."""
    for path in sorted(WORKFLOWS.glob("*.yml")):
        text = path.read_text()
        for uses in re.findall(r"uses:\s*(\S+)", text):
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+(\.\d+){0,2}", uses), f"{path.name}: {uses} is not pinned to a version tag"
        assert "://" not in text, f"{path.name} names a URL"
        assert not re.search(r"\b\d{1,3}(\.\d{1,3}){3}\b", text), f"{path.name} names an IP address"
        assert not re.search(r"ssh-(ed25519|rsa)|BEGIN [A-Z ]*KEY|ghp_|pul-[0-9a-f]", text), f"{path.name} holds a key"
        for variable in ("PULUMI_ACCESS_TOKEN", "GH_TOKEN"):
            for value in re.findall(rf"{variable}:\s*(.+)", text):
                assert re.fullmatch(r"\$\{\{\s*secrets\.\w+\s*\}\}", value.strip()), f"{path.name}: {variable}: {value}"
