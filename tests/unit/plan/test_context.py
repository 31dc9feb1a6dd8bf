"""Build contexts: .dockerignore semantics, the content hash, and the upload archive."""

import gzip
import io
import os
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings

from components.plan.context import DockerignoreError, archive, content_hash, context_files, ignored, parse_dockerignore
from tests.context_cases import IGNORES, TREES, build_tree, entries, workhub_view


def make(tmp_path, files: dict[str, str]):
    for path, text in files.items():
        full = tmp_path / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(text)
    return tmp_path


def test_dockerignore_patterns_follow_docker():
    """`*` stays in one step, `**` crosses steps, a matching parent excludes its files, `!` re-includes."""
    rules = parse_dockerignore("node_modules\nfrontend/node_modules\n**/*.log\n*.md\n!README.md\n/dist\n# comment\n")
    assert ignored("node_modules/express/index.js", rules)
    assert ignored("frontend/node_modules/react/index.js", rules)
    assert not ignored("frontend/src/node_modules.js", rules)
    assert ignored("logs/deep/x.log", rules) and ignored("x.log", rules)
    assert ignored("CHANGES.md", rules) and not ignored("README.md", rules)
    assert not ignored("docs/guide.md", rules), "`*.md` matches in the top directory only"
    assert ignored("dist/app.js", rules)


def test_context_files_honour_dockerignore(tmp_path):
    root = make(tmp_path, {
        "Dockerfile": "FROM x\n", ".dockerignore": "node_modules\nfrontend/dist\n",
        "server.js": "", "node_modules/a/index.js": "", "frontend/dist/index.html": "", "frontend/src/App.jsx": "",
    })
    assert context_files(root) == [".dockerignore", "Dockerfile", "frontend/src/App.jsx", "server.js"]


def test_hash_changes_with_content_only(tmp_path):
    """Same files, same hash; one changed byte or an ignored file's change behaves as Docker would."""
    root = make(tmp_path, {"Dockerfile": "FROM x\n", ".dockerignore": "tmp\n", "a.js": "1", "tmp/x": "1"})
    first = content_hash(root, context_files(root))
    (root / "tmp" / "x").write_text("2")
    assert content_hash(root, context_files(root)) == first
    (root / "a.js").write_text("2")
    assert content_hash(root, context_files(root)) != first


def test_archive_is_reproducible_and_complete(tmp_path):
    root = make(tmp_path, {"Dockerfile": "FROM x\n", "src/a.js": "a"})
    files = context_files(root)
    assert archive(root, files) == archive(root, files)
    with tarfile.open(fileobj=io.BytesIO(archive(root, files))) as tar:
        assert sorted(tar.getnames()) == ["Dockerfile", "src/a.js"]
        assert tar.extractfile("src/a.js").read() == b"a"


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {info.name: info for info in tar.getmembers()}


def test_a_link_to_a_file_outside_the_context_travels_as_a_link_never_its_content(tmp_path):
    """As Docker sends a context: the link and its target text, never what it points to."""
    (tmp_path / "home").mkdir()
    secret = tmp_path / "home" / "id_ed25519"
    secret.write_text("the contents of a file outside the context")
    root = make(tmp_path / "ctx", {"Dockerfile": "FROM x\n"})
    (root / "key").symlink_to(secret)
    (root / "up").symlink_to("../home/id_ed25519")
    files = context_files(root)
    assert files == ["Dockerfile", "key", "up"]
    data = archive(root, files)
    assert b"the contents of a file outside the context" not in gzip.decompress(data)
    found = members(data)
    assert found["key"].issym() and found["key"].linkname == str(secret)
    assert found["up"].issym() and found["up"].linkname == "../home/id_ed25519"


def test_dangling_links_and_links_to_directories_are_sent_as_links_and_not_entered(tmp_path):
    outside = make(tmp_path / "outside", {"private/notes.txt": "PRIVATE NOTES"})
    root = make(tmp_path / "ctx", {"Dockerfile": "FROM x\n", "src/a.js": "a"})
    (root / "gone").symlink_to("does-not-exist")
    (root / "elsewhere").symlink_to(outside / "private", target_is_directory=True)
    (root / "src" / "here").symlink_to("..", target_is_directory=True)
    files = context_files(root)
    assert files == ["Dockerfile", "elsewhere", "gone", "src/a.js", "src/here"]
    found = members(archive(root, files))
    assert {name for name, info in found.items() if info.issym()} == {"elsewhere", "gone", "src/here"}
    assert b"PRIVATE NOTES" not in gzip.decompress(archive(root, files))


def test_dockerignore_applies_to_links_as_to_files(tmp_path):
    root = make(tmp_path, {"Dockerfile": "FROM x\n", ".dockerignore": "*.pem\n"})
    (root / "server.pem").symlink_to("/etc/ssl/private/server.pem")
    assert context_files(root) == [".dockerignore", "Dockerfile"]


def test_hash_follows_a_links_target_text_not_what_it_points_to(tmp_path):
    (tmp_path / "one").write_text("1")
    (tmp_path / "two").write_text("2")
    root = make(tmp_path / "ctx", {"Dockerfile": "FROM x\n"})
    (root / "config").symlink_to("../one")
    first = content_hash(root, context_files(root))
    (tmp_path / "one").write_text("changed")
    assert content_hash(root, context_files(root)) == first, "Docker does not send the target's content"
    (root / "config").unlink()
    (root / "config").symlink_to("../two")
    assert content_hash(root, context_files(root)) != first
    (root / "config").unlink()
    (root / "config").write_text("../two")
    assert content_hash(root, context_files(root)) != first, "a file with the target's text is not the link"


def test_the_hosts_tar_makes_the_links_again(tmp_path):
    """The upload is unpacked with `tar -xzf - -C <dir>` on the host (components/ssh.py)."""
    root = make(tmp_path / "ctx", {"Dockerfile": "FROM x\n", "lib/a.js": "a"})
    (root / "abs").symlink_to("/etc/hostname")
    (root / "lib" / "b.js").symlink_to("a.js")
    (root / "gone").symlink_to("../nowhere")
    (root / "empty").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "-xzf", "-", "-C", str(out)], input=archive(root, context_files(root)), check=True)
    assert os.readlink(out / "abs") == "/etc/hostname"
    assert os.readlink(out / "lib" / "b.js") == "a.js" and (out / "lib" / "b.js").read_text() == "a"
    assert os.readlink(out / "gone") == "../nowhere"
    assert (out / "empty").is_dir() and not any((out / "empty").iterdir())


def test_directories_docker_sends_without_content_are_entries(tmp_path):
    """An empty directory, and one whose content is all ignored, are in the context (as Docker
    sends them); a directory with files is implied by them, so existing hashes stay."""
    root = make(tmp_path, {"Dockerfile": "FROM x\n", ".dockerignore": "cache/*\nlogs\n",
                           "cache/x": "", "logs/a.log": "", "src/a.js": ""})
    (root / "uploads").mkdir()
    assert context_files(root) == [".dockerignore", "Dockerfile", "cache/", "src/a.js", "uploads/"]
    before = content_hash(root, context_files(root))
    (root / "uploads").rmdir()
    assert content_hash(root, context_files(root)) != before


def test_hash_of_plain_files_is_the_one_workhub_had_before_links():
    """Upgrading workhub rebuilds nothing whose sources did not change."""
    root = Path(__file__).resolve().parents[2] / "fixtures" / "context-hash"
    assert content_hash(root, context_files(root)) == (
        "3f25f33ae4a4551554a254d283351cb46991b5acc6ab8e835020997c1da5f2e0")


@pytest.mark.parametrize("text, path, excluded", [
    ("  # spaced\n", "# spaced", True),
    ("a**b\n", "ab", True),
    ("a**b\n", "a/x/b", True),
    ("a**b\n", "axb", False),
    ("docs/**\n", "docs/a/b.md", True),
    ("docs/**\n", "docs", False),
    ("**\n!keep/**\n", "keep/a", False),
    ("**\n!keep/**\n", "other/a", True),
    ("../secrets\n", "secrets", False),
    ("sub/../secrets\n", "secrets", True),
    ("/dist/\n", "dist/app.js", True),
    ("dist/\n", "src/dist/app.js", False),
    ("\\*.md\n", "*.md", True),
    ("\\*.md\n", "a.md", False),
    ("*.md\n!\tREADME.md\n", "README.md", False),
    ("\ufeffdist\n", "dist", True),
    ("f[a-c]o\n", "fbo", True),
    ("a.b\n", "axb", False),
])
def test_dockerignore_corner_cases_read_as_buildkit_reads_them(text, path, excluded):
    assert ignored(path, parse_dockerignore(text)) is excluded


@pytest.mark.parametrize("text, said", [
    ("node_modules\n!\n", ".dockerignore:2: a `!` with no pattern"),
    ("ok\n[unclosed\n", ".dockerignore:2: '[unclosed' is not a valid pattern"),
])
def test_dockerignore_lines_docker_refuses_are_refused(text, said):
    with pytest.raises(DockerignoreError, match=re.escape(said)):
        parse_dockerignore(text)


@settings(max_examples=60, deadline=None)
@given(tree=TREES, ignore=IGNORES)
def test_the_unpacked_archive_is_the_context_and_nothing_from_outside_it(tree, ignore):
    """Any tree of files, directories and links (out of the context, dangling, looping), any
    .dockerignore: `tar -x` of the archive gives exactly the context's entries, links as links, and
    the bytes of the file outside are in no archive."""
    with tempfile.TemporaryDirectory() as scratch:
        root = build_tree(Path(scratch), tree, ignore)
        try:
            data = archive(root, context_files(root))
        except DockerignoreError:
            return
        assert b"OUTSIDE SECRET" not in gzip.decompress(data)
        out = Path(scratch) / "out"
        out.mkdir()
        subprocess.run(["tar", "-xzf", "-", "-C", str(out)], input=data, check=True)
        assert entries(out) == workhub_view(root)
