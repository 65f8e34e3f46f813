#!/usr/bin/env bash
# cm-healthd under systemd-socket-activate with a NOTIFY_SOCKET listener: READY=1 arrives;
# the first connection starts the daemon and is served on the passed socket; SIGHUP with a
# broken config keeps the old config and logs file:line:column; kill -9 and a restart keep
# every transition; SIGTERM exits cleanly within 2 s.
. "$(dirname "$0")/lib.sh"

mkdir -p "$T/etc" "$T/state" "$T/run" "$T/nginx"
PORT=$(( 20000 + RANDOM % 20000 ))
nginx_conf "$T/nginx" 127.0.0.1 "$PORT"
start_bg nginx nginx -c "$T/nginx/nginx.conf" -p "$T/nginx"
wait_for 10 "nginx" curl -sf "http://127.0.0.1:$PORT/"

cat > "$T/etc/cluster.toml" <<CONF
[cluster]
name = "lifecycle"
[[node]]
name = "local"
address = "127.0.0.1"
CONF
cat > "$T/etc/healthd.toml" <<CONF
[defaults]
interval = "200ms"
timeout = "100ms"
rise = 1
fall = 1
[metrics]
enabled = false
[[check]]
name = "web"
type = "http"
port = $PORT
CONF
cp "$T/etc/healthd.toml" "$T/healthd.good.toml"

start_bg notify python3 "$(dirname "$0")/notify-listener.py" "$T/notify.sock"
wait_for 5 "notify listener" test -S "$T/notify.sock"

start_activator() {
  # systemd-socket-activate passes the daemon only the variables named with -E.
  start_bg "$1" systemd-socket-activate -l "$T/run/healthd.sock" --fdname=control -E NOTIFY_SOCKET="$T/notify.sock" \
    "$BIN/cm-healthd" $(healthd_args)
  wait_for 5 "socket activator listening" test -S "$T/run/healthd.sock"
}
daemon_pid() { pgrep -f "^$BIN/cm-healthd .*$T/run" | head -1; }

log "socket activation: the daemon must not run before the first connection"
start_activator activator
sleep 0.5   # a time in which nothing may happen (no condition to wait for): the daemon must not start
[ -z "$(daemon_pid)" ] || fail "cm-healthd started before anyone connected"
cmctl status --config-dir "$T/etc" > "$T/status.out" 2>&1 || true
grep -q 'cm-healthd *running' "$T/status.out" || { cat "$T/status.out"; fail "first connection was not served by the activated daemon"; }
pass "first connection started the daemon and was served on the passed socket"
wait_for 5 "READY=1" grep -q 'READY=1' "$T/notify.log"
pass "READY=1 arrived: $(grep -m1 READY=1 "$T/notify.log")"
grep -q 'socket.*fd 3 from systemd\|from systemd' "$T/activator.log" || fail "daemon did not use the passed fd"

wait_for 10 "web@local up" check_state web@local up
kill -TERM "$PID_nginx"; wait_for 5 "web@local down" check_state web@local down
start_bg nginx2 nginx -c "$T/nginx/nginx.conf" -p "$T/nginx"; wait_for 5 "web@local up again" check_state web@local up
before=$(cmctl health history --json | jq length)
[ "$before" -ge 3 ] || fail "expected at least 3 transitions, have $before"

log "SIGHUP with a broken config"
printf '[defaults]\ninterval = "1s"\n[[check]]\nname = "web"\ntype = "http"\nport = 70000\n' > "$T/etc/healthd.toml"
pid=$(daemon_pid)
kill -HUP "$pid"
wait_for 5 "reload refusal logged" grep -q 'healthd.toml:6:[0-9]*: .*port' "$T/activator.log"
grep 'healthd.toml:6:' "$T/activator.log" | head -1
wait_for 5 "RELOADING=1 then READY=1" bash -c "grep -q RELOADING=1 '$T/notify.log' && [ \$(grep -c READY=1 '$T/notify.log') -ge 2 ]"
cmctl health show web@local --json | jq -e '.check.intervalMs == 200' >/dev/null || fail "old config not in force after a bad reload"
kill -0 "$pid" || fail "daemon died on a bad reload"
pass "bad config refused with file:line:column, old config stays"

cp "$T/healthd.good.toml" "$T/etc/healthd.toml"
log "kill -9, then restart: history must survive"
kill -KILL "$pid"; wait "$PID_activator" 2>/dev/null || true
start_activator activator2
after=$(cmctl health history --json | jq length)
[ "$after" -ge "$before" ] || fail "history shrank from $before to $after after kill -9"
pass "kill -9 and restart kept all $before transitions (now $after)"

log "SIGTERM must stop the daemon cleanly within 2 s"
wait_for 10 "daemon running" bash -c "[ -n \"\$(pgrep -f '^$BIN/cm-healthd .*$T/run')\" ]"
pid=$(daemon_pid)
t0=$(now_ms); kill -TERM "$pid"
while kill -0 "$pid" 2>/dev/null; do
  [ $(( $(now_ms) - t0 )) -lt 2000 ] || fail "still running 2 s after SIGTERM"
  sleep 0.05
done
rc=0; wait "$PID_activator2" || rc=$?
log "exited after $(( $(now_ms) - t0 )) ms with status $rc"
[ "$rc" -eq 0 ] || fail "exit status $rc after SIGTERM"
grep -q STOPPING=1 "$T/notify.log" || fail "no STOPPING=1"
pass "SIGTERM: STOPPING=1, clean exit within 2 s"
