set -eu
base=wbsaleshub-staging
proxy=wbsaleshub-staging-proxy
live_mark='# workhub live slot: '
image=wbsaleshub:staging-0123456789ab
drift_mark='drift: '
compose_blue='{
  "services": {
    "wbsaleshub-staging-blue": {
      "image": "wbsaleshub:staging-0123456789ab",
      "container_name": "wbsaleshub-staging-blue",
      "hostname": "wbsaleshub-staging-blue",
      "restart": "unless-stopped",
      "profiles": [
        "staging"
      ],
      "env_file": [
        {
          "path": "../env/wbsaleshub-staging-blue.env",
          "format": "raw"
        }
      ],
      "networks": [
        "workhub-staging"
      ],
      "stop_grace_period": "30s",
      "labels": {
        "workhub.hub": "wbsaleshub",
        "workhub.stack": "staging",
        "workhub.role": "hub",
        "workhub.slot": "blue"
      },
      "user": "1991296:1991296",
      "cap_drop": [
        "ALL"
      ],
      "security_opt": [
        "no-new-privileges:true"
      ],
      "pids_limit": 512,
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
    }
  },
  "networks": {
    "workhub-staging": {
      "external": true,
      "name": "workhub-staging"
    }
  },
  "volumes": {
    "workhub-staging-wbsaleshub-data": {
      "external": true,
      "name": "workhub-staging-wbsaleshub-data"
    }
  }
}'
compose_green='{
  "services": {
    "wbsaleshub-staging-green": {
      "image": "wbsaleshub:staging-0123456789ab",
      "container_name": "wbsaleshub-staging-green",
      "hostname": "wbsaleshub-staging-green",
      "restart": "unless-stopped",
      "profiles": [
        "staging"
      ],
      "env_file": [
        {
          "path": "../env/wbsaleshub-staging-green.env",
          "format": "raw"
        }
      ],
      "networks": [
        "workhub-staging"
      ],
      "stop_grace_period": "30s",
      "labels": {
        "workhub.hub": "wbsaleshub",
        "workhub.stack": "staging",
        "workhub.role": "hub",
        "workhub.slot": "green"
      },
      "user": "1991296:1991296",
      "cap_drop": [
        "ALL"
      ],
      "security_opt": [
        "no-new-privileges:true"
      ],
      "pids_limit": 512,
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
    }
  },
  "networks": {
    "workhub-staging": {
      "external": true,
      "name": "workhub-staging"
    }
  },
  "volumes": {
    "workhub-staging-wbsaleshub-data": {
      "external": true,
      "name": "workhub-staging-wbsaleshub-data"
    }
  }
}'
proxy_file='{
  "services": {
    "wbsaleshub-staging-proxy": {
      "image": "haproxy:2.6",
      "container_name": "wbsaleshub-staging-proxy",
      "restart": "unless-stopped",
      "profiles": [
        "staging"
      ],
      "command": [
        "haproxy",
        "-f",
        "/etc/workhub/haproxy.cfg"
      ],
      "ports": [
        {
          "target": 14091,
          "published": "14091",
          "host_ip": "127.0.0.1",
          "protocol": "tcp"
        }
      ],
      "volumes": [
        {
          "type": "bind",
          "source": "../proxy/wbsaleshub-staging",
          "target": "/etc/workhub",
          "read_only": true
        }
      ],
      "networks": [
        "workhub-staging"
      ],
      "labels": {
        "workhub.hub": "wbsaleshub",
        "workhub.stack": "staging",
        "workhub.role": "proxy"
      }
    }
  },
  "networks": {
    "workhub-staging": {
      "external": true,
      "name": "workhub-staging"
    }
  }
}'
state="$HOME/.workhub"
compose_dir="$state/compose"
env_dir="$state/env"
secrets_dir="$state/secrets"
proxy_dir="$state/proxy/$base"
compose() { (cd "$compose_dir" && docker compose "$@"); }
exists() { docker container inspect "$1" >/dev/null 2>&1; }
running() { [ "$(docker container inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }
# The .env naming every Compose file and every stack's profile (run with the compose lock held).
publish_files() {
  local files profiles
  files=$(cd "$compose_dir" && for file in *.yml; do [ ! -e "$file" ] || printf '%s\n' "$file"; done | paste -sd: -) || true
  profiles=$(cd "$compose_dir" && sed -n 's/.*"\{0,1\}workhub\.stack"\{0,1\}: "\([^"]*\)".*/\1/p' ./*.yml 2>/dev/null \
    | sort -u | paste -sd, -) || true
  printf 'COMPOSE_PROJECT_NAME=workhub\nCOMPOSE_FILE=%s\nCOMPOSE_PROFILES=%s\n' "$files" "$profiles" >"$compose_dir/.env.tmp"
  mv "$compose_dir/.env.tmp" "$compose_dir/.env"
}
# put_file NAME TEXT: the Compose file NAME.yml holds TEXT; drop_file NAME: it is gone. Under a
# lock, since the hubs of a stack deploy side by side.
put_file() {
  mkdir -p "$compose_dir"
  (
    flock 8
    printf '%s\n' "$2" >"$compose_dir/$1.yml.tmp"
    mv "$compose_dir/$1.yml.tmp" "$compose_dir/$1.yml"
    publish_files
  ) 8>>"$compose_dir/.lock"
}
drop_file() {
  [ -d "$compose_dir" ] || return 0
  (
    flock 8
    rm -f "$compose_dir/$1.yml"
    publish_files
  ) 8>>"$compose_dir/.lock"
}
# The slot whose container the proxy's config names (what it serves, even after a reboot); none
# before the first deploy.
live_slot() {
  case "$(sed -n "s/^$live_mark//p" "$proxy_dir/haproxy.cfg" 2>/dev/null | head -n 1)" in
    blue) echo blue ;; green) echo green ;;
  esac
}
# remove_slot CONTAINER: the container, its Compose file, env file and secret files are gone.
remove_slot() {
  docker rm -f "$1" >/dev/null 2>&1 || true
  drop_file "$1"
  rm -rf "${env_dir:?}/$1.env" "${secrets_dir:?}/$1"
}

slot_file() { if [ "$1" = blue ]; then printf '%s' "$compose_blue"; else printf '%s' "$compose_green"; fi; }

drift() { printf '%s%s\n' "$drift_mark" "$*"; }
label() { docker container inspect --format "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null; }
# check CONTAINER FILE WHAT: CONTAINER runs as the Compose file FILE (its text) says; WHAT names it.
check() {
  local status
  if [ "$(cat "$compose_dir/$1.yml" 2>/dev/null)" != "$2" ]; then
    drift "$3 $1: its Compose file ~/.workhub/compose/$1.yml is not the one the last deploy wrote"
  fi
  if ! exists "$1"; then
    drift "$3 $1 is gone"
    return 0
  fi
  status=$(docker container inspect --format '{{.State.Status}}' "$1")
  [ "$status" = running ] || drift "$3 $1 is not running (it is $status)"
  # Compose's fingerprint of the service from its own file alone, so no other hub's file can spoil it.
  if [ "$(compose -f "$1.yml" config --hash "$1" 2>/dev/null | awk '{ print $2 }')" \
    != "$(label "$1" com.docker.compose.config-hash)" ]; then
    drift "$3 $1 was not made from its Compose file (started or changed by hand?)"
  fi
}
live=$(live_slot)
if [ -z "$live" ]; then
  drift "the proxy's config ~/.workhub/proxy/$base/haproxy.cfg names no live slot"
else
  check "$base-$live" "$(slot_file "$live")" "the live container"
  if exists "$base-$live"; then
    actual=$(docker container inspect --format '{{.Config.Image}}' "$base-$live")
    [ "$actual" = "$image" ] || drift "the live container $base-$live runs $actual, not $image"
  fi
fi
check "$proxy" "$proxy_file" "the proxy"
