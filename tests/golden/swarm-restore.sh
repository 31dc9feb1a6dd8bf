set -eu
step=restore
node=node2
hub=wbsaleshub
stack=staging
namespace=workhub-staging
service=workhub-staging_wbsaleshub
volume=workhub-staging-wbsaleshub-data
volume_key=data
helper_image=busybox:1.37
registry_server=10.0.0.1:5000
registry_user=''
sha256=0000000000000000000000000000000000000000000000000000000000000000
stop_wait=40
uid=1991296
login_dir="" scratch=""
trap 'rm -rf ${login_dir:+"$login_dir"} ${scratch:+"$scratch"}' EXIT
registry_login() {
  login_dir=$(mktemp -d)
  export DOCKER_CONFIG="$login_dir"
  [ -n "$2" ] || return 0
  printf '%s' "${registry_password:-}" | docker login --username "$2" --password-stdin "$3" \
    >/dev/null 2>"$login_dir/login.log" && return 0
  cat "$login_dir/login.log" >&2
  "$1" "$3 refused the login of $2; check workhub:registry.username and workhub:registryPassword"
}

fail() { printf '%s: FAILED: %s\n' "$step" "$*" >&2; exit 1; }
# The helper image, pulled (quietly: stdout may be the archive) with a login that is gone at exit.
if ! docker image inspect "$helper_image" >/dev/null 2>&1; then
  registry_login fail "$registry_user" "$registry_server"
  docker pull --quiet "$helper_image" >/dev/null 2>&1 || fail "$node cannot pull $helper_image"
fi

owners_dir="$HOME/.workhub/owners"
# owned VOLUME UID: the files of VOLUME were given to UID.
owned() { [ "$(cat "$owners_dir/$1" 2>/dev/null)" = "$2" ]; }
# mark_owned VOLUME UID: recorded, so the next deploy does not walk VOLUME again.
mark_owned() {
  mkdir -p "$owners_dir"
  printf '%s\n' "$2" >"$owners_dir/$1.tmp"
  mv "$owners_dir/$1.tmp" "$owners_dir/$1"
}
# forget_owner VOLUME: VOLUME is new (or gone); its files are walked at the next chance.
forget_owner() { rm -f "$owners_dir/$1"; }

# reown VOLUME UID:GID: every file of VOLUME belongs to UID:GID (a link itself, never what it points to).
reown() {
  docker run --rm --network none --user 0 --cap-drop ALL --cap-add CHOWN --cap-add DAC_READ_SEARCH \
    --security-opt no-new-privileges -v "$1:/data" --entrypoint chown "$helper_image" -R -h "$2" /data
}

say() { printf '%s: %s\n' "$step" "$*" >&2; }
archive=$(mktemp)
scratch=$archive
cat >"$archive"
got=$(sha256sum "$archive" | cut -d' ' -f1)
[ "$got" = "$sha256" ] || fail "the archive arrived with sha256 $got, not $sha256; nothing was changed"
# The hub's task is stopped (its service scaled to 0) before this runs; wait for its container to go.
for _ in $(seq "$stop_wait"); do
  [ -z "$(docker ps --quiet --filter "volume=$volume")" ] && break
  sleep 1
done
[ -z "$(docker ps --quiet --filter "volume=$volume")" ] \
  || fail "a container on $node still uses $volume; scale $service to 0 first"
docker volume inspect "$volume" >/dev/null 2>&1 || docker volume create --label "com.docker.stack.namespace=$namespace" \
  --label "workhub.stack=$stack" --label "workhub.hub=$hub" --label "workhub.volume=$volume_key" "$volume" >/dev/null
docker run --rm -i --user 0 --network none -v "$volume:/data" --entrypoint sh "$helper_image" \
  -c 'find /data -mindepth 1 -maxdepth 1 -exec rm -rf {} + && tar -xzf - -C /data' <"$archive"
# The archive keeps the owners it was made with (another stack's uid, or a hub's from before it had its own).
reown "$volume" "$uid:$uid"
mark_owned "$volume" "$uid"
say "restored $volume on $node ($(stat -c %s "$archive") bytes), its files the hub's uid $uid's"
