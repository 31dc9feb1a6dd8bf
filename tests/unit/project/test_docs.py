"""The docs cannot drift: docs/configuration.md is exactly what the models render, every setting has a
description to show, and every relative link of README.md, docs/*.md and tests/README.md reaches an
existing file (and heading)."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import pytest

from tools import config_reference

REPO = Path(__file__).resolve().parents[3]
PAGES = [REPO / "README.md", REPO / "tests" / "README.md", *sorted((REPO / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")


def test_configuration_page_is_what_the_models_render():
    """docs/configuration.md and the pydantic models say the same; the failure names the command that fixes it."""
    page = config_reference.PAGE.read_text() if config_reference.PAGE.exists() else ""
    assert page == config_reference.render(), (
        f"docs/configuration.md differs from the models; run: {config_reference.COMMAND}")


def test_every_setting_has_a_description():
    """Each key the reference lists carries a meaning (an empty cell would be a key nobody explains)."""
    blank = [line.split("|")[1].strip() for line in config_reference.render().splitlines()
             if line.startswith("| `") and not line.rstrip(" |").split("|")[-1].strip()]
    assert not blank, f"settings without a description (add one to their Field): {blank}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as '-'."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text())
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    text = _CODE.sub("", _COMMENT.sub("", _FENCE.sub("", path.read_text())))
    return [target for target in _LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def broken_links(page: Path) -> list[str]:
    """The relative links of `page` that reach no file, or no heading of the file they name."""
    broken = []
    for target in links(page):
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / urllib.parse.unquote(file_part)).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with the anchor #{anchor} in {dest.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_relative_links_reach_their_file_and_heading(page):
    """Every relative link points to a file of the repository, and to a heading there when it names one."""
    broken = broken_links(page)
    assert not broken, f"{page.relative_to(REPO)} has broken links:\n  " + "\n  ".join(broken)


def test_the_link_check_sees_a_broken_link(tmp_path):
    """The check itself: a link to a missing file and one to a missing heading are found, good ones and
    links inside code are not."""
    (tmp_path / "a.md").write_text("# Top\n\n## Two words: `here`\n\n[ok](#two-words-here) [ok](b.md#b) "
                                   "[web](https://example.org/x)\n[bad](missing.md) [bad](b.md#nope)\n"
                                   "```\n[in code](nowhere.md)\n```\n`[inline](nowhere.md)`\n")
    (tmp_path / "b.md").write_text("# B\n")
    assert broken_links(tmp_path / "a.md") == ["missing.md: no such file",
                                               "b.md#nope: no heading with the anchor #nope in b.md"]


def test_every_test_module_is_in_the_index():
    """tests/README.md names every test module, so a newcomer finds the test of a behaviour there."""
    index = (REPO / "tests" / "README.md").read_text()
    missing = sorted(str(path.relative_to(REPO / "tests")) for path in (REPO / "tests").rglob("test_*.py")
               if str(path.relative_to(REPO / "tests")) not in index)
    assert not missing, f"tests/README.md does not name: {', '.join(missing)} (add a line saying what each proves)"
