set -eu
node=node1
address=10.0.0.11
manager=''
role=manager
say() { printf 'swarm: %s\n' "$*" >&2; }
state=$(docker info --format '{{.Swarm.LocalNodeState}}')
case "$state" in
  active)
    say "$node is in the Swarm already (as $(docker info --format '{{if .Swarm.ControlAvailable}}manager{{else}}worker{{end}}'))"
    ;;
  inactive)
    if [ -z "$manager" ]; then
      docker swarm init --advertise-addr "$address" >/dev/null
      say "$node: created the Swarm (advertised at $address)"
    else
      # The token is a shell variable put in front of this script (a secret), never in a file.
      docker swarm join --advertise-addr "$address" --token "$join_token" "$manager:2377" >/dev/null
      say "$node: joined the Swarm of $manager as a $role"
    fi
    ;;
  *) say "FAILED: $node's engine is $state in Swarm terms; see docker info on it"; exit 1 ;;
esac
