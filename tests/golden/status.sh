set -eu
stack=staging
publish_address=127.0.0.1
hubs=(wbsaleshub)
host_ports=(14091)
health_paths=(/health)
probe_host=$publish_address
[ "$probe_host" = 0.0.0.0 ] && probe_host=127.0.0.1
healthy() {
  local status
  exec 3<>"/dev/tcp/$probe_host/$1" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$2" "$probe_host" >&3
  IFS= read -r status <&3 || return 1
  case "$status" in "HTTP/1."[01]" 200"*) return 0 ;; esac
  return 1
}

state="$HOME/.workhub"
field() { printf '%s' "$1" | sed -n "s/.*\"$2\": \"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p"; }
for i in "${!hubs[@]}"; do
  hub=${hubs[$i]}
  container="$hub-$stack"
  image=$(docker inspect --format '{{.Config.Image}}' "$container" 2>/dev/null) || image=none
  since=$(docker inspect --format '{{.State.StartedAt}}' "$container" 2>/dev/null) || since=none
  if (healthy "${host_ports[$i]}" "${health_paths[$i]}") 2>/dev/null; then health=ok; else health=failing; fi
  last=$(grep -F "\"hub\": \"$hub\", \"stack\": \"$stack\"," "$state/builds.jsonl" 2>/dev/null | tail -n 1)
  printf '{"hub": "%s", "image": "%s", "since": "%s", "health": "%s", "last_build": "%s", "attempts": "%s", "log": "%s"}\n' \
    "$hub" "$image" "$(printf '%s' "${since:-none}" | cut -c1-19)" "$health" "$(field "$last" result)" "$(field "$last" attempts)" "$(field "$last" log)"
done
