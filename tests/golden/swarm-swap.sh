set -eu
step=restore
node=node2
hub=wbsaleshub
stack=staging
namespace=workhub-staging
volume=workhub-staging-wbsaleshub-data
volume_key=data
helper_image=busybox:1.37
registry_server=10.0.0.1:5000
registry_user=''
stamp=20261207T110000Z
uid=1991296
stop_wait=40
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

new_volume() {
  docker volume create --label "workhub.stack=$stack" --label "workhub.hub=$hub" --label "workhub.volume=$volume_key" \
    "$@" >/dev/null
}

say() { printf '%s: %s\n' "$step" "$*" >&2; }
staging="$volume.restore-$stamp"
reason="" doing="starting"
# fail WHY: the restore stops here (the exit trap says what that left).
fail() { reason="$*"; exit 1; }
helper() {
  docker run --rm --user 0 --network none --cap-drop ALL --cap-add CHOWN --cap-add DAC_OVERRIDE --cap-add FOWNER \
    --security-opt no-new-privileges "$@"
}
# summary VOLUME: "<files> <digest>": how many entries but directories it holds, and a sha256 over
# every regular file's path and content (what two copies of the same data have in common).
summary() {
  # shellcheck disable=SC2016  # sh -c runs it in the container
  helper -v "$1:/data:ro" --entrypoint sh "$helper_image" -c \
    'cd /data && printf "%s %s\n" "$(find . -mindepth 1 ! -type d | wc -l)" "$(find . -type f -exec sha256sum {} + | sort | sha256sum | cut -c1-64)"'
}
# copy_into FROM TO: TO holds exactly what FROM holds (owners, modes and times kept). Docker cannot
# rename a volume, so taking a volume's place is this copy.
copy_into() {
  helper -v "$1:/from:ro" -v "$2:/to" --entrypoint sh "$helper_image" -c \
    'find /to -mindepth 1 -maxdepth 1 -exec rm -rf {} + && cp -a /from/. /to/'
}

kept="$volume.pre-restore-$stamp"
old="" kept_whole=false touched=false done=false
finish() {
  local rc=$?
  set +e
  rm -rf ${login_dir:+"$login_dir"}
  [ "$rc" -eq 0 ] && return 0
  local outcome="$volume was not touched"
  if [ "$done" = true ]; then
    outcome="$volume holds the restored content all the same (its old content is in $kept)"
  elif [ "$touched" = true ]; then
    if copy_into "$kept" "$volume" && [ "$(summary "$volume")" = "$old" ]; then
      outcome="$volume holds its old content again (a copy of it is in $kept)"
    else
      outcome="putting the old content back into $volume failed too: it is in $kept on $node; copy it back with a container that mounts both, before the hub takes requests"
    fi
  elif [ "$kept_whole" = false ]; then
    docker volume rm "$kept" >/dev/null 2>&1
  fi
  docker volume rm "$staging" >/dev/null 2>&1
  printf '%s: FAILED: %s; %s\n' "$step" "${reason:-$doing failed (exit $rc)}" "$outcome" >&2
}
trap finish EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
# The helper image, pulled (quietly: stdout may be the archive) with a login that is gone at exit.
if ! docker image inspect "$helper_image" >/dev/null 2>&1; then
  registry_login fail "$registry_user" "$registry_server"
  docker pull --quiet "$helper_image" >/dev/null 2>&1 || fail "$node cannot pull $helper_image"
fi

# The hub's service was scaled to 0 before this runs; its container goes within its grace period.
doing="waiting for the hub's container on $node to stop"
for _ in $(seq "$stop_wait"); do
  [ -z "$(docker ps --quiet --filter "volume=$volume")" ] && break
  sleep 1
done
[ -z "$(docker ps --quiet --filter "volume=$volume")" ] || fail "a container on $node still uses $volume"
docker volume inspect "$staging" >/dev/null 2>&1 || fail "$staging is not on $node (the restore's first half did not end)"
doing="making $volume on $node"
docker volume inspect "$volume" >/dev/null 2>&1 || new_volume --label "com.docker.stack.namespace=$namespace" "$volume"
# The live content into $kept first (the way back, kept until a prune), checked; only then the new
# content into the live volume, checked.
doing="reading $volume on $node"
old=$(summary "$volume")
doing="copying $volume's content into $kept on $node"
if docker volume inspect "$kept" >/dev/null 2>&1; then
  kept_whole=true
  fail "$kept is on $node already (an earlier try of this restore): it may be the only copy of $volume's old content; compare the two, and remove it before restoring again"
fi
new_volume --label "workhub.pre-restore=$stamp" "$kept"
copy_into "$volume" "$kept"
[ "$(summary "$kept")" = "$old" ] || fail "the copy of $volume in $kept does not hold what $volume holds"
kept_whole=true
doing="copying $staging's content into $volume on $node"
touched=true
new=$(summary "$staging")
copy_into "$staging" "$volume"
[ "$(summary "$volume")" = "$new" ] || fail "$volume does not hold what $staging holds after the copy"
doing="giving the files of $volume to the hub's uid $uid"
reown "$volume" "$uid:$uid"
mark_owned "$volume" "$uid"
done=true
doing="removing $staging"
docker volume rm "$staging" >/dev/null
say "restored $volume on $node (${new%% *} file(s), the hub's uid $uid's); its old content is kept in $kept until a prune"
