set -eu
mark='### '
stack=workhub-staging
hubs=(wbhubmanager wbsaleshub)
host_ports=(24090 24091)
health_paths=(/health /health)
serving=(10.0.0.11 10.0.0.12)
serving_nodes=(node1 node2)
# shellcheck disable=SC2016  # the probe's own text: bash -c expands it, with the probe's arguments
probe_src='exec 3<>"/dev/tcp/$1/$2" 2>/dev/null || { echo refused; exit 0; }
printf "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$3" "$1" >&3
IFS= read -r line <&3 || { echo no-answer; exit 0; }
case "$line" in HTTP/1.[01]\ [0-9][0-9][0-9]*) echo "${line:9:3}" ;; *) echo no-answer ;; esac'
probe() { timeout 5 bash -c "$probe_src" probe "$@" 2>/dev/null || echo no-answer; }

section() { printf '%s%s\n' "$mark" "$*"; }
section nodes
# shellcheck disable=SC2046  # node IDs, one word each: the list splits into them
docker node inspect --format '{{json .}}' $(docker node ls --quiet)
section services
ids=$(docker service ls --quiet --filter "label=com.docker.stack.namespace=$stack")
if [ -n "$ids" ]; then
  # shellcheck disable=SC2086  # service IDs, one word each: the list splits into them
  docker service inspect --format '{{json .}}' $ids
  section service-ls
  docker service ls --format '{{json .}}' --filter "label=com.docker.stack.namespace=$stack"
  section tasks
  # shellcheck disable=SC2086  # service IDs, one word each: the list splits into them
  docker service ps --no-trunc --format '{{json .}}' $ids
fi
section health
# A node whose proxy publishes on its loopback only is not reachable from here: unchecked.
for i in "${!hubs[@]}"; do
  for j in "${!serving[@]}"; do
    address=${serving[$j]}
    answer=unchecked
    [ -z "$address" ] || answer=$(probe "$address" "${host_ports[$i]}" "${health_paths[$i]}")
    printf '{"hub": "%s", "node": "%s", "answer": "%s"}\n' "${hubs[$i]}" "${address:-${serving_nodes[$j]}}" "$answer"
  done
done
