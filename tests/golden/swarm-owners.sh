set -eu
node=node2
stack=staging
namespace=workhub-staging
helper_image=busybox:1.37
registry_server=10.0.0.1:5000
registry_user=''
hubs=(wbsaleshub)
volume_keys=(data)
volumes=(workhub-staging-wbsaleshub-data)
targets=(/app/data)
images=(10.0.0.1:5000/workhub/wbsaleshub@sha256:abababababababababababababababababababababababababababababababab)
uids=(1991296)
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

say() { printf 'owners: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
logged_in=false
# pull IMAGE: IMAGE is on this node, pulled with the registry login (gone at exit) when it was not.
pull() {
  docker image inspect "$1" >/dev/null 2>&1 && return 0
  if [ "$logged_in" = false ]; then
    registry_login fail "$registry_user" "$registry_server"
    logged_in=true
  fi
  docker pull --quiet "$1" >/dev/null || fail "$node cannot pull $1"
}
for i in "${!volumes[@]}"; do
  volume=${volumes[$i]}
  if ! docker volume inspect "$volume" >/dev/null 2>&1; then
    docker volume create --label "com.docker.stack.namespace=$namespace" --label "workhub.stack=$stack" \
      --label "workhub.hub=${hubs[$i]}" --label "workhub.volume=${volume_keys[$i]}" "$volume" >/dev/null
    forget_owner "$volume"
    # What the image has at the volume's path, as Docker gives a new volume at its first mount (the
    # tasks mount it with nocopy): a container made, never started, and removed.
    pull "${images[$i]}"
    docker rm "$(docker create --network none --entrypoint true -v "$volume:${targets[$i]}" "${images[$i]}")" >/dev/null
    say "created $volume on $node"
  fi
  owned "$volume" "${uids[$i]}" && continue
  pull "$helper_image"
  say "giving the files of $volume on $node to uid ${uids[$i]}, ${hubs[$i]}'s own (once)"
  reown "$volume" "${uids[$i]}:${uids[$i]}" || fail "could not give the files of $volume to uid ${uids[$i]} (above)"
  mark_owned "$volume" "${uids[$i]}"
done
