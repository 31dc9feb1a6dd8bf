set -eu
prefix=workhub
nodes=(node1 node2 node3)
labels=('workhub.serve=true workhub.build=true' 'workhub.serve=true workhub.data.wbsaleshub=true' '')
say() { printf 'swarm-labels: %s\n' "$*" >&2; }
# Each node's workhub.* labels are exactly the ones its config gives: the others are removed.
for i in "${!nodes[@]}"; do
  node=${nodes[$i]}
  read -r -a want <<<"${labels[$i]}"
  args=()
  for label in $(docker node inspect --format '{{range $k, $v := .Spec.Labels}}{{$k}}={{$v}} {{end}}' "$node"); do
    case "$label" in "$prefix".*) ;; *) continue ;; esac
    keep=false
    for wanted in "${want[@]}"; do [ "$wanted" = "$label" ] && keep=true; done
    "$keep" || args+=(--label-rm "${label%%=*}")
  done
  for wanted in "${want[@]}"; do args+=(--label-add "$wanted"); done
  [ "${#args[@]}" -eq 0 ] || docker node update "${args[@]}" "$node" >/dev/null
  say "$node: ${labels[$i]:-no workhub labels}"
done
