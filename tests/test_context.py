"""Build contexts: .dockerignore semantics, the content hash, and the upload archive."""

import io
import tarfile

from components.context import archive, content_hash, context_files, ignored, parse_dockerignore


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
