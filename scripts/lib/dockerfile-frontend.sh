# shellcheck shell=bash
# Sourced by scripts/testhost.sh (uses its log, die, logged, DOCKER and STATE).

# The hub Dockerfiles start with `# syntax=docker/dockerfile:1`, which makes BuildKit load that
# frontend image. Production hosts pull it; here no image can be pulled, so build BuildKit's own
# Dockerfile frontend from the Go module proxy and import it under that name. dockerd's BuildKit
# prefers a local image when it resolves a frontend, so the Dockerfiles stay as production has them.
FRONTEND_IMAGE=docker/dockerfile:1
FRONTEND_MODULE=github.com/moby/buildkit
FRONTEND_VERSION=v0.12.5

build_frontend_in() {
  cd "$1" || return 1
  [[ -f go.mod ]] || go mod init workhub.local/dockerfile-frontend
  GOFLAGS=-mod=mod go get "$FRONTEND_MODULE@$FRONTEND_VERSION"
  CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -o "$2" "$FRONTEND_MODULE/frontend/dockerfile/cmd/dockerfile-frontend"
}

build_frontend_binary() {
  local out="$1" work
  work="$(dirname "$out")/build"
  mkdir -p "$work"
  command -v go >/dev/null || die "Go is needed to build the Dockerfile frontend"
  log "building BuildKit's Dockerfile frontend $FRONTEND_VERSION from the Go module proxy (log: $work/build.log)"
  logged "building the Dockerfile frontend" "$work/build.log" build_frontend_in "$work" "$out.new"
  mv "$out.new" "$out"
}

ensure_dockerfile_frontend() {
  "$DOCKER" image inspect "$FRONTEND_IMAGE" >/dev/null 2>&1 && return 0
  local cache
  cache="${WORKHUB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/workhub}/dockerfile-frontend-$FRONTEND_VERSION"
  with_cache_lock "$cache.lock" "is making BuildKit's Dockerfile frontend $FRONTEND_VERSION" import_dockerfile_frontend "$cache"
}

# import_dockerfile_frontend CACHE: under the cache's lock, $FRONTEND_IMAGE from the frontend binary
# in CACHE (built first when it is not there); nothing when another setup imported it meanwhile.
import_dockerfile_frontend() {
  local bin="$1/dockerfile-frontend" root
  "$DOCKER" image inspect "$FRONTEND_IMAGE" >/dev/null 2>&1 && return 0
  [[ -x "$bin" ]] || build_frontend_binary "$bin"
  root="$(mktemp -d)"
  install -D -m 0755 "$bin" "$root/bin/dockerfile-frontend"
  tar -C "$root" -c . | "$DOCKER" import \
    --change 'LABEL moby.buildkit.frontend.network.none="true"' \
    --change 'LABEL moby.buildkit.frontend.caps="moby.buildkit.frontend.inputs,moby.buildkit.frontend.subrequests,moby.buildkit.frontend.contexts"' \
    --change 'ENTRYPOINT ["/bin/dockerfile-frontend"]' - "$FRONTEND_IMAGE" >/dev/null
  rm -rf "$root"
  log "$FRONTEND_IMAGE imported (BuildKit's frontend $FRONTEND_VERSION, built here)"
}
