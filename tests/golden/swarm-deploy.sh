set -eu
stack=workhub-staging
# shellcheck disable=SC2016  # a config value, taken literally
stack_file='{
  "version": "3.9",
  "services": {
    "wbhubmanager": {
      "image": "10.0.0.1:5000/workhub/wbhubmanager:staging-0123456789ab",
      "user": "1965981:1965981",
      "cap_drop": [
        "ALL"
      ],
      "environment": {
        "PORT": "4090",
        "HOME": "/tmp",
        "LOG_LEVEL": "info",
        "PRICE": "$$5",
        "SESSION_SECRET_FILE": "/run/secrets/SESSION_SECRET"
      },
      "networks": [
        "hubs"
      ],
      "healthcheck": {
        "test": [
          "CMD",
          "node",
          "-e",
          "require('"'"'http'"'"').get({host:'"'"'127.0.0.1'"'"',port:4090,path:'"'"'/health'"'"',timeout:2000},r=>process.exit(r.statusCode===200?0:1)).on('"'"'error'"'"',()=>process.exit(1))"
        ],
        "interval": "2s",
        "timeout": "3s",
        "retries": 3,
        "start_period": "60s"
      },
      "stop_grace_period": "30s",
      "deploy": {
        "mode": "replicated",
        "replicas": 2,
        "endpoint_mode": "dnsrr",
        "update_config": {
          "parallelism": 1,
          "delay": "0s",
          "order": "start-first",
          "monitor": "30s",
          "failure_action": "rollback",
          "max_failure_ratio": 0
        },
        "rollback_config": {
          "parallelism": 1,
          "delay": "0s",
          "order": "start-first",
          "monitor": "30s",
          "failure_action": "pause"
        },
        "restart_policy": {
          "condition": "any",
          "delay": "2s"
        },
        "labels": {
          "workhub.hub": "wbhubmanager",
          "workhub.stack": "staging",
          "workhub.role": "hub"
        },
        "placement": {
          "constraints": [
            "node.labels.workhub.build != true"
          ]
        },
        "resources": {
          "limits": {
            "pids": 512,
            "memory": "256M"
          }
        }
      },
      "secrets": [
        {
          "source": "wbhubmanager_SESSION_SECRET",
          "target": "SESSION_SECRET",
          "uid": "1965981",
          "gid": "1965981",
          "mode": 256
        }
      ]
    },
    "wbsaleshub": {
      "image": "10.0.0.1:5000/workhub/wbsaleshub@sha256:abababababababababababababababababababababababababababababababab",
      "user": "1991296:1991296",
      "cap_drop": [
        "ALL"
      ],
      "environment": {
        "PORT": "4091",
        "APP_PORT": "4091",
        "HOME": "/tmp",
        "PUBLIC_URL": "https://sales.staging.example.test",
        "LEADS_API_TOKEN_FILE": "/run/secrets/LEADS_API_TOKEN"
      },
      "networks": [
        "hubs"
      ],
      "healthcheck": {
        "test": [
          "CMD",
          "node",
          "-e",
          "require('"'"'http'"'"').get({host:'"'"'127.0.0.1'"'"',port:4091,path:'"'"'/health'"'"',timeout:2000},r=>process.exit(r.statusCode===200?0:1)).on('"'"'error'"'"',()=>process.exit(1))"
        ],
        "interval": "2s",
        "timeout": "3s",
        "retries": 3,
        "start_period": "60s"
      },
      "stop_grace_period": "30s",
      "deploy": {
        "mode": "replicated",
        "replicas": 1,
        "endpoint_mode": "dnsrr",
        "update_config": {
          "parallelism": 1,
          "delay": "0s",
          "order": "start-first",
          "monitor": "30s",
          "failure_action": "rollback",
          "max_failure_ratio": 0
        },
        "rollback_config": {
          "parallelism": 1,
          "delay": "0s",
          "order": "start-first",
          "monitor": "30s",
          "failure_action": "pause"
        },
        "restart_policy": {
          "condition": "any",
          "delay": "2s"
        },
        "labels": {
          "workhub.hub": "wbsaleshub",
          "workhub.stack": "staging",
          "workhub.role": "hub"
        },
        "placement": {
          "constraints": [
            "node.labels.workhub.data.wbsaleshub == true"
          ]
        },
        "resources": {
          "limits": {
            "pids": 512
          }
        }
      },
      "secrets": [
        {
          "source": "wbsaleshub_LEADS_API_TOKEN",
          "target": "LEADS_API_TOKEN",
          "uid": "1991296",
          "gid": "1991296",
          "mode": 256
        }
      ],
      "volumes": [
        {
          "type": "volume",
          "source": "workhub-staging-wbsaleshub-data",
          "target": "/app/data",
          "volume": {
            "nocopy": true
          }
        }
      ]
    },
    "proxy": {
      "image": "haproxy:2.6",
      "command": [
        "haproxy",
        "-f",
        "/etc/workhub/haproxy.cfg"
      ],
      "networks": [
        "hubs"
      ],
      "volumes": [
        {
          "type": "volume",
          "source": "sockets",
          "target": "/var/lib/haproxy"
        }
      ],
      "configs": [
        {
          "source": "proxy",
          "target": "/etc/workhub/haproxy.cfg",
          "mode": 292
        }
      ],
      "deploy": {
        "mode": "global",
        "endpoint_mode": "dnsrr",
        "placement": {
          "constraints": [
            "node.labels.workhub.serve == true"
          ]
        },
        "update_config": {
          "parallelism": 1,
          "delay": "5s",
          "order": "stop-first",
          "failure_action": "rollback",
          "monitor": "10s"
        },
        "restart_policy": {
          "condition": "any",
          "delay": "2s"
        },
        "labels": {
          "workhub.hub": "proxy",
          "workhub.stack": "staging",
          "workhub.role": "proxy"
        }
      }
    },
    "publish": {
      "image": "haproxy:2.6",
      "command": [
        "haproxy",
        "-f",
        "/etc/workhub/haproxy.cfg"
      ],
      "networks": [
        "hostnet"
      ],
      "environment": {
        "WORKHUB_NODE": "{{.Node.Hostname}}"
      },
      "volumes": [
        {
          "type": "volume",
          "source": "sockets",
          "target": "/var/lib/haproxy"
        }
      ],
      "configs": [
        {
          "source": "publish",
          "target": "/etc/workhub/haproxy.cfg",
          "mode": 292
        }
      ],
      "deploy": {
        "mode": "global",
        "endpoint_mode": "dnsrr",
        "placement": {
          "constraints": [
            "node.labels.workhub.serve == true"
          ]
        },
        "update_config": {
          "parallelism": 1,
          "delay": "5s",
          "order": "stop-first",
          "failure_action": "rollback",
          "monitor": "10s"
        },
        "restart_policy": {
          "condition": "any",
          "delay": "2s"
        },
        "labels": {
          "workhub.hub": "publish",
          "workhub.stack": "staging",
          "workhub.role": "publish"
        }
      }
    }
  },
  "networks": {
    "hubs": {
      "driver": "overlay"
    },
    "hostnet": {
      "external": true,
      "name": "host"
    }
  },
  "configs": {
    "proxy": {
      "name": "workhub-staging-proxy-13879bd9b50e",
      "file": "./haproxy.cfg"
    },
    "publish": {
      "name": "workhub-staging-publish-12c430ffd906",
      "file": "./publish.cfg"
    }
  },
  "volumes": {
    "workhub-staging-wbsaleshub-data": {
      "name": "workhub-staging-wbsaleshub-data"
    },
    "sockets": {
      "name": "workhub-staging-proxy-sockets"
    }
  },
  "secrets": {
    "wbhubmanager_SESSION_SECRET": {
      "external": true,
      "name": "staging-wbhubmanager-SESSION_SECRET-755055db0896"
    },
    "wbsaleshub_LEADS_API_TOKEN": {
      "external": true,
      "name": "staging-wbsaleshub-LEADS_API_TOKEN-a5cf1201fa2f"
    }
  }
}'
proxy_config='# The proxy of stack staging on its Swarm, written by workhub: edits are overwritten.
global
    log stdout format raw daemon warning
    stats socket ipv4@127.0.0.1:9999 level admin
    stats timeout 30s
    hard-stop-after 35s
defaults
    mode http
    log global
    option dontlognull
    option forwardfor
    option idle-close-on-response
    timeout connect 5s
    timeout client 60s
    timeout http-request 30s
    timeout http-keep-alive 60s
    timeout server 300s
    timeout tunnel 1h
    retries 3
    retry-on conn-failure empty-response
    option redispatch 1
    timeout check 2s
resolvers docker
    nameserver docker 127.0.0.11:53
    accepted_payload_size 8192
    resolve_retries 3
    timeout resolve 1s
    timeout retry 1s
    hold valid 1s
    hold other 1s
    hold refused 1s
    hold nx 1s
    hold timeout 1s
    hold obsolete 1s
frontend wbhubmanager
    bind unix@/var/lib/haproxy/wbhubmanager.sock mode 600 accept-proxy
    default_backend slots-wbhubmanager
backend slots-wbhubmanager
    option httpchk
    http-check send meth GET uri /health
    http-check expect status 200
    default-server check inter 500ms fall 2 rise 3 resolvers docker init-addr none resolve-prefer ipv4
    server-template task 5 tasks.workhub-staging_wbhubmanager:4090
frontend wbsaleshub
    bind unix@/var/lib/haproxy/wbsaleshub.sock mode 600 accept-proxy
    default_backend slots-wbsaleshub
backend slots-wbsaleshub
    option httpchk
    http-check send meth GET uri /health
    http-check expect status 200
    default-server check inter 500ms fall 2 rise 3 resolvers docker init-addr none resolve-prefer ipv4
    server-template task 3 tasks.workhub-staging_wbsaleshub:4091
'
proxy_config_file=haproxy.cfg
# shellcheck disable=SC2016  # a config value, taken literally
publish_config='# The publish relay of stack staging on its Swarm, written by workhub: edits are overwritten.
global
    log stdout format raw daemon warning
defaults
    mode tcp
    log global
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    retries 3
.if streq("$WORKHUB_NODE","node1")
frontend wbhubmanager
    bind ipv4@10.0.0.11:24090
    default_backend proxy-wbhubmanager
frontend wbsaleshub
    bind ipv4@10.0.0.11:24091
    default_backend proxy-wbsaleshub
.endif
.if streq("$WORKHUB_NODE","node2")
frontend wbhubmanager
    bind ipv4@10.0.0.12:24090
    default_backend proxy-wbhubmanager
frontend wbsaleshub
    bind ipv4@10.0.0.12:24091
    default_backend proxy-wbsaleshub
.endif
backend proxy-wbhubmanager
    server proxy unix@/var/lib/haproxy/wbhubmanager.sock send-proxy-v2
backend proxy-wbsaleshub
    server proxy unix@/var/lib/haproxy/wbsaleshub.sock send-proxy-v2
'
publish_config_file=publish.cfg
config_names=(workhub-staging-proxy-13879bd9b50e workhub-staging-publish-12c430ffd906)
secret_names=(staging-wbhubmanager-SESSION_SECRET-755055db0896 staging-wbsaleshub-LEADS_API_TOKEN-a5cf1201fa2f)
services=(workhub-staging_wbhubmanager workhub-staging_wbsaleshub workhub-staging_proxy workhub-staging_publish)
hubs=(wbhubmanager wbsaleshub)
registry_server=10.0.0.1:5000
registry_user=''
timeout=300
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

say() { printf 'swarm-deploy: %s\n' "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
umask 077
mkdir -p "$HOME/.workhub"
chmod 700 "$HOME/.workhub"
dir="$HOME/.workhub/swarm/$stack"
mkdir -p "$dir"
printf '%s\n' "$stack_file" >"$dir/stack.json.tmp" && mv "$dir/stack.json.tmp" "$dir/stack.json"
printf '%s' "$proxy_config" >"$dir/$proxy_config_file"
printf '%s' "$publish_config" >"$dir/$publish_config_file"

# A secret's value goes in through stdin, under a name of its own (a new value is a new name).
for i in "${!secret_names[@]}"; do
  name=${secret_names[$i]}
  docker secret inspect "$name" >/dev/null 2>&1 && continue
  var="secret_$i"
  printf '%s' "${!var}" | docker secret create --label "workhub.stack=$stack" "$name" - >/dev/null
  say "created secret $name"
done

# The registry login lives in a client config that is gone when this script ends; the nodes get it
# from the manager with the services (--with-registry-auth), never on their disks.
registry_login fail "$registry_user" "$registry_server"

# When each service's last rollout started, to tell its rollout now from an older one.
started() { docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.StartedAt}}{{end}}' "$1" 2>/dev/null || true; }
before=()
for service in "${services[@]}"; do before+=("$(started "$service")"); done
# What each hub's service runs before this deploy: when the deploy changes it, it is the hub's
# previous image (the one a rollback pins), kept in $dir until the hub's image changes again.
image_of() { docker service inspect --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}' "$1" 2>/dev/null || true; }
was=()
for i in "${!hubs[@]}"; do was+=("$(image_of "${services[$i]}")"); done
(cd "$dir" && docker stack deploy --with-registry-auth --resolve-image always --compose-file stack.json "$stack") >&2

# The tasks of the service that ended with an error (an unhealthy new task), not those an update stopped.
why_failed() {
  docker service ps --no-trunc \
    --format '{{.Error}}|{{.Name}} on {{.Node}}: {{.Error}} ({{.CurrentState}})' "$1" 2>/dev/null \
    | grep -v '^|' | cut -d'|' -f2- | head -n 3 || true
}
failed=()
# A deploy that changed what the tasks run starts a rollout at once; one that did not (a new
# service, a scaled one, or one left as it was) starts none within a few seconds of the deploy
# (one window for all the services, not one each). Swarm clears a service's last rollout when it is
# updated (as `docker stack deploy` updates every service): no rollout now is none since.
settled=$(( $(date +%s) + 5 ))
for i in "${!services[@]}"; do
  service=${services[$i]}
  deadline=$(( $(date +%s) + timeout ))
  while :; do
    state=$(docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "$service")
    now=$(started "$service")
    if [ "$now" = "${before[$i]}" ] || [ -z "$now" ]; then
      replicas=$(docker service ls --filter "name=$service" --format '{{.Name}} {{.Replicas}}' | sed -n "s|^$service ||p")
      running=${replicas%%/*} desired=${replicas#*/}
      desired=${desired%% *}
      if [ "$(date +%s)" -ge "$settled" ] && [ -n "$replicas" ] && [ "$running" = "$desired" ]; then
        say "$service: $running/$desired task(s) running"
        break
      fi
    else
      case "$state" in
        completed) say "$service: rolled out"; break ;;
        rollback_completed|rollback_paused|paused)
          message=$(docker service inspect --format '{{.UpdateStatus.Message}}' "$service")
          case "$state" in paused) done_to="paused it" ;; *) done_to="rolled it back" ;; esac
          why=$(why_failed "$service" | paste -sd';' -)
          failed+=("$service: its update did not stay healthy and Swarm $done_to ($message)${why:+; $why}")
          break ;;
      esac
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      # Why: the errors its tasks ended with (a task that exits at its start says only its exit
      # code), then the last lines its tasks logged, which say what the hub itself found wrong.
      why=$(why_failed "$service" | paste -sd';' -)
      docker service logs --raw --tail 5 "$service" 2>&1 | tail -n 5 | sed "s|^|$service: |" >&2 || true
      failed+=("$service: not converged within $timeout s (state: ${state:-new})${why:+; $why}")
      break
    fi
    sleep 1
  done
done

# Secrets and proxy configs of this stack no service uses any more (Docker refuses the others).
for name in $(docker secret ls --filter "label=workhub.stack=$stack" --format '{{.Name}}'); do
  case " ${secret_names[*]} " in *" $name "*) ;; *) docker secret rm "$name" >/dev/null 2>&1 || true ;; esac
done
for name in $(docker config ls --filter "label=com.docker.stack.namespace=$stack" --format '{{.Name}}'); do
  case " ${config_names[*]} " in *" $name "*) ;; *) docker config rm "$name" >/dev/null 2>&1 || true ;; esac
done

if [ "${#failed[@]}" -gt 0 ]; then
  # One FAILED line (the reason `up` ends with), naming every service that did not roll out.
  reason=${failed[0]}
  for line in "${failed[@]:1}"; do reason+=" | $line"; done
  say "FAILED: $reason"
  say "the services above run their previous version; the others run this one"
  exit 1
fi
say "stack $stack is up on its Swarm"
# What each hub's service runs now, for the stack's outputs: its image by digest (the deploy
# resolved each tag to one), the one it ran before, and its tasks running/desired.
rows=()
for i in "${!hubs[@]}"; do
  service=${services[$i]}
  image=$(docker service inspect --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}' "$service")
  kept="$dir/previous-image.${hubs[$i]}"
  if [ -n "${was[$i]}" ] && [ "${was[$i]}" != "$image" ]; then printf '%s' "${was[$i]}" >"$kept"; fi
  previous=$(cat "$kept" 2>/dev/null || true)
  replicas=$(docker service ls --filter "name=$service" --format '{{.Name}} {{.Replicas}}' | sed -n "s|^$service ||p")
  rows+=("$(printf '"%s": {"image": "%s", "previous": "%s", "replicas": "%s"}' "${hubs[$i]}" "$image" "$previous" \
    "${replicas%% *}")")
done
printf '{"stack": "%s", "hubs": {%s}}\n' "$stack" "$(IFS=,; printf '%s' "${rows[*]}")"
