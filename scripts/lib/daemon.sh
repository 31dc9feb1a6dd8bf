# shellcheck shell=bash
# Sourced by the scripts that start the test hosts' daemons (dockerd, sshd, docker-registry).

# close_inherited_fds: closes every file descriptor of this (sub)shell above 2. A daemon outlives
# the command that started it, and so does every descriptor it inherited: a `flock` on the e2e lock
# around a test run, inherited by the dockerd that run started, kept the lock held for the
# dockerd's whole life and every later run waited for it. Call it in the subshell that execs the
# daemon, after its stdin/stdout/stderr are redirected.
close_inherited_fds() {
  local fd
  for fd in "/proc/$BASHPID/fd/"*; do
    fd=${fd##*/}
    ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null
  done
  return 0
}
