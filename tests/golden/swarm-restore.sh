set -eu
step=restore
node=node2
hub=wbsaleshub
stack=staging
service=workhub-staging_wbsaleshub
volume=workhub-staging-wbsaleshub-data
volume_key=data
helper_image=busybox:1.37
registry_server=10.0.0.1:5000
registry_user=''
stamp=20261207T110000Z
uid=1991296
sha256=0000000000000000000000000000000000000000000000000000000000000000
files=3
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

archive="" staged=false
finish() {
  local rc=$?
  set +e
  rm -rf ${login_dir:+"$login_dir"} ${archive:+"$archive"}
  [ "$rc" -eq 0 ] && return 0
  [ "$staged" = true ] && docker volume rm "$staging" >/dev/null 2>&1
  printf '%s: FAILED: %s; nothing was changed: %s holds its data as before, and %s kept running\n' \
    "$step" "${reason:-$doing failed (exit $rc)}" "$volume" "$service" >&2
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

doing="receiving the archive"
archive=$(mktemp)
cat >"$archive"
got=$(sha256sum "$archive" | cut -d' ' -f1)
[ "$got" = "$sha256" ] || fail "the archive arrived with sha256 $got, not $sha256"
# The archive goes into a volume of its own and must hold as many files as the backup did, while
# the hub keeps running.
doing="making $staging on $node"
docker volume rm "$staging" >/dev/null 2>&1 || true
new_volume --label "workhub.restore=$stamp" "$staging"
staged=true
doing="extracting the archive into $staging on $node"
helper -i -v "$staging:/data" --entrypoint tar "$helper_image" -xzf - -C /data <"$archive" \
  || fail "the archive does not extract into $staging on $node (it is damaged)"
doing="counting the files in $staging"
got=$(summary "$staging")
[ "${got%% *}" = "$files" ] || fail "the archive holds $files file(s), but ${got%% *} arrived in $staging on $node"
# The archive keeps the owners it was made with (another stack's uid, or a hub's from before it had its own).
doing="giving the files in $staging to the hub's uid $uid"
reown "$staging" "$uid:$uid"
say "staged $volume's new content in $staging on $node ($(stat -c %s "$archive") bytes, $files file(s)); $service still runs"
