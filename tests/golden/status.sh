set -eu
stack=staging
publish_address=127.0.0.1
live_mark='# workhub live slot: '
hubs=(wbsaleshub)
host_ports=(14091)
health_paths=(/health)
# shellcheck disable=SC2016  # the probe's own text: bash -c expands it, with the probe's arguments
probe_src='exec 3<>"/dev/tcp/$1/$2" 2>/dev/null || { echo refused; exit 0; }
printf "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$3" "$1" >&3
IFS= read -r line <&3 || { echo no-answer; exit 0; }
case "$line" in HTTP/1.[01]\ [0-9][0-9][0-9]*) echo "${line:9:3}" ;; *) echo no-answer ;; esac'
probe() { timeout 5 bash -c "$probe_src" probe "$@" 2>/dev/null || echo no-answer; }
probe_host=$publish_address
[ "$probe_host" = 0.0.0.0 ] && probe_host=127.0.0.1

state="$HOME/.workhub"
field() { printf '%s' "$1" | sed -n "s/.*\"$2\": \"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p"; }
for i in "${!hubs[@]}"; do
  hub=${hubs[$i]}
  base="$hub-$stack"
  live=$(sed -n "s/^$live_mark//p" "$state/proxy/$base/haproxy.cfg" 2>/dev/null | head -n 1)
  container=$base${live:+-$live}
  image=$(docker inspect --format '{{.Config.Image}}' "$container" 2>/dev/null) || image=none
  since=$(docker inspect --format '{{.State.StartedAt}}' "$container" 2>/dev/null) || since=none
  proxy=$(docker inspect --format '{{.State.Status}}' "$base-proxy" 2>/dev/null) || proxy=none
  if [ "$(probe "$probe_host" "${host_ports[$i]}" "${health_paths[$i]}")" = 200 ]; then health=ok; else health=failing; fi
  created=$(docker inspect --format '{{.Created}}' "$container" 2>/dev/null) && created_ms=$(date -d "$created" +%s%3N) \
    || created_ms=0
  records=$(cat "$state/builds.jsonl" "$state/deploys.jsonl" 2>/dev/null \
    | grep -F "\"hub\": \"$hub\", \"stack\": \"$stack\",") || true
  # The build (or pull) that made the running image; and the newest attempt since its container was
  # made (a build, a pull or a failed deploy, of another image or of the same): one from before (a
  # build that a revert superseded) is not the last attempt any more.
  made=$(printf '%s\n' "$records" | grep -F "\"image\": \"$image\"," | grep -F '"result": "succeeded"' | tail -n 1)
  last=$(printf '%s\n' "$records" | awk -v after="$created_ms" '
    match($0, /"end_ms": [0-9]+/) { t = substr($0, RSTART + 10, RLENGTH - 10) + 0; if (t > after && t >= newest) { newest = t; line = $0 } }
    END { print line }')
  [ "$last" = "$made" ] && last=""
  printf '{"hub": "%s", "container": "%s", "image": "%s", "since": "%s", "health": "%s", "proxy": "%s", "build": "%s", "attempts": "%s", "log": "%s", "last_attempt": "%s", "last_image": "%s", "last_log": "%s"}\n' \
    "$hub" "$container" "$image" "$(printf '%s' "${since:-none}" | cut -c1-19)" "$health" "$proxy" "$(field "$made" result)" \
    "$(field "$made" attempts)" "$(field "$made" log)" "$(field "$last" result)" "$(field "$last" image)" "$(field "$last" log)"
done
