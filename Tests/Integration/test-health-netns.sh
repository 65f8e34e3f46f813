#!/usr/bin/env bash
# Three node namespaces run real nginx and prometheus-node-exporter; cm-healthd runs in a
# master namespace. Stopping one node's nginx must take web@node002 down within
# fall × interval (+1 s), bringing it back must take it up again, a subscriber must see both
# transitions in order, and metrics for all three nodes must be queryable.
. "$(dirname "$0")/lib.sh"

lan_create
host_create master 10.199.7.1/24
for i in 1 2 3; do host_create "node00$i" "10.199.7.1$i/24"; done

log "starting nginx and prometheus-node-exporter in each node namespace"
for i in 1 2 3; do
  nginx_conf "$T/nginx$i" "10.199.7.1$i" 80
  start_bg "nginx$i" ip netns exec "$(ns_of node00$i)" nginx -c "$T/nginx$i/nginx.conf" -p "$T/nginx$i"
  start_bg "exporter$i" ip netns exec "$(ns_of node00$i)" prometheus-node-exporter --web.listen-address="10.199.7.1$i:9100" \
    --collector.disable-defaults --collector.cpu --collector.meminfo --collector.loadavg --collector.netdev --collector.diskstats --collector.filesystem
done

mkdir -p "$T/etc" "$T/state" "$T/run"
cat > "$T/etc/cluster.toml" <<CONF
[cluster]
name = "itest"
[[network]]
name = "nodes"
cidr = "10.199.7.0/24"
[[master]]
name = "master1"
address = "10.199.7.1"
[[node]]
name = "node001"
address = "10.199.7.11"
groups = ["web"]
[[node]]
name = "node002"
address = "10.199.7.12"
groups = ["web"]
[[node]]
name = "node003"
address = "10.199.7.13"
groups = ["web"]
CONF
cat > "$T/etc/healthd.toml" <<CONF
[defaults]
interval = "1s"
timeout = "500ms"
rise = 2
fall = 2
[metrics]
interval = "2s"
timeout = "1s"
[[check]]
name = "ping"
type = "icmp"
[[check]]
name = "web"
type = "http"
port = 80
expect_body = "ok"
nodes = ["group:web"]
[[check]]
name = "exporter"
type = "tcp"
port = 9100
CONF

log "starting cm-healthd in the master namespace"
start_bg healthd ip netns exec "$(ns_of master)" "$BIN/cm-healthd" $(healthd_args)
wait_for 20 "cm-healthd socket" test -S "$T/run/healthd.sock"
for i in 1 2 3; do
  for c in web ping exporter; do wait_for 20 "$c@node00$i up" check_state "$c@node00$i" up; done
done
pass "all 9 check instances up"

# Events on standard output, one JSON object a line; "watching …" on standard error once subscribed.
"$BIN/cmctl" health watch --json --runtime-dir "$T/run" > "$T/watch.log" 2> "$T/watch-err.log" & PIDS+=($!)
wait_for 5 "watch subscribed" grep -q "^watching" "$T/watch-err.log"

log "stopping nginx on node002 (SIGTERM to its master process)"
kill -TERM "$(cat "$T/nginx2/nginx.pid")"
t0=$(now_ms)
wait_for 10 "web@node002 down" check_state web@node002 down
t1=$(now_ms); took=$((t1 - t0))
log "web@node002 down after ${took} ms (limit: fall 2 × interval 1 s + 1 s = 3000 ms)"
[ "$took" -le 3000 ] || fail "detection took ${took} ms"
check_state web@node001 up && check_state web@node003 up || fail "other nodes' web checks must stay up"
summary=$(cmctl health summary --json)
jq -e '.down == 1 and .up == 8 and .unknown == 0 and (.nodes | length) == 3' <<<"$summary" >/dev/null &&
  jq -e '[.nodes[] | select(.down > 0) | .node] == ["node002"]' <<<"$summary" >/dev/null || fail "cmctl health summary: $summary"
pass "node002's nginx stop detected in ${took} ms"

log "starting nginx on node002 again"
start_bg nginx2b ip netns exec "$(ns_of node002)" nginx -c "$T/nginx2/nginx.conf" -p "$T/nginx2"
wait_for 10 "web@node002 up" check_state web@node002 up
pass "recovery detected"

wait_for 5 "both events at the subscriber" bash -c "[ \$(grep -c '\"web@node002\"' '$T/watch.log') -ge 2 ]"
order=$(jq -r 'select(.id == "web@node002") | .to' "$T/watch.log" | tr '\n' ' ')
[ "$order" = "down up " ] || fail "subscriber saw web@node002 transitions '$order', expected 'down up '"
pass "subscriber received down then up, in order"

log "waiting for two metric scrapes of every node"
for i in 1 2 3; do
  wait_for 20 "cpu_percent for node00$i" bash -c \
    "'$BIN/cmctl' metrics node00$i --since 5m --json --runtime-dir '$T/run' | jq -e '[.series[] | select(.name == \"cpu_percent\") | .points | length] | add > 0'"
  cmctl metrics "node00$i" --since 5m --json | jq -e '[.series[].name] | (index("mem_used_bytes") != null) and (index("load1") != null) and (index("net_rx_bytes_per_s") != null)' >/dev/null \
    || fail "node00$i lacks memory/load/network series"
done
cmctl metrics node001 --since 5m
pass "metrics for all three nodes are queryable"

cmctl health history --limit 10
cmctl health history web@node002 --json | jq -e 'length >= 2' >/dev/null || fail "history lacks web@node002 transitions"
pass "history holds the transitions"
