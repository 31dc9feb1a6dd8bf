"""The build plan and the checks that need the project's files: each bad setup gives one clear
error naming its key and the fix, and yields no plan (so nothing is registered or run)."""

import os
import shutil
from pathlib import Path

import pytest
import yaml

from components.config.models import StackConfig
from components.config.parse import parse_stack_config
from components.plan.hubs import dockerfile_warnings, plan_stack, private_file_warnings
from tests.hub_context import CANONICAL as CANONICAL_PATH, write_hub_context

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFloHIpcBboBa5fvOHzc3/flmdn24bmBRbRH+dbManFE"
CANONICAL = CANONICAL_PATH.read_text()
HUBS = [{"name": "wbhubmanager", "context": "WBHubManager", "port": 4090},
        {"name": "wbsaleshub", "context": "WBSalesHub", "port": 4091}]


def raw(**extra) -> dict:
    values = {
        "host": {"address": "build.example.test", "user": "deploy", "hostKey": HOST_KEY},
        "sshPrivateKey": "k",
        "sourceRoot": "../src",
        "hubs": HUBS,
        "hostPorts": {"wbhubmanager": 14090, "wbsaleshub": 14091},
    }
    values.update(extra)
    return values


def config(**extra) -> StackConfig:
    return parse_stack_config(raw(**extra), stack="staging", secret_keys={"sshPrivateKey"})


@pytest.fixture
def project(tmp_path) -> Path:
    for hub in HUBS:
        write_hub_context(tmp_path / "src" / hub["context"], "//\n")
    (tmp_path / "project").mkdir()
    return tmp_path / "project"


def problems(config: StackConfig, project: Path, stack: str = "staging") -> list[str]:
    plans, found = plan_stack(config, stack, project)
    assert plans == [], "a stack with problems gets no plan"
    return [str(p) for p in found]


def stack_file(project: Path, stack: str, values: dict) -> None:
    (project / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": values}))


def test_a_good_project_plans_every_hub_in_order(project):
    plans, found = plan_stack(config(), "staging", project)
    assert found == []
    assert [p.hub.name for p in plans] == ["wbhubmanager", "wbsaleshub"]
    assert plans[1].image.startswith("wbsaleshub:staging-")
    assert plans[1].host_port == 14091


def test_container_port_drift_in_a_stack_file_is_refused(project):
    """A stack file that redefines the hubs (say, PORT 5090 in production) is refused for every stack."""
    drifted = [dict(HUBS[0], port=5090), HUBS[1]]
    stack_file(project, "production", {"workhub:hubs": drifted})
    (found,) = problems(config(), project)
    assert found == (
        "workhub:hubs: is set in Pulumi.production.yaml, but it is declared once for every stack in "
        "Pulumi.yaml (so each hub keeps one container PORT everywhere)\n"
        "    fix: move the change into Pulumi.yaml and remove it from the stack: "
        "scripts/workhub pulumi config rm --stack production workhub:hubs"
    )


def test_host_port_taken_by_the_other_stack_on_the_same_host(project):
    """Two stacks on one host cannot publish a hub on the same host port."""
    stack_file(project, "production", {"workhub:host": {"address": "build.example.test"},
                                       "workhub:hostPorts": {"wbhubmanager": 4090, "wbsaleshub": 14091}})
    (found,) = problems(config(), project)
    assert found.startswith(
        "workhub:hostPorts.wbsaleshub: port 14091 is also stack production's host port for wbsaleshub, on the same host")


def test_other_stack_on_another_host_may_reuse_ports(project):
    stack_file(project, "production", {"workhub:host": {"address": "other.example.test"},
                                       "workhub:hostPorts": {"wbhubmanager": 14090}})
    assert plan_stack(config(), "staging", project)[1] == []


def test_missing_dockerfile(project):
    (project.parent / "src" / "WBSalesHub" / "Dockerfile").unlink()
    (found,) = problems(config(), project)
    assert found.startswith("workhub:hubs[1].dockerfile: ")
    assert "WBSalesHub/Dockerfile does not exist (hub wbsaleshub)" in found


def test_missing_context(project):
    found, second = problems(config(sourceRoot="../elsewhere"), project)
    assert second.startswith("workhub:hubs[1].context: ")
    assert found.startswith("workhub:hubs[0].context: ")
    assert "is not a directory (hub wbhubmanager, workhub:sourceRoot '../elsewhere')" in found
    assert "scripts/workhub pulumi config set --stack staging workhub:sourceRoot <dir>" in found


def test_a_context_that_a_symlinked_directory_takes_outside_the_source_root_is_refused(project, tmp_path):
    """`..` is refused with the config; a link on the way is only seen on disk, at preview."""
    elsewhere = tmp_path / "home" / "private"
    elsewhere.mkdir(parents=True)
    (elsewhere / "Dockerfile").write_text(CANONICAL)
    sales = project.parent / "src" / "WBSalesHub"
    shutil.rmtree(sales)
    sales.symlink_to(elsewhere, target_is_directory=True)
    (found,) = problems(config(), project)
    assert found == (
        f"workhub:hubs[1].context: WBSalesHub resolves to {elsewhere}, outside workhub:sourceRoot "
        f"({(project.parent / 'src').resolve()}) through a symbolic link (hub wbsaleshub); workhub uploads "
        "nothing from outside sourceRoot\n"
        f"    fix: put the hub's source itself under {(project.parent / 'src').resolve()} (not a link to it), "
        "or set workhub:sourceRoot to a directory that holds it: "
        "scripts/workhub pulumi config set --stack staging workhub:sourceRoot <dir>"
    )


def test_a_link_inside_the_source_root_is_accepted(project):
    src = project.parent / "src"
    (src / "WBSalesHub").rename(src / "sales-checkout")
    (src / "WBSalesHub").symlink_to("sales-checkout", target_is_directory=True)
    plans, found = plan_stack(config(), "staging", project)
    assert found == [] and plans[1].context == (src / "sales-checkout").resolve()


def test_a_dockerignore_docker_refuses_stops_the_preview(project):
    ignore = project.parent / "src" / "WBSalesHub" / ".dockerignore"
    ignore.write_text("node_modules\n!\n")
    (found,) = problems(config(), project)
    assert found.startswith("workhub:hubs[1].context: ")
    assert ".dockerignore:2: a `!` with no pattern after it (Docker refuses it) (hub wbsaleshub)" in found
    assert f"fix: correct line 2 of {ignore.resolve()}" in found


def test_non_conforming_dockerfile_names_file_line_and_fix(project):
    """A Dockerfile without the cache mount stops the stack with file:line and the fix."""
    path = project.parent / "src" / "WBSalesHub" / "Dockerfile"
    path.write_text(CANONICAL.replace("RUN --mount=type=cache,target=/root/.npm,sharing=locked npm ci", "RUN npm ci"))
    (found,) = problems(config(), project)
    line = CANONICAL.splitlines().index("RUN --mount=type=cache,target=/root/.npm,sharing=locked npm ci") + 1
    assert found.startswith(f"workhub:hubs[1].dockerfile: {path.resolve()}:{line}: `npm ci` runs without the npm cache mount")
    assert "fix: start the instruction with `RUN --mount=type=cache,target=/root/.npm,sharing=locked`" in found
    assert f"python -m workhub dockerfile conform {path.resolve()}" in found


def test_dockerfile_warnings_do_not_stop_the_stack(project):
    """A FROM other than workhub:baseImage and an apt-get install without a cache mount are preview
    warnings with the hub, file:line and fix; the stack still plans."""
    path = project.parent / "src" / "WBSalesHub" / "Dockerfile"
    path.write_text(CANONICAL.replace("FROM node:24-bookworm-slim\n", "FROM node:24-alpine\nRUN apk add git\n"))
    plans, found = plan_stack(config(), "staging", project)
    assert found == [] and len(plans) == 2
    warnings = dockerfile_warnings(config(), project)
    assert [w.split(": ", 2)[:2] for w in warnings] == [["wbsaleshub", f"{path.resolve()}:2"],
                                                        ["wbsaleshub", f"{path.resolve()}:3"]]
    assert "`FROM node:24-alpine` is not workhub:baseImage (node:24-bookworm-slim)" in warnings[0]
    assert "fix: run it as `RUN --mount=type=cache,target=/etc/apk/cache,sharing=locked apk add ...`" in warnings[1]


def registry_hubs(mode: str = "registry") -> list[dict]:
    return [{**hub, "buildMode": mode} for hub in HUBS]


def test_a_registry_mode_context_others_cannot_read_is_a_warning_naming_the_files_and_the_fix(project):
    """A registry-mode build keeps the context's modes (a host build's upload does not): files or
    folders others cannot read are named, with the chmod that fixes them; the stack still plans."""
    context = (project.parent / "src" / "WBSalesHub").resolve()
    os.chmod(context / "package.json", 0o600)
    os.chmod(context / "frontend", 0o700)
    registry = {"server": "registry.example.test"}
    assert private_file_warnings(config(hubs=registry_hubs(), registry=registry), project) == [
        f"wbsaleshub: 2 entries of {context} are not readable by others (frontend/, package.json); hubs[1] builds "
        "in registry mode, which keeps the context's modes, and the image's files belong to root while the hub "
        "runs as its own uid, so it cannot read them (\"permission denied\" at its start); "
        f"fix: chmod -R a+rX {context}"]
    plans, found = plan_stack(config(hubs=registry_hubs(), registry=registry), "staging", project)
    assert found == [] and len(plans) == 2
    assert private_file_warnings(config(), project) == [], "a host build uploads every file 0644 or 0755"
    os.chmod(context / "frontend", 0o755)
    os.chmod(context / "package.json", 0o644)
    assert private_file_warnings(config(hubs=registry_hubs(), registry=registry), project) == []


def test_plan_checks_manifests_in_the_hubs_context(project):
    """The check sees the hub's context: an install whose folder has no package.json there stops the stack."""
    (project.parent / "src" / "WBSalesHub" / "frontend" / "package.json").unlink()
    (found,) = problems(config(), project)
    assert "`npm --prefix frontend ci` installs in /app/frontend, but the build context has no " \
        "frontend/package.json (hub wbsaleshub)" in found


def test_plan_changes_only_with_content(project):
    """The build id follows the hub's files and settings; another hub's change leaves it alone."""
    before = {p.hub.name: p.image for p in plan_stack(config(), "staging", project)[0]}
    (project.parent / "src" / "WBSalesHub" / "server.js").write_text("// changed\n")
    after = {p.hub.name: p.image for p in plan_stack(config(), "staging", project)[0]}
    assert after["wbhubmanager"] == before["wbhubmanager"]
    assert after["wbsaleshub"] != before["wbsaleshub"]
    heavier = {p.hub.name: p.image for p in plan_stack(config(build={"nodeHeapMb": 2048}), "staging", project)[0]}
    assert heavier["wbhubmanager"] != after["wbhubmanager"], "build settings are part of the build id"
