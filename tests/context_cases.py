"""Build-context trees for the context tests: tricky .dockerignore files with links and
directories, a builder for generated trees, and the two views compared (what a directory holds,
and workhub's context of a tree)."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import strategies as st

from components.plan.context import context_files

DOCKERFILE = "FROM scratch\nCOPY . /\n"

# name: (.dockerignore, files, links (path -> target text), empty directories)
CASES = {
    "links": (
        "*.pem\n",
        {"src/a.js": "a"},
        {"key": "/etc/ssh/ssh_host_ed25519_key", "up": "../outside.txt", "gone": "nowhere",
         "dirlink": "/etc", "src/b.js": "a.js", "cert.pem": "/etc/ssl/certs/x.pem"},
        [],
    ),
    "double-star": (
        "**/*.log\n!keep/**/*.log\ndocs/**\na**b\n**/tmp\n",
        {"x.log": "", "deep/er/y.log": "", "keep/one/z.log": "", "keep/z.log": "", "docs/a/b.md": "",
         "ab": "", "axb": "", "a/q/b": "", "src/tmp/t": "", "src/tmpx": ""},
        {}, [],
    ),
    "re-includes": (
        "*\n!src\nsrc/**/test\n!src/lib/test/keep.txt\n!Dockerfile\n",
        {"top.txt": "", "src/a.js": "", "src/lib/test/x.js": "", "src/lib/test/keep.txt": "",
         "src/test/y.js": "", "other/z": ""},
        {}, [],
    ),
    "slashes": (
        "/dist/\nbuild/\n/node_modules\nsub/dist\n//twice\n",
        {"dist/a.js": "", "src/dist/b.js": "", "build/c": "", "src/build/d": "", "node_modules/e/i.js": "",
         "app/node_modules/f/i.js": "", "sub/dist/g": "", "twice/h": ""},
        {}, [],
    ),
    "dot-dot": (
        "../secret.txt\nsub/../top.txt\n./here.txt\nsub/./there.txt\n",
        {"secret.txt": "", "top.txt": "", "here.txt": "", "sub/there.txt": "", "sub/top.txt": ""},
        {}, [],
    ),
    "directories": (
        "cache/*\nlogs\n!logs/keep/a.txt\nempty-ignored\n",
        {"cache/x": "", "logs/b.txt": "", "logs/keep/a.txt": "", "logs/keep/c.txt": "", "src/a.js": ""},
        {}, ["uploads", "empty-ignored", "nested/deeper"],
    ),
    "comments-and-escapes": (
        "\ufefflate\n# a comment\n  # spaced\n\\*.md\n!  README.md\n*.md\n!  CHANGES.md\n**.log\n",
        {"# spaced": "", "*.md": "", "README.md": "", "CHANGES.md": "", "NOTES.md": "", "late": "",
         "deep/app.log": "", "deep/.log": ""},
        {}, [],
    ),
    "exceptions-below-a-parent": (
        "**/b\n!x/y/b/keep\nbuild\n!build/**/*.map\n",
        {"x/y/b/c": "", "x/y/b/keep": "", "b/d": "", "build/js/app.js": "", "build/js/app.js.map": ""},
        {}, [],
    ),
    "build-files-ignored": (
        "Dockerfile\n.dockerignore\n",
        {"server.js": ""},
        {}, [],
    ),
}


def make_tree(root: Path, case: str) -> Path:
    ignore, files, links, dirs = CASES[case]
    (root / "outside.txt").write_text("outside the context")
    tree = root / "ctx"
    tree.mkdir()
    (tree / "Dockerfile").write_text(DOCKERFILE)
    (tree / ".dockerignore").write_text(ignore)
    for path, text in files.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text(text)
    for path, target in links.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).symlink_to(target)
    for path in dirs:
        (tree / path).mkdir(parents=True)
    return tree


def entries(root: Path) -> set[str]:
    """What a directory holds: `dir/`, `file`, `link -> target`."""
    found = set()
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            full = Path(directory) / name
            path = full.relative_to(root).as_posix()
            if full.is_symlink():
                found.add(f"{path} -> {os.readlink(full)}")
            else:
                found.add(path + "/" if full.is_dir() else path)
    return found


def workhub_view(tree: Path) -> set[str]:
    """The entries of workhub's context of `tree`, as `entries` writes them, with their directories."""
    found = set()
    for path in context_files(tree):
        parts = path.rstrip("/").split("/")
        found.update("/".join(parts[:i]) + "/" for i in range(1, len(parts) + path.endswith("/")))
        if (tree / path).is_symlink():
            found.add(f"{path} -> {os.readlink(tree / path)}")
        elif not path.endswith("/"):
            found.add(path)
    return found


STEPS = st.sampled_from(["a", "b", "src", "x.log", "keep", ".env", "a b"])
TARGETS = st.sampled_from(["/etc/hostname", "../../secret", "../secret", "a", "missing", "/nowhere", ".."])
TREES = st.dictionaries(st.lists(STEPS, min_size=1, max_size=4).map("/".join),
                        st.one_of(st.just("file"), st.just("dir"), TARGETS), max_size=10)
LINES = st.one_of(
    st.sampled_from(["a", "b/", "/src", "**/*.log", "**/b", "*", "!keep", "!src/**", "a/../b", "../a", "src/*",
                     "!**/a", "# c", " # c", "x.log", "**", "!a/**/keep", "*/", "a**", "**a", "**.log", "!*.log",
                     "src/**/b", "?", "[ab]", "[!a]", "\\*", ".", "/", "a/*/keep", "!a/b", "  a  ", "!.env",
                     "*.env", ".*", "/!a", "!/a"]),
    st.lists(st.sampled_from(["a", "b", "*", "**", "?", "/", "!", ".", "x", "[a-b]", "\\*", "\\b"]),
             min_size=1, max_size=5).map("".join),
)
IGNORES = st.lists(LINES, max_size=6)


def build_tree(root: Path, tree: dict[str, str], ignore: list[str]) -> Path:
    """`root/ctx` with the generated entries (a path -> "file", "dir" or a link's target) and
    .dockerignore lines; an entry under one that is not a directory is left out."""
    (root / "secret").write_text("OUTSIDE SECRET")
    ctx = root / "ctx"
    ctx.mkdir()
    (ctx / ".dockerignore").write_text("\n".join(ignore) + "\n")
    for path, kind in sorted(tree.items()):
        full = ctx / path
        if any(p.is_symlink() or p.is_file() for p in full.parents if p.is_relative_to(ctx) and p != ctx):
            continue
        full.parent.mkdir(parents=True, exist_ok=True)
        if full.exists() or full.is_symlink():
            continue
        if kind == "file":
            full.write_text(path)
        elif kind == "dir":
            full.mkdir()
        else:
            full.symlink_to(kind)
    return ctx
