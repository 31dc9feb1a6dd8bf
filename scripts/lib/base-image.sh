# shellcheck shell=bash
# Sourced by scripts/testhost.sh (uses its die and DOCKER).

# The project's Dockerfiles start FROM node:20-bookworm-slim, which cannot be pulled
# here, so assemble an equivalent rootfs from the host's node, npm and busybox.
build_rootfs() {
  local root="$1" node npm_dir lib applet
  node="$(readlink -f "$(command -v node)")" || die "node is not installed on this machine"
  npm_dir="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")" || die "npm is not installed on this machine"
  mkdir -p "$root"/{bin,usr/bin,usr/local/bin,usr/local/lib/node_modules,lib64,etc/ssl,root,home/node,tmp}
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  # --list-full gives each applet's usual path, so env lands in /usr/bin for npm's shebang.
  for applet in $(/bin/busybox --list-full); do
    mkdir -p "$root/$(dirname "$applet")"
    [[ -e "$root/$applet" ]] || ln -s /bin/busybox "$root/$applet"
  done
  # Same layout as the real image: node under /usr/local, so npm's global prefix is /usr/local.
  cp "$node" "$root/usr/local/bin/node"
  ln -sf /usr/local/bin/node "$root/usr/bin/node"
  # All of libc's shared libraries, not just node's own: tools npm packages run (rollup's native
  # binary needs librt) expect a whole libc, as in the real image.
  for lib in $(ldd "$node" | grep -o '/[^ ]*' | sort -u) /lib64/ld-linux-x86-64.so.2 \
    $(dpkg -L libc6 | grep -E '/lib[^/]*\.so(\.[0-9]+)*$'); do
    mkdir -p "$root/$(dirname "$lib")"
    cp -L "$lib" "$root/$lib"
  done
  cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
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
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' --change "ENV NODE_VERSION=$(node --version | tr -d v)" \
    --change 'WORKDIR /' --change 'CMD ["node"]' - "$image" >/dev/null
  rm -rf "$root"
}
