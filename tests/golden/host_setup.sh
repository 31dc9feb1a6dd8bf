set -eu
server_alive_interval=60
server_alive_count_max=120
client_alive_interval=60
client_alive_count_max=120
say() { printf 'host-setup: %s\n' "$*" >&2; }
umask 077
mkdir -p "$HOME/.workhub"
chmod 700 "$HOME/.workhub"
# Once (this script runs again only when it changes): what earlier versions wrote readable by others
# (logs, build records, Compose files...) becomes the deploy user's alone. The uploaded build
# contexts keep their modes (they become the images' files), and each proxy's config stays readable
# by the proxy's user in its container; ~/.workhub (0700) keeps every other account out of both.
state="$HOME/.workhub"
if find "$state" \( -path "$state/contexts" -o -path "$state/builds/*/context" -o -path "$state/proxy" \) -prune \
  -o ! -type l -perm /077 -exec chmod go-rwx {} + 2>/dev/null; then
  say "$state (0700) and what is in it are the deploy user's alone"
else
  say "$state is 0700, but some files in it could not be made private (not the deploy user's?)"
fi
mkdir -p "$HOME/.ssh"
chmod 700 "$HOME/.ssh"
config="$HOME/.ssh/config"
touch "$config"
chmod 600 "$config"
wanted=$(mktemp)
trap 'rm -f "$wanted"' EXIT
# Keep everything outside workhub's block; write the block anew at the end.
awk '/^# BEGIN workhub$/ { skip = 1 } !skip { print } /^# END workhub$/ { skip = 0 }' "$config" >"$wanted"
printf '# BEGIN workhub\nHost *\n    ServerAliveInterval %s\n    ServerAliveCountMax %s\n# END workhub\n' \
  "$server_alive_interval" "$server_alive_count_max" >>"$wanted"
if cmp -s "$wanted" "$config"; then
  # shellcheck disable=SC2088  # a message: ~ names the deploy user's home for the reader
  say "~/.ssh/config already keeps sessions alive"
else
  cat "$wanted" >"$config"
  # shellcheck disable=SC2088  # a message: ~ names the deploy user's home for the reader
  say "~/.ssh/config: ServerAliveInterval $server_alive_interval, ServerAliveCountMax $server_alive_count_max"
fi

dropin=/etc/ssh/sshd_config.d/workhub.conf
want_sshd=$(printf 'ClientAliveInterval %s\nClientAliveCountMax %s' "$client_alive_interval" "$client_alive_count_max")
if ! sudo -n true 2>/dev/null; then
  say "no passwordless sudo for $(id -un): sshd's ClientAlive settings are left as they are"
elif [ "$(sudo -n cat "$dropin" 2>/dev/null)" = "$want_sshd" ]; then
  say "$dropin already keeps client sessions alive"
else
  printf '%s\n' "$want_sshd" | sudo -n tee "$dropin" >/dev/null
  if ! sudo -n sshd -t; then
    sudo -n rm -f "$dropin"
    say "FAILED: sshd rejected $dropin; removed it again"
    exit 1
  fi
  sudo -n systemctl reload ssh 2>/dev/null || sudo -n systemctl reload sshd 2>/dev/null \
    || say "wrote $dropin; reload sshd to apply it"
  say "$dropin: ClientAliveInterval $client_alive_interval, ClientAliveCountMax $client_alive_count_max"
fi
