#!/usr/bin/env bash
# Installs what workhub runs on: the Python virtualenv with the pinned requirements, and the
# Pulumi toolchain (scripts/toolchain.sh). Idempotent; a warm run takes a fraction of a second.
# The Docker engine and sshd are the test host's business: scripts/testhost.sh installs and
# starts them when something needs them. A warm run prints nothing; installers' output goes to
# .venv/install.log (and the toolchain's build log), one line per step on the terminal.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'setup: %s\n' "$*" >&2; }
log() { say "$@"; }
die() { say "error: $*"; exit 1; }
# shellcheck source=SCRIPTDIR/lib/logged.sh
source scripts/lib/logged.sh

if [ ! -x .venv/bin/python ]; then
  say "creating the virtualenv .venv"
  python3 -m venv .venv
fi
wanted=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$wanted" ]; then
  say "installing the pinned Python requirements (log: .venv/install.log)"
  logged "pip install -r requirements.txt" .venv/install.log \
    .venv/bin/python -m pip install --disable-pip-version-check -r requirements.txt
  printf '%s\n' "$wanted" >.venv/.requirements.sha256
fi
# The project installed editable (pyproject.toml), so `.venv/bin/python -m workhub` works from any
# directory; again when pyproject.toml, the pins or the checkout's place change.
wanted=$( (cat pyproject.toml requirements.txt; printf '%s\n' "$PWD") | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.project.sha256 2>/dev/null)" != "$wanted" ]; then
  say "installing the project into .venv (log: .venv/install.log)"
  rm -f .venv/lib/python3*/site-packages/workhub-project.pth  # how it was put on the path before
  logged "pip install -e ." .venv/install.log \
    .venv/bin/python -m pip install --disable-pip-version-check --no-deps --no-build-isolation -e .
  printf '%s\n' "$wanted" >.venv/.project.sha256
fi
# --print-toolchain: the toolchain's bin directory on stdout (scripts/workhub passes it on, so
# python -m workhub need not check the toolchain a second time).
bin_dir=$(scripts/toolchain.sh)
[ "${1:-}" != --print-toolchain ] || printf '%s\n' "$bin_dir"
