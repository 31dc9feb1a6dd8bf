# shellcheck shell=bash
# Sourced by scripts/testhost.sh and scripts/swarm-testbed.sh (uses their log, note, die and DOCKER).

# The short-lived helper containers (backup, restore, moving a pre-proxy host's data, giving a
# volume's files to a hub's uid) run workhub:helperImage, by default the official busybox:1.37.
# Production hosts pull it; here no image can be pulled, so import an equivalent under that name:
# this machine's static busybox and a link for each of its applets, /tmp, an /etc/passwd with root
# and nobody, and, as workhub runs it, uid 65534 (nobody) by default: whatever needs another uid
# says so with --user.
HELPER_IMAGE=busybox:1.37

build_helper_rootfs() {
  local root="$1" applet
  [[ "$(LC_ALL=C ldd /bin/busybox 2>&1 || true)" == *"not a dynamic executable"* ]] \
    || die "/bin/busybox is not statically linked (install busybox-static)"
  mkdir -p "$root"/{bin,etc,root,tmp,var/tmp}
  cp /bin/busybox "$root/bin/busybox"
  # The official image has every applet in /bin.
  for applet in $(/bin/busybox --list); do
    [[ "$applet" == busybox || "$applet" == linuxrc ]] || ln -s busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  # Whatever the caller's umask: readable by all (its mktemp directory is the image's /, too).
  chmod -R u=rwX,go=rX "$root"
  chmod 700 "$root/root"
  chmod 1777 "$root/tmp" "$root/var/tmp"
}

# import_helper_image: $HELPER_IMAGE in the engine $DOCKER names (a command: the test host's client,
# or a function reaching a Swarm node's engine).
import_helper_image() {
  local work ok=1
  work="$(mktemp -d)"
  build_helper_rootfs "$work"
  tar -C "$work" --numeric-owner -c . \
    | "$DOCKER" import --change 'CMD ["sh"]' --change 'USER 65534:65534' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'LABEL workhub.local-build=busybox-1.37' - "$HELPER_IMAGE" >/dev/null || ok=0
  rm -rf "$work"
  ((ok)) || die "could not import $HELPER_IMAGE"
}

# What workhub asks of it: sh, tar, find, sha256sum and chown, as nobody by default.
smoke_test_helper_image() {
  local out
  out="$("$DOCKER" run --rm --network none "$HELPER_IMAGE" sh -c \
    'id -u && echo x | sha256sum | cut -c1-8 && tar -cf - /etc/passwd 2>/dev/null | tar -tf - && find /etc -name group && [ -x /bin/chown ] && echo chown')" \
    || die "sh, sha256sum, tar or find do not run in $HELPER_IMAGE"
  [[ "$out" == $'65534\n'*$'etc/passwd\n/etc/group\nchown' ]] \
    || die "$HELPER_IMAGE does not run its tools as uid 65534 (got: ${out:0:200})"
}

ensure_helper_image() {
  if "$DOCKER" image inspect "$HELPER_IMAGE" >/dev/null 2>&1; then
    note "$HELPER_IMAGE present"
    return 0
  fi
  local start=$SECONDS
  import_helper_image
  smoke_test_helper_image
  log "$HELPER_IMAGE imported (this machine's busybox) in $((SECONDS - start)) s"
}
