"""The GitHub Actions workflows: actionlint finds nothing, each does what its name says (pr.yml
runs the whole test suite and previews staging on a pull request, main.yml deploys staging only,
promote.yml deploys production only after the production environment's approval), and no job that
a branch can run reaches a production credential (`production_reach`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
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
    """The pinned shellcheck from requirements.txt (not whatever the machine has)."""
    binary = Path(sys.executable).parent / "shellcheck"
    if not binary.exists():
        pytest.fail(f"no shellcheck next to {sys.executable}: pip install -r requirements.txt")
    return binary


def parsed(text: str) -> dict[str, Any]:
    document = yaml.safe_load(text)
    # YAML 1.1 reads the key `on` as True.
    document["on"] = document.pop(True, document.get("on"))
    return document


def workflow(name: str) -> dict[str, Any]:
    return parsed((WORKFLOWS / name).read_text())


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


def test_pr_runs_the_unit_suite_and_previews_staging_only_with_a_summary():
    """A pull request previews staging, with staging's credentials from the staging-preview
    environment; it previews production not at all."""
    pr = workflow("pr.yml")
    assert triggers(pr) == {"pull_request"}
    assert any("not e2e" in s for job in pr["jobs"].values() for s in pytest_selections(job))
    previews = list(pulumi_steps(pr))
    assert [(command, stack) for _, _, command, stack in previews] == [("preview", "staging")]
    for job_id, job, _, _ in previews:
        step = next(s for s in job["steps"] if s.get("uses", "").startswith("pulumi/actions@"))
        assert step["with"]["comment-on-pr"] is True and environment(job) == "staging-preview", job_id
        assert job["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN_STAGING }}", job_id
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
    """The manual approval is the production environment's required reviewers; its preview (which
    decrypts production's secrets too) reads them from production-preview, main only as well."""
    promote = workflow("promote.yml")
    assert triggers(promote) == {"workflow_dispatch"}
    ups = list(pulumi_steps(promote))
    assert [(command, stack) for _, _, command, stack in ups] == [("up", "production")]
    assert all(environment(job) == "production" for _, job, _, _ in ups)
    assert environment(promote["jobs"]["preview"]) == "production-preview"
    for job_id, job in promote["jobs"].items():
        assert job["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN_PRODUCTION }}", job_id


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
        for variable in ("PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE", "GH_TOKEN"):
            for value in re.findall(rf"{variable}:\s*(.+)", text):
                assert re.fullmatch(r"\$\{\{\s*secrets\.\w+\s*\}\}", value.strip()), f"{path.name}: {variable}: {value}"


# --- who can reach production's credentials ------------------------------------------------------
#
# Any job a branch can start runs that branch's own workflow file, so a branch can make it print
# whatever it can read: its repository secrets, and the secrets of any environment it is let into.
# Production's credentials therefore live only in environments named production* whose deployment
# branch rule is main only (on GitHub, README "Reviews and workflows"); what this can check in the
# files is that nothing a branch starts names them or those environments, and that a workflow a
# branch can only dispatch (whose environments' branch rule is the guard) names them only in jobs of
# those environments. A job's `if:` guards nothing here: the branch edits it away.

MAIN_BRANCH = "main"
PRODUCTION_ENVIRONMENT = re.compile(r"prod", re.IGNORECASE)
"""An environment whose name starts so holds production's credentials (production, production-preview)."""
EVERY_SECRET = "<every secret>"
_EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
_SECRET_REFERENCE = re.compile(r"\bsecrets\s*(?:\.\s*([A-Za-z_][\w-]*)|\[\s*'([^']*)'\s*\])", re.IGNORECASE)
_ANY_SECRETS = re.compile(r"\bsecrets\b", re.IGNORECASE)


def stacks() -> set[str]:
    """The project's stacks, from their Pulumi.<stack>.yaml files."""
    return {path.name.split(".")[1] for path in REPO.glob("Pulumi.*.yaml")}


def production_secret(name: str, known_stacks: set[str]) -> bool:
    """A secret that can reach production: one whose name says so, every secret at once, and a
    Pulumi credential that names no other stack (the repository-wide PULUMI_ACCESS_TOKEN that once
    previewed production from pull requests)."""
    upper = name.upper()
    if name == EVERY_SECRET or "PROD" in upper:
        return True
    others = {stack.upper() for stack in known_stacks if not PRODUCTION_ENVIRONMENT.match(stack)}
    return upper.startswith("PULUMI_") and not any(re.search(rf"_{re.escape(stack)}(_|$)", upper) for stack in others)


def secrets_named(value: Any) -> set[str]:
    """Every secret an expression anywhere in `value` reads (EVERY_SECRET for `toJSON(secrets)` and
    the like), and EVERY_SECRET for a reusable workflow's `secrets: inherit`."""
    found: set[str] = set()
    if isinstance(value, Mapping):
        if value.get("secrets") == "inherit":
            found.add(EVERY_SECRET)
        for key, inner in value.items():
            found |= secrets_named(key) | secrets_named(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= secrets_named(inner)
    elif isinstance(value, str):
        for expression in _EXPRESSION.findall(value):
            named = [m.group(1) or m.group(2) for m in _SECRET_REFERENCE.finditer(expression)]
            found.update(named)
            if len(_ANY_SECRETS.findall(expression)) > len(named):
                found.add(EVERY_SECRET)
    return found


def trigger_kinds(document: Mapping[str, Any]) -> dict[str, str]:
    """Each trigger of a workflow, and whose workflow file it runs: "main" (a push to main, a
    schedule), "dispatch" (started by hand from any branch, that branch's file: only an
    environment's branch rule keeps a job from a branch), or "branch" (a pull request, a push to
    another branch or a tag, and anything else)."""
    on = document.get("on")
    if isinstance(on, (str, list)):
        events = {event: None for event in ([on] if isinstance(on, str) else on)}
    else:
        events = dict(on or {})
    kinds = {}
    for event, settings in events.items():
        if event == "push":
            settings = settings or {}
            others = {"tags", "branches-ignore", "tags-ignore"} & set(settings)
            main_only = settings.get("branches") == [MAIN_BRANCH] and not others
            kinds[event] = "main" if main_only else "branch"
        elif event in ("schedule", "repository_dispatch"):
            kinds[event] = "main"
        elif event == "workflow_dispatch":
            kinds[event] = "dispatch"
        else:
            kinds[event] = "branch"
    return kinds


def job_environment(job: Mapping[str, Any]) -> str:
    env = job.get("environment") or ""
    return str(env.get("name", "") if isinstance(env, Mapping) else env)


def production_reach(files: Mapping[str, str], known_stacks: set[str]) -> list[str]:
    """What, in the workflow files `files` (name: text), lets a branch reach a production
    credential; each finding names the file, the job and the way. Empty when nothing does."""
    documents = {name: parsed(text) for name, text in files.items()}
    findings = []

    def jobs_of(name: str, document: Mapping[str, Any], via: str = "") -> Iterator[tuple[str, str, Mapping[str, Any]]]:
        """(where, environment, job) of every job the workflow runs, those of the reusable workflows
        its jobs call from this repository included (as the caller's jobs: they run on its triggers)."""
        for job_id, job in (document.get("jobs") or {}).items():
            where = f"{via}{name}: job {job_id}"
            yield where, job_environment(job), job
            called = str(job.get("uses", ""))
            if called.startswith("./.github/workflows/"):
                callee = called.rsplit("/", 1)[1].split("@")[0]
                if callee in documents:
                    yield from jobs_of(callee, documents[callee], f"{where} calls ")

    for name, document in documents.items():
        kinds = trigger_kinds(document)
        if set(kinds) == {"workflow_call"}:
            continue  # it runs only as the jobs of the workflows that call it, and is judged there
        if "pull_request_target" in kinds:
            findings.append(f"{name}: runs on pull_request_target, which runs with the repository's secrets for a "
                            "pull request whose code it may check out; use pull_request")
        outside = {key: value for key, value in document.items() if key != "jobs"}
        for secret in sorted(s for s in secrets_named(outside) if production_secret(s, known_stacks)):
            findings.append(f"{name}: {secret} is read outside any job (workflow-level env), so every job gets it")
        branch = sorted(event for event, kind in kinds.items() if kind == "branch")
        for where, environment, job in jobs_of(name, document):
            reached = sorted(s for s in secrets_named(job) if production_secret(s, known_stacks))
            if branch:
                if PRODUCTION_ENVIRONMENT.match(environment) or "${{" in environment:
                    findings.append(f"{where}: environment {environment} on {', '.join(branch)}: a branch runs it")
                for secret in reached:
                    findings.append(f"{where}: reads {secret} on {', '.join(branch)}: a branch runs it")
            elif not PRODUCTION_ENVIRONMENT.match(environment):
                for secret in reached:
                    findings.append(f"{where}: reads {secret} without a production environment (whose branch rule "
                                    f"keeps branches out): {environment or 'none'}")
    return findings


def workflow_files(folder: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(folder.glob("*.yml"))}


def test_no_job_a_branch_can_run_reaches_a_production_credential():
    """Nothing a pull request, a push to a branch other than main or a dispatch from any branch can
    run reads a production credential or enters a production environment."""
    assert production_reach(workflow_files(WORKFLOWS), stacks()) == []


def test_the_workflows_before_this_check_gave_production_away():
    """The workflows as they were (tests/fixtures/workflows/before): a pull request previewed
    production with the repository-wide token, and every other job had it too."""
    found = production_reach(workflow_files(REPO / "tests" / "fixtures" / "workflows" / "before"), stacks())
    assert "pr.yml: job preview: reads PULUMI_ACCESS_TOKEN on pull_request: a branch runs it" in found
    assert "promote.yml: PULUMI_ACCESS_TOKEN is read outside any job (workflow-level env), so every job gets it" in found
    assert "main.yml: job up: reads PULUMI_ACCESS_TOKEN without a production environment (whose branch rule keeps " \
           "branches out): staging" in found


GOOD_STEPS = "    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ok\n"
BAD_WORKFLOWS = {
    "a production secret in a pull request's workflow-level env": ("""
on: pull_request
env:
  PULUMI_ACCESS_TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN_PRODUCTION }}
jobs:
  test:
""" + GOOD_STEPS, "read outside any job"),
    "a pull request's job in production-preview": ("""
on: {pull_request: {branches: [main]}}
jobs:
  preview:
    environment: production-preview
""" + GOOD_STEPS, "environment production-preview on pull_request"),
    "a pull request's job in an environment named by an expression": ("""
on: pull_request
jobs:
  preview:
    environment: {name: "${{ github.event.pull_request.title }}"}
""" + GOOD_STEPS, "on pull_request: a branch runs it"),
    "pull_request_target, even with nothing secret": ("""
on: pull_request_target
jobs:
  label:
""" + GOOD_STEPS, "pull_request_target"),
    "a push to any branch, in the production environment": ("""
on: {push: {paths: ["src/**"]}}
jobs:
  up:
    environment: production
    env:
      PULUMI_ACCESS_TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN_PRODUCTION }}
""" + GOOD_STEPS, "reads PULUMI_ACCESS_TOKEN_PRODUCTION on push"),
    "a push of a tag": ("""
on: {push: {branches: [main], tags: ["v*"]}}
jobs:
  up:
    environment: production
""" + GOOD_STEPS, "environment production on push"),
    "a dispatch whose job reads production's passphrase without the environment": ("""
on: workflow_dispatch
jobs:
  preview:
    if: github.ref == 'refs/heads/main'
    runs-on: ubuntu-24.04
    steps:
      - run: pulumi preview --stack production
        env:
          PULUMI_CONFIG_PASSPHRASE: ${{ secrets['PULUMI_CONFIG_PASSPHRASE_PRODUCTION'] }}
""", "without a production environment"),
    "a dispatch with production's token in workflow-level env": ("""
on: workflow_dispatch
env:
  PULUMI_ACCESS_TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN_PRODUCTION }}
jobs:
  up:
    environment: production
""" + GOOD_STEPS, "read outside any job"),
    "every secret at once in a pull request": ("""
on: pull_request
jobs:
  dump:
    runs-on: ubuntu-24.04
    steps:
      - run: echo "$ALL"
        env:
          ALL: ${{ toJSON(secrets) }}
""", "reads <every secret> on pull_request"),
    "a pull request calling a reusable workflow that enters production": ("""
on: pull_request
jobs:
  deploy:
    uses: ./.github/workflows/deploy.yml
    secrets: inherit
""", "calls deploy.yml: job up: environment production on pull_request"),
    "a Pulumi token that names another stack's name inside its own": ("""
on: pull_request
jobs:
  preview:
    env:
      PULUMI_ACCESS_TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN_NOTSTAGING }}
""" + GOOD_STEPS, "reads PULUMI_ACCESS_TOKEN_NOTSTAGING on pull_request"),
    "a Pulumi token that names no stack": ("""
on: pull_request
jobs:
  preview:
    environment: staging-preview
    env:
      PULUMI_ACCESS_TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN }}
""" + GOOD_STEPS, "reads PULUMI_ACCESS_TOKEN on pull_request"),
}
DEPLOY_CALLED = """
on: workflow_call
jobs:
  up:
    environment: production
""" + GOOD_STEPS


@pytest.mark.parametrize("case", sorted(BAD_WORKFLOWS))
def test_a_workflow_that_lets_a_branch_reach_production_fails_the_check(case):
    text, expected = BAD_WORKFLOWS[case]
    found = production_reach({"bad.yml": text, "deploy.yml": DEPLOY_CALLED}, {"staging", "production"})
    assert any(expected in finding for finding in found), found


def test_what_keeps_production_to_main_passes_the_check():
    """Production's credentials in production environments of a dispatch or a push to main; staging's
    (and the hub repositories' read token) anywhere; the reusable workflow judged by its callers."""
    good = {
        "promote.yml": """
on: workflow_dispatch
jobs:
  up:
    environment: {name: production}
    env:
      PULUMI_ACCESS_TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN_PRODUCTION }}
""" + GOOD_STEPS,
        "nightly.yml": """
on: {push: {branches: [main]}, schedule: [{cron: "0 3 * * *"}]}
jobs:
  deploy:
    uses: ./.github/workflows/deploy.yml
""",
        "deploy.yml": DEPLOY_CALLED,
        "pr.yml": """
on: pull_request
jobs:
  preview:
    environment: staging-preview
    env:
      PULUMI_ACCESS_TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN_STAGING }}
      PULUMI_CONFIG_PASSPHRASE: ${{ secrets.PULUMI_CONFIG_PASSPHRASE_STAGING }}
      PULUMI_TOKEN_FOR_PREVIEWS: ${{ secrets.PULUMI_ACCESS_TOKEN_STAGING_PREVIEW }}
      GH_TOKEN: ${{ secrets.HUBS_READ_TOKEN }}
""" + GOOD_STEPS,
    }
    assert production_reach(good, {"staging", "production"}) == []


def readme_credentials() -> dict[str, str]:
    """The README's table of credentials ("Reviews and workflows"): where each secret lives (its
    "lives in" cell), by name."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Reviews and workflows"):]
    section = section[:section.index("\n## ", 1)]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) > 1:
            rows.update({name: cells[1] for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0])})
    return rows


def test_the_readme_says_where_each_credential_lives():
    """Every secret a workflow reads has a row in the README's table naming the environment it
    lives in (or the repository), and production's rows name only production environments."""
    rows = readme_credentials()
    for name, text in workflow_files(WORKFLOWS).items():
        for job_id, job in parsed(text)["jobs"].items():
            environment_name = job_environment(job)
            for secret in secrets_named(job) - {"GITHUB_TOKEN"}:
                assert secret in rows, f"{name}: job {job_id} reads {secret}, which the README's table does not list"
                # A job reads the secrets of its environment and the repository's.
                places = {"repository", f"`{environment_name}`"} if environment_name else {"repository"}
                assert any(place in rows[secret] for place in places), \
                    f"README: {secret} lives in {rows[secret]}, not in {' or '.join(sorted(places))} ({name}: {job_id})"
    for secret, where in rows.items():
        if production_secret(secret, stacks()):
            named = re.findall(r"`([\w-]+)`", where)
            assert named and "repository" not in where and all(PRODUCTION_ENVIRONMENT.match(env) for env in named), \
                f"README: {secret} lives in {where}"
