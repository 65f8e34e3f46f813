# Helpers for the integration tests: temp dirs, network namespaces, real peers (nginx,
# prometheus-node-exporter), the daemon under test, waiting on conditions with a deadline.
# Everything a test starts is recorded and removed on exit, even on failure.
# shellcheck shell=bash
set -euo pipefail

BIN=${1:?usage: $0 BIN_DIR}
BIN=$(cd "$BIN" && pwd)
TEST=$(basename "$0" .sh)
T=$(mktemp -d "/tmp/cm-$TEST.XXXXXX"); chmod 755 "$T"
SUFFIX=$$
PIDS=(); NETNS=()

log() { printf '[%s %s] %s\n' "$TEST" "$(date +%T.%3N)" "$*"; }
fail() { log "FAIL: $*"; dump_logs; exit 1; }
pass() { log "PASS: $*"; }

dump_logs() {
  local f
  for f in "$T"/*.log; do [ -f "$f" ] || continue; echo "----- $f (last 30 lines)"; tail -n 30 "$f"; done
}

cleanup() {
  local pid ns
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.2
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for ns in "${NETNS[@]}"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
# Under set -e a command that fails outside a condition (a curl in a "$(…)" with pipefail, say)
# ends the test: say which one and where, instead of stopping without a word.
trap 'log "FAIL: ${BASH_SOURCE[0]##*/} line $LINENO: exit status $?: $BASH_COMMAND"; dump_logs' ERR

# wait_for SECONDS DESCRIPTION COMMAND...: polls every 100 ms until COMMAND succeeds. COMMAND is
# run again each time: wrap a "$(...)" comparison in a function, or it is evaluated only once.
wait_for() {
  local limit=$1 what=$2; shift 2
  local deadline=$(( $(date +%s%N) + limit * 1000000000 ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s%N)" -lt "$deadline" ] || fail "timed out after ${limit}s waiting for: $what"
    sleep 0.1
  done
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# A LAN: one namespace holding a bridge, and hosts attached to it by veth, each in its own
# namespace with one address. Nothing is added to the root namespace's network.
lan_create() {
  LAN="cm-lan-$SUFFIX"; NETNS+=("$LAN")
  ip netns add "$LAN"
  ip -n "$LAN" link set lo up
  ip -n "$LAN" link add br0 type bridge
  ip -n "$LAN" link set br0 up
}

# host_create NAME ADDRESS/PREFIX → namespace "cm-NAME-SUFFIX" (echoed)
host_create() {
  local name=$1 addr=$2 ns="cm-$1-$SUFFIX" i=${#NETNS[@]}
  NETNS+=("$ns")
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$LAN" link add "v$i" type veth peer name eth0 netns "$ns"
  ip -n "$LAN" link set "v$i" master br0 up
  ip -n "$ns" addr add "$addr" dev eth0
  ip -n "$ns" link set eth0 up
}
ns_of() { echo "cm-$1-$SUFFIX"; }

# start_bg NAME COMMAND...: runs in the background, output to $T/NAME.log, records the PID.
start_bg() {
  local name=$1; shift
  "$@" > "$T/$name.log" 2>&1 &
  PIDS+=($!)
  eval "PID_${name//[^A-Za-z0-9]/_}=$!"
}

# reload_bg NAME: SIGHUP to a daemon start_bg started, and wait until its log says the new
# configuration is in force (a busy machine takes longer than any fixed sleep).
# took_over_after_hold VIPD_LOG: cm-vipd's last takeover (backup -> master) came while its
# preemption was not held, and it had been held before (preempt_after_sync).
took_over_after_hold() {
  awk '/preemption held/ { h = NR } /preemption allowed again/ { a = NR }
       /backup -> master/ { b = NR; ok = (h > 0 && a > h) } END { exit !(b && ok) }' "$1"
}

reload_bg() {
  local name=$1 pid log n
  pid=$(eval echo "\$PID_${name//[^A-Za-z0-9]/_}"); log="$T/$name.log"
  n=$(grep -c "configuration reloaded\|reload refused" "$log" || true)
  kill -HUP "$pid"
  wait_for 20 "$name to reload" bash -c "[ \$(grep -c 'configuration reloaded\|reload refused' '$log') -gt $n ]"
  [ "$(grep "configuration reloaded\|reload refused" "$log" | tail -1 | grep -c "reload refused")" = 0 ] || fail "$name refused the new configuration: $(grep -A3 "reload refused" "$log" | tail -4)"
}

# nginx_conf DIR ADDRESS PORT: a minimal nginx answering "ok" on /.
nginx_conf() {
  local dir=$1 addr=$2 port=$3
  mkdir -p "$dir"
  cat > "$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
daemon off;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir; uwsgi_temp_path $dir; scgi_temp_path $dir;
  server { listen $addr:$port; location / { return 200 "ok\n"; } location /metrics { root $dir/www; } }
}
CONF
}

# The daemon under test with everything under $T.
healthd_args() { echo --config-dir "$T/etc" --state-dir "$T/state" --runtime-dir "$T/run" --log-target stderr; }
cmctl() { "$BIN/cmctl" "$@" --runtime-dir "$T/run"; }

# check_state ID STATE: true when cmctl shows check instance ID in STATE.
check_state() {
  cmctl health list --json 2>/dev/null | jq -e --arg id "$1" --arg s "$2" 'map(select(.id == $id and .state == $s)) | length == 1' >/dev/null
}
