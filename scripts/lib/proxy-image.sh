# shellcheck shell=bash
# Sourced by scripts/testhost.sh (uses its log, note, die, logged, free_port, DOCKER and STATE).

# Each hub and stack gets an HAProxy reverse proxy in front of it, run from the official image
# haproxy:2.6. Production hosts pull it; here no image can be pulled, so build an equivalent from
# Debian 12's own haproxy package (2.6.x) and import it under that name, so the proxy containers
# stay the ones production runs. Like the official image it has bash (the deploy scripts reach the
# runtime API through bash's /dev/tcp inside the container), a shell and the usual tools (busybox
# applets instead of Debian's coreutils, tar, findutils), the haproxy user (uid/gid 99) it runs as,
# its entrypoint (which adds -W -db to a haproxy command), PATH, STOPSIGNAL and CMD.
PROXY_IMAGE=haproxy:2.6
PROXY_CONFIG_PATH=/usr/local/etc/haproxy/haproxy.cfg
PROXY_UPSTREAM_IMAGE="${BASE_IMAGE:-node:24-bookworm-slim}"

# Processes of this machine (not of a container: same mount namespace) running the package's binary.
host_haproxy_pids() {
  local proc own_ns
  own_ns="$(readlink /proc/self/ns/mnt)"
  for proc in /proc/[0-9]*; do
    [[ "$(readlink "$proc/exe" 2>/dev/null)" == /usr/sbin/haproxy ]] || continue
    [[ "$(readlink "$proc/ns/mnt" 2>/dev/null)" == "$own_ns" ]] && printf '%s\n' "${proc#/proc/}"
  done
  return 0
}

# apt-get install of the package with a policy-rc.d that answers 101 ("action forbidden"), so its
# postinst starts no service; the policy-rc.d that was there before (if any) is put back, also when
# the install fails. Runs in a subshell for its EXIT trap.
apt_install_haproxy() {
  (
    local policy=/usr/sbin/policy-rc.d saved=""
    if [[ -e "$policy" ]]; then
      saved="$(mktemp)"
      cp -p "$policy" "$saved"
    fi
    # shellcheck disable=SC2064 # the paths are fixed now
    trap "if [[ -n '$saved' ]]; then mv -f '$saved' '$policy'; else rm -f '$policy'; fi" EXIT
    printf '#!/bin/sh\n# Written by workhub for one apt-get install: start no service.\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    apt-get update -qq
    NEEDRESTART_SUSPEND=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o DPkg::Lock::Timeout=300 haproxy
  )
}

# The host only lends its package's files to the image: its own haproxy service must not run, nor
# start at the next boot.
disable_host_haproxy() {
  local pid pids
  if [[ -d /run/systemd/system ]]; then
    systemctl disable --now haproxy.service >/dev/null 2>&1 || true
  fi
  deb-systemd-helper disable haproxy.service >/dev/null 2>&1 || true
  update-rc.d haproxy disable >/dev/null 2>&1 || true
  # Nothing should have started it (policy-rc.d said no), but if the postinst did, stop it.
  mapfile -t pids < <(host_haproxy_pids)
  if ((${#pids[@]})); then
    log "stopping the haproxy daemon the package's install started (pid ${pids[*]})"
    kill "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 50); do
      [[ -z "$(host_haproxy_pids)" ]] && break
      sleep 0.2
    done
    for pid in $(host_haproxy_pids); do kill -KILL "$pid" 2>/dev/null || true; done
  fi
  [[ -z "$(host_haproxy_pids)" ]] || die "the host's haproxy daemon is still running after the install"
  ! compgen -G '/etc/rc[2345].d/S*haproxy' >/dev/null \
    || die "the host's haproxy service is still enabled (/etc/rc*.d) after the install"
  ! compgen -G '/etc/systemd/system/*.wants/haproxy.service' >/dev/null \
    || die "the host's haproxy service is still enabled (systemd) after the install"
}

ensure_haproxy_package() {
  if dpkg-query -W -f='${Status}' haproxy 2>/dev/null | grep -q 'install ok installed'; then
    return 0
  fi
  local log_file="$STATE/haproxy-install.log" start=$SECONDS
  log "installing Debian's haproxy package (its service kept stopped and disabled; log: $log_file)"
  logged "apt-get install haproxy" "$log_file" apt_install_haproxy
  disable_host_haproxy
  log "haproxy $(dpkg-query -W -f='${Version}' haproxy) installed in $((SECONDS - start)) s"
}

# Copies each file to the same path under $root, with the shared libraries ldd lists for it and
# the dynamic loader.
copy_with_libraries() {
  local root="$1" file lib libs paths
  shift
  for file in "$@"; do
    mkdir -p "$root/$(dirname "$file")"
    cp -L "$file" "$root/$file"
    libs="$(LC_ALL=C ldd "$file")" || die "ldd cannot read $file"
    [[ "$libs" != *"not found"* ]] || die "$file needs libraries this machine lacks: $libs"
    mapfile -t paths < <(grep -o '/[^ ]*' <<<"$libs" | sort -u)
    for lib in "${paths[@]}"; do
      [[ -e "$root/$lib" ]] && continue
      mkdir -p "$root/$(dirname "$lib")"
      cp -L "$lib" "$root/$lib"
    done
  done
}

build_proxy_rootfs() {
  local root="$1" applet
  [[ "$(LC_ALL=C ldd /bin/busybox 2>&1 || true)" == *"not a dynamic executable"* ]] \
    || die "/bin/busybox is not statically linked (install busybox-static)"
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,usr/local/sbin,usr/local/etc/haproxy} \
    "$root"/{etc/ssl/certs,root,tmp,run/lock,var/lib/haproxy,var/tmp}
  chmod 1777 "$root/tmp" "$root/var/tmp" "$root/run/lock"
  # Owned by the haproxy user the image runs as, as in the official image.
  chown 99:99 "$root/var/lib/haproxy"
  copy_with_libraries "$root" /usr/sbin/haproxy /bin/bash
  # The official image installs haproxy in /usr/local/sbin.
  ln -s /usr/sbin/haproxy "$root/usr/local/sbin/haproxy"
  cp /bin/busybox "$root/bin/busybox"
  # --list-full gives each applet's usual path (/bin/sh, /usr/bin/wget, ...). Every applet, not
  # only sh, cat, sleep, ls, nc and wget: the deploy scripts run tar, find and rm in this image,
  # which the official image has. A file already there (bash) is never replaced by an applet.
  for applet in $(/bin/busybox --list-full); do
    [[ "$applet" == linuxrc ]] && continue
    mkdir -p "$root/$(dirname "$applet")"
    [[ -e "$root/$applet" || -L "$root/$applet" ]] || ln -s /bin/busybox "$root/$applet"
  done
  # HAProxy dials TLS upstreams with the system's CA roots, which the official image has.
  if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  fi
  # The official image copies HAProxy's example error pages there; Debian's package has the same.
  if [[ -d /etc/haproxy/errors ]]; then
    cp -rL /etc/haproxy/errors "$root/usr/local/etc/haproxy/errors"
  fi
  printf 'root:x:0:0:root:/root:/bin/bash\nhaproxy:x:99:99::/var/lib/haproxy:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' \
    >"$root/etc/passwd"
  printf 'root:x:0:\nhaproxy:x:99:\nnogroup:x:65534:\n' >"$root/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
  printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
  # The official image ships no config; this minimal one makes the default CMD start and answer.
  cat >"$root$PROXY_CONFIG_PATH" <<'EOF'
# Default config of workhub's local build of haproxy:2.6: mount your own over it.
global
    log stdout format raw local0 info
defaults
    mode http
    log global
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend default
    bind :8080
    http-request return status 200 content-type text/plain string "haproxy works (workhub local build)\n"
EOF
  # The official image's entrypoint: a command that starts with an option runs haproxy, and a
  # haproxy command gets -W (master-worker, reloads on SIGUSR2) and -db (stays in the foreground).
  cat >"$root/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
if [ "${1#-}" != "$1" ]; then
	set -- haproxy "$@"
fi
if [ "$1" = 'haproxy' ]; then
	shift
	set -- haproxy -W -db "$@"
fi
exec "$@"
EOF
  chmod 0755 "$root/usr/local/bin/docker-entrypoint.sh"
}

# `docker import --change` refuses STOPSIGNAL, so the rootfs is imported under a scratch tag and a
# Dockerfile of config only (no RUN, nothing pulled) gives it the official image's config, as the
# tag haproxy:2.6; the scratch tag is removed after (its layer is the image's own).
import_proxy_image() {
  local version="$1" work rootfs_image="workhub-local/haproxy-rootfs:build-$$" ok=1
  work="$(mktemp -d)"
  mkdir "$work/rootfs" "$work/context"
  build_proxy_rootfs "$work/rootfs"
  cat >"$work/context/Dockerfile" <<EOF
FROM $rootfs_image
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENV HAPROXY_VERSION=${version%%-*}
LABEL org.opencontainers.image.version="$version" workhub.local-build="haproxy-$version"
STOPSIGNAL SIGUSR1
ENTRYPOINT ["docker-entrypoint.sh"]
USER haproxy
CMD ["haproxy", "-f", "$PROXY_CONFIG_PATH"]
EOF
  if ! tar -C "$work/rootfs" --numeric-owner -c . | "$DOCKER" import - "$rootfs_image" >/dev/null; then
    ok=0
  elif ! DOCKER_BUILDKIT=1 "$DOCKER" build -q --network=none -t "$PROXY_IMAGE" "$work/context" >"$work/build.log" 2>&1; then
    tail -n 20 "$work/build.log" >&2
    ok=0
  fi
  "$DOCKER" rmi "$rootfs_image" >/dev/null 2>&1 || true
  rm -rf "$work"
  ((ok)) || die "could not import $PROXY_IMAGE"
}

# GET http://127.0.0.1:PORT/ and print the whole response (headers and body), or nothing.
proxy_http_get() {
  # shellcheck disable=SC2016 # $1 is expanded by the inner bash
  timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3 && cat <&3' \
    _ "$1" 2>/dev/null || true
}

# Sends one command to the runtime API of the proxy container $1, through bash inside it (as the
# deploy scripts do), and prints the answer.
proxy_api() {
  # shellcheck disable=SC2016 # $1 is expanded by the inner bash
  "$DOCKER" exec "$1" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9999 && printf "%s\n" "$1" >&3 && cat <&3' _ "$2"
}

# Waits up to 10 s until GET / through 127.0.0.1:$1 gives status $2 (and, if given, body $3).
proxy_expect() {
  local port="$1" status="$2" body="${3:-}" out=""
  for _ in $(seq 50); do
    out="$(proxy_http_get "$port")"
    if [[ "$out" == "HTTP/1."?" $status "* && ( -z "$body" || "$out" == *$'\r\n\r\n'"$body" ) ]]; then
      return 0
    fi
    sleep 0.2
  done
  PROXY_LAST_ANSWER="${out:0:200}"
  return 1
}

# The image as workhub runs it: on a user-defined network, with its config bind-mounted read-only,
# a published 127.0.0.1 port, two slots addressed by container name through Docker's DNS (one not
# started yet, in maintenance), and the runtime API answering through bash inside the container,
# switching between them. Runs in a subshell so that its EXIT trap removes the containers and the network whether
# it passes or dies (set -e then stops the caller).
smoke_test_proxy_image() {
  (
    local tag out port dir net upstream green proxy green_ip start=$SECONDS
    tag="workhub-proxy-smoke-$$"
    net="$tag" upstream="$tag-upstream" green="$tag-green" proxy="$tag-proxy"
    dir="$(mktemp -d)"
    # shellcheck disable=SC2064 # the names are fixed now
    trap "'$DOCKER' rm -f '$proxy' '$upstream' '$green' >/dev/null 2>&1; '$DOCKER' network rm '$net' >/dev/null 2>&1; rm -rf '$dir'" EXIT

    out="$("$DOCKER" run --rm "$PROXY_IMAGE" haproxy -v)" || die "haproxy does not run in $PROXY_IMAGE"
    [[ "$out" == "HAProxy version 2.6."* ]] || die "haproxy in $PROXY_IMAGE reports '${out%%$'\n'*}', not 2.6.x"
    "$DOCKER" run --rm "$PROXY_IMAGE" haproxy -c -f "$PROXY_CONFIG_PATH" >/dev/null \
      || die "the default config of $PROXY_IMAGE does not pass haproxy -c"
    # shellcheck disable=SC2016 # expanded by the container's bash
    out="$("$DOCKER" run --rm "$PROXY_IMAGE" bash -c 'echo "$BASH_VERSION $(id -u):$(id -g)"')" \
      || die "bash does not run in $PROXY_IMAGE"
    [[ "$out" == 5.*" 99:99" ]] || die "$PROXY_IMAGE runs bash '$out', not GNU bash 5 as haproxy (99:99)"
    "$DOCKER" run --rm "$PROXY_IMAGE" sh -c 'ls / >/dev/null && cat /etc/passwd >/dev/null && sleep 0 && nc --help 2>&1 | grep -q . && wget --help 2>&1 | grep -q . && echo x >/tmp/x && echo x >/var/lib/haproxy/x && tar -cf - /etc/hosts 2>/dev/null | tar -tf - >/dev/null' \
      || die "sh, ls, cat, sleep, nc, wget, tar or a writable /tmp and /var/lib/haproxy are missing in $PROXY_IMAGE"

    "$DOCKER" network create "$net" >/dev/null || die "could not create docker network $net"
    "$DOCKER" run -d --name "$upstream" --network "$net" "$PROXY_UPSTREAM_IMAGE" \
      node -e "require('http').createServer((q,s)=>s.end('ok')).listen(8080)" >/dev/null \
      || die "could not start the upstream container from $PROXY_UPSTREAM_IMAGE"
    cat >"$dir/haproxy.cfg" <<EOF
global
    stats socket ipv4@127.0.0.1:9999 level admin
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
resolvers docker
    nameserver dns1 127.0.0.11:53
    hold valid 1s
frontend hub
    bind :8000
    default_backend slots
backend slots
    server blue $upstream:8080 resolvers docker init-addr last,libc,none
    server green $green:8080 resolvers docker init-addr none disabled
EOF
    # The image runs as uid 99: the mounted directory and the config must be readable by it.
    chmod 0755 "$dir"
    chmod 0644 "$dir/haproxy.cfg"
    port="$(free_port)"
    "$DOCKER" run -d --name "$proxy" --network "$net" -p "127.0.0.1:$port:8000" \
      -v "$dir:/etc/workhub:ro" "$PROXY_IMAGE" haproxy -W -db -f /etc/workhub/haproxy.cfg >/dev/null \
      || die "could not start a proxy container from $PROXY_IMAGE"

    if ! proxy_expect "$port" 200 ok; then
      "$DOCKER" logs --tail 20 "$proxy" >&2 || true
      die "the proxy on 127.0.0.1:$port does not reach $upstream:8080 (got: $PROXY_LAST_ANSWER)"
    fi

    out="$(proxy_api "$proxy" "show servers state slots")" \
      || die "the runtime API of $PROXY_IMAGE does not answer on 127.0.0.1:9999 through bash"
    if ! grep -q ' slots [0-9]* blue ' <<<"$out" || ! grep -q ' slots [0-9]* green ' <<<"$out"; then
      die "the runtime API's 'show servers state slots' does not list blue and green (got: ${out:0:300})"
    fi

    proxy_api "$proxy" "set server slots/blue state maint" >/dev/null \
      || die "the runtime API refuses 'set server slots/blue state maint'"
    proxy_expect "$port" 503 || die "GET / does not answer 503 with blue in maintenance (got: $PROXY_LAST_ANSWER)"
    proxy_api "$proxy" "set server slots/blue state ready" >/dev/null \
      || die "the runtime API refuses 'set server slots/blue state ready'"
    proxy_expect "$port" 200 ok || die "GET / does not answer 200 with blue ready again (got: $PROXY_LAST_ANSWER)"

    # The other slot's container, started after the proxy: Docker's DNS gives its name an address
    # (HAProxy asks again every second), and `state ready` then puts it in service, no reload.
    # (`set server slots/green addr IP port 8080` is no way to do this: HAProxy 2.6 refuses it for
    # a server with no address yet, as `init-addr none` leaves it, and for one with an address it
    # holds only until its resolvers fail to resolve the server's name, then the server goes to
    # maintenance again.)
    "$DOCKER" run -d --name "$green" --network "$net" "$PROXY_UPSTREAM_IMAGE" \
      node -e "require('http').createServer((q,s)=>s.end('green')).listen(8080)" >/dev/null \
      || die "could not start the second upstream container from $PROXY_UPSTREAM_IMAGE"
    green_ip="$("$DOCKER" inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$green")"
    [[ "$green_ip" =~ ^[0-9.]+$ ]] || die "docker inspect gives no address of $green on $net (got: '$green_ip')"
    for _ in $(seq 50); do
      out="$(proxy_api "$proxy" "show servers state slots")" || true
      grep -q " slots [0-9]* green $green_ip " <<<"$out" && break
      sleep 0.2
    done
    grep -q " slots [0-9]* green $green_ip " <<<"$out" \
      || die "HAProxy did not resolve $green to $green_ip through Docker's DNS (got: ${out:0:300})"
    out="$(proxy_api "$proxy" "set server slots/green state ready")"
    [[ -z "${out//[[:space:]]/}" ]] || die "the runtime API refuses 'set server slots/green state ready' (got: ${out:0:200})"
    proxy_api "$proxy" "set server slots/blue state maint" >/dev/null
    proxy_expect "$port" 200 green \
      || die "GET / does not reach green ($green_ip:8080) with blue in maintenance (got: $PROXY_LAST_ANSWER)"
    note "$PROXY_IMAGE proxies to upstreams by container name and answers its runtime API through bash:" \
      "maint, ready and a switch to a slot started after it work (checked in $((SECONDS - start)) s)"
  )
}

ensure_proxy_image() {
  if "$DOCKER" image inspect "$PROXY_IMAGE" >/dev/null 2>&1; then
    note "$PROXY_IMAGE present"
    return 0
  fi
  local start=$SECONDS version
  ensure_haproxy_package
  version="$(dpkg-query -W -f='${Version}' haproxy)"
  [[ "$version" == 2.6.* ]] || die "Debian's haproxy package is $version, not 2.6.x"
  import_proxy_image "$version"
  log "$PROXY_IMAGE imported (Debian's haproxy $version) in $((SECONDS - start)) s"
  smoke_test_proxy_image
}
