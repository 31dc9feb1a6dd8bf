"""The local test host cannot pull: its builds can start only FROM the images it makes. Before a
build, each hub Dockerfile's FROM of another image is named (the hub, the file's line, the images
there are), where it once failed inside the build as `lookup ...: no such host`."""

from __future__ import annotations

from pathlib import Path

from components.plan.base_images import missing_base_images

IMAGES = ["node:24-bookworm-slim", "haproxy:2.6", "busybox:1.37"]
HAS = ", ".join(IMAGES)


def dockerfile(tmp_path: Path, hub: str, text: str) -> tuple[str, Path]:
    path = tmp_path / hub / "Dockerfile"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return hub, path


def test_a_from_of_an_image_the_host_lacks_is_named_with_its_line_and_the_images_there_are(tmp_path):
    hub = dockerfile(tmp_path, "tasksmd", "# syntax=docker/dockerfile:1\nFROM node:20-alpine AS build\n"
                                          "RUN npm ci\nFROM node:24-bookworm-slim\nCOPY --from=build /app /app\n")
    assert missing_base_images([hub], IMAGES, tmp_path) == [
        f"tasksmd: tasksmd/Dockerfile:2: `FROM node:20-alpine AS build`: the test host has no node:20-alpine and "
        f"cannot pull it, so this build will fail; start FROM an image it has: {HAS}"]


def test_the_images_it_has_pass_however_they_are_spelled(tmp_path):
    hubs = [dockerfile(tmp_path, "a", "FROM node:24-bookworm-slim\n"),
            dockerfile(tmp_path, "b", "FROM docker.io/library/node:24-bookworm-slim AS deps\nFROM deps\n"),
            dockerfile(tmp_path, "c", "ARG NODE=node:24-bookworm-slim\nFROM $NODE\nFROM scratch\n"),
            dockerfile(tmp_path, "d", "FROM busybox:1.37\n")]
    assert missing_base_images(hubs, IMAGES, tmp_path) == []


def test_a_pinned_digest_or_an_arg_default_the_host_lacks_is_named(tmp_path):
    hubs = [dockerfile(tmp_path, "a", "FROM node:24-bookworm-slim@sha256:" + "0" * 64 + "\n"),
            dockerfile(tmp_path, "b", "ARG NODE=node:22\nFROM ${NODE}\n"),
            dockerfile(tmp_path, "c", "FROM node\n")]
    found = missing_base_images(hubs, IMAGES, tmp_path)
    assert [line.split(": the test host")[0] for line in found] == [
        "a: a/Dockerfile:1: `FROM node:24-bookworm-slim@sha256:" + "0" * 64 + "`",
        "b: b/Dockerfile:2: `FROM ${NODE}`", "c: c/Dockerfile:1: `FROM node`"]
    assert "has no node:22 and cannot pull it" in found[1]


def test_a_dockerfile_outside_the_project_is_named_by_its_whole_path_and_a_missing_one_is_left_to_the_checks(
        tmp_path):
    hub = dockerfile(tmp_path, "outside", "FROM node:20-alpine\n")
    found = missing_base_images([hub, ("gone", tmp_path / "gone" / "Dockerfile")], IMAGES, tmp_path / "project")
    assert [line.split(": `")[0] for line in found] == [f"outside: {tmp_path / 'outside' / 'Dockerfile'}:1"]
