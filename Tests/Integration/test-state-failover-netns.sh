#!/usr/bin/env bash
# Two masters in network namespaces, each with its own glusterd (private /var/lib/glusterd,
# /run, logs) and its own cm-vipd, cm-replicad and cm-pxed; one GlusterFS volume replicated
# on both (made here with the gluster CLI, as the clone will make it).
#  1. m1 is active: cm-replicad copies cm-pxed's inventory and leases to the volume on every
#     commit; m2 is standby and publishes nothing. A client takes a DHCP lease from m1.
#  2. Every process of m1 is killed (kill -9) while nodes are being added to it: m2 takes
#     over, restores m1's replica from its own brick before cm-pxed answers, and holds every
#     node added up to 0.25 s before the kill (the RPO goal; the test fails past 2 s); the client's
#     lease is there, and m2 answers its DHCP with the same address.
#  3. m1 comes back and preempts once its brick has m2's writes and its clients reach both
#     bricks (preempt_after_sync), not before; it restores m2's newer state first; the nodes
#     added on m2 meanwhile are all there.
#  4. Partition: the masters cannot hear each other, both become active, both take writes;
#     on heal the lower epoch yields and `cmctl master status` reports its writes as a
#     conflict, kept apart on the volume, not merged.
. "$(dirname "$0")/lib.sh"
for c in glusterd glusterfs gluster jq busybox; do command -v $c >/dev/null || fail "$c is not installed (scripts/test installs it)"; done

NET=10.179.0
VIP=$NET.100
VOL=cmstate
lan_create
host_create m1 $NET.11/24
host_create m2 $NET.12/24
host_create c1 $NET.50/24

# The FUSE mounts live in the host's mount namespace: unmounted (lazily: a killed client
# leaves "transport endpoint is not connected") before lib.sh removes $T.
unmount_volumes() { for m in m1 m2; do umount -l "$T/$m/volume" 2>/dev/null || true; done; }
trap 'unmount_volumes; cleanup' EXIT

glusterd_start() {
  local m=$1
  mkdir -p "$T/$m/g/lib" "$T/$m/g/run" "$T/$m/g/log" "$T/$m/brick"
  ip netns exec "$(ns_of "$m")" unshare -m --propagation private sh -c "mount --bind $T/$m/g/lib /var/lib/glusterd && \
    mount --bind $T/$m/g/run /run && mount --bind $T/$m/g/log /var/log/glusterfs && exec glusterd -N --log-file=$T/$m/glusterd.log" \
    > "$T/glusterd-$m.log" 2>&1 &
  PIDS+=($!)
}
gl() { local m=$1; shift; gluster --glusterd-sock="$T/$m/g/run/glusterd.socket" --mode=script "$@"; }

conf() {
  local m=$1 prio=$2 addr=$3
  mkdir -p "$T/$m/etc" "$T/$m/run" "$T/$m/state"
  cat > "$T/$m/etc/vipd.toml" <<CONF
[[instance]]
name = "VI_1"
interface = "eth0"
vrid = 79
priority = $prio
advert_interval = "100ms"
preempt_after_sync = true
addresses = ["$VIP/24"]
CONF
  cat > "$T/$m/etc/pxed.toml" <<CONF
[pxed]
mode = "dhcp"
interface = "eth0"
server_address = "$addr"
tftp_port = 0
http_port = 8079
boot_dir = "$T/$m/boot"
images_dir = "$T/$m/volume/images"
follow_vipd = true
[dhcp]
network = "$NET.0/24"
range = ["$NET.150", "$NET.199"]
[[group]]
name = "default"
CONF
  cat > "$T/$m/etc/replicad.toml" <<CONF
[volume]
name = "$VOL"
address = "$addr"
brick = "$T/$m/brick"
mount = "$T/$m/volume"
glusterd_socket = "$T/$m/g/run/glusterd.socket"
ping_timeout = "1s"
[nfs]
clients = ["$NET.0/24"]
exports_file = "$T/$m/exports.conf"
ganesha_pid_file = "$T/$m/no-ganesha.pid"
[state]
master = "$m"
interval = "100ms"
[[database]]
name = "pxed"
path = "$T/$m/state/pxed/pxed.sqlite"
CONF
  for d in vipd pxed replicad; do "$BIN/cm-$d" --check-config --config-dir "$T/$m/etc" >/dev/null || fail "$m: $d.toml does not pass --check-config"; done
}

# In the master's network namespace and the host's mount namespace (nsenter, not ip netns
# exec, which makes a mount namespace of its own): the FUSE mount is seen by everyone.
start_master() {
  local m=$1 ns; ns=$(ns_of "$1")
  for d in vipd replicad pxed; do
    start_bg "$d-$m" nsenter --net=/run/netns/"$ns" "$BIN/cm-$d" --config-dir "$T/$m/etc" --state-dir "$T/$m/state/$d" --runtime-dir "$T/$m/run" --log-target stderr
  done
}
mc() { local m=$1; shift; "$BIN/cmctl" "$@" --runtime-dir "$T/$m/run"; }
role_is() { mc "$1" vip status --json 2>/dev/null | jq -e --arg r "$2" '.role == $r' >/dev/null; }
publishing() { mc "$1" master status --json 2>/dev/null | jq -e '.state.publishing' >/dev/null; }
mounted() { grep -q " $T/$1/volume fuse.glusterfs" /proc/mounts; }
node_count() { mc "$1" node list --json | jq length; }

log "1. glusterd on each master, one volume replicated on both (as the clone makes it)"
glusterd_start m1; glusterd_start m2
wait_for 30 "glusterd on m1" gl m1 volume list
wait_for 30 "glusterd on m2" gl m2 volume list
gl m1 peer probe $NET.12 >/dev/null
wait_for 30 "m2 joins m1's pool" bash -c "gluster --glusterd-sock='$T/m1/g/run/glusterd.socket' --mode=script pool list | grep -q '$NET.12.*Connected'"
gl m1 volume create $VOL replica 2 $NET.11:"$T/m1/brick" $NET.12:"$T/m2/brick" force >/dev/null
# Two bricks without an arbiter: writes go on with one brick up (a third host as arbiter is
# what a real install adds; docs/operations.md).
gl m1 volume set $VOL cluster.quorum-type none >/dev/null
gl m1 volume set $VOL cluster.favorite-child-policy mtime >/dev/null

conf m1 150 $NET.11; conf m2 100 $NET.12
start_master m1
wait_for 15 "m1 is active" role_is m1 active
start_master m2
wait_for 15 "m2 is standby" role_is m2 standby
wait_for 60 "m1's volume is mounted" mounted m1
wait_for 60 "m2's volume is mounted" mounted m2
wait_for 15 "m1 publishes its state" publishing m1
[ -f "$T/m1/volume/state/m1/pxed.sqlite" ] || fail "m1's inventory is not on the volume"
[ ! -e "$T/m1/volume/state/m2" ] || fail "the standby m2 published state"
# The client takes a lease from the active master.
ip netns exec "$(ns_of c1)" busybox udhcpc -i eth0 -n -q -f -t 5 -s /bin/true > "$T/udhcpc-1.log" 2>&1 || fail "no DHCP lease from m1: $(cat "$T/udhcpc-1.log")"
LEASE=$(sed -n 's/.*lease of \([0-9.]*\) obtained.*/\1/p' "$T/udhcpc-1.log")
[ -n "$LEASE" ] || fail "udhcpc printed no lease: $(cat "$T/udhcpc-1.log")"
pass "m1 active publishes the inventory on the volume, m2 standby does not; the client leased $LEASE from m1"

# /etc/clustermaker follows too: a change on m1 reaches m2, whose own values (address, paths) stay.
sed -i 's/^tftp_port = 0$/tftp_port = 0\ndiscover_rate_limit = 7/' "$T/m1/etc/pxed.toml"
wait_for 10 "m2 applies m1's pxed.toml" grep -q "^discover_rate_limit = 7" "$T/m2/etc/pxed.toml"
grep -q "^server_address = \"$NET.12\"" "$T/m2/etc/pxed.toml" && grep -q "^boot_dir = \"$T/m2/boot\"" "$T/m2/etc/pxed.toml" \
  || fail "m2's own values in pxed.toml were replaced: $(cat "$T/m2/etc/pxed.toml")"
grep -q "^brick = \"$T/m2/brick\"" "$T/m2/etc/replicad.toml" && grep -q "^master = \"m2\"" "$T/m2/etc/replicad.toml" \
  || fail "m2's own values in replicad.toml were replaced: $(cat "$T/m2/etc/replicad.toml")"
"$BIN/cm-pxed" --check-config --config-dir "$T/m2/etc" >/dev/null || fail "m2's configuration does not pass after the sync"
pass "a change to m1's pxed.toml reached m2 within seconds; m2 kept its own address and paths"

# preempt_after_sync changes on a reload without restarting the instance (which would hand the VIP over).
TRANS=$(mc m1 vip status --json | jq '.instances[0].transitions')
sed -i 's/^preempt_after_sync = true$/preempt_after_sync = false/' "$T/m1/etc/vipd.toml"; reload_bg vipd-m1
sed -i 's/^preempt_after_sync = false$/preempt_after_sync = true/' "$T/m1/etc/vipd.toml"; reload_bg vipd-m1
role_is m1 active && [ "$(mc m1 vip status --json | jq '.instances[0].transitions')" = "$TRANS" ] \
  || fail "reloading preempt_after_sync moved m1's instance: $(grep -i "stopping VRRP\|->" "$T/vipd-m1.log" | tail -3)"
! grep -q "stopping VRRP instance" "$T/vipd-m1.log" || fail "reloading preempt_after_sync restarted m1's instance"
pass "preempt_after_sync changed twice on a reload: m1 stayed master, its instance untouched"

log "2. kill -9 of every process of m1 while nodes are added to it"
# The writer adds a node at a time and records when each add was acknowledged.
# writer MASTER PREFIX MACBYTE: nodes PREFIX0001… with MACs 52:54:00:MACBYTE:…
writer() {
  local m=$1 prefix=$2 byte=$3 i=0
  while [ ! -e "$T/stop-$prefix" ]; do
    i=$((i + 1))
    mc "$m" node add "$(printf '52:54:00:%s:%02x:%02x' "$byte" $((i / 256)) $((i % 256)))" --name "$prefix$(printf %04d $i)" >/dev/null 2>&1 || break
    echo "$i $(now_ms)"
  done
}
writer m1 w 79 > "$T/writer-m1.out" &
WRITER=$!
sleep 6
mc m1 master status --json > "$T/status-before-kill.json"
KILLED=$(now_ms)
ip netns pids "$(ns_of m1)" | xargs -r kill -KILL
wait $WRITER 2>/dev/null || true
LAST=$(tail -1 "$T/writer-m1.out")
log "m1's last copy before the kill took $(jq -r '.state.databases[0].copySeconds * 1000 | floor' "$T/status-before-kill.json") ms ($(jq -r '.state.databases[0].bytes' "$T/status-before-kill.json") bytes)"
[ "${LAST%% *}" -ge 5 ] || fail "only ${LAST%% *} nodes were added before the kill"
wait_for 10 "m2 takes over" role_is m2 active
TOOK=$(now_ms)
wait_for 30 "m2's cm-pxed has the restored state" grep -q "replicated state: restored m1's replica" "$T/pxed-m2.log"
SERVED=$(now_ms)
NEWEST=$(mc m2 node list --json | jq -r '[.[] | select(.name | startswith("w")) | .name[1:] | tonumber] | max')
# The recovery point: the first add missing on m2 was acknowledged WINDOW ms before the kill (0
# when none is missing). The goal is 0.25 s (0.09 s measured here); the test fails past 2 s, far
# from both the goal on a busy CI machine and a replication that stopped (6 s of adds lost).
MISSING_AT=$(awk -v n="$((NEWEST + 1))" '$1 == n { print $2 }' "$T/writer-m1.out")
WINDOW=$(( MISSING_AT ? KILLED - MISSING_AT : 0 )); [ "$WINDOW" -ge 0 ] || WINDOW=0   # acknowledged as the kill began
log "last add acknowledged on m1: #${LAST%% *}; newest on m2: #$NEWEST; the first missing was acknowledged $WINDOW ms before the kill; m2 active $((TOOK - KILLED)) ms after the kill, serving the restored state $((SERVED - KILLED)) ms after"
[ "$WINDOW" -le 2000 ] || fail "m2 lacks a node added $WINDOW ms before the kill (RPO goal 250 ms; the test allows 2000)"
[ "$WINDOW" -le 250 ] || log "NOTE: the recovery point, $WINDOW ms, missed its 250 ms goal (a busy machine?)"
ip netns exec "$(ns_of c1)" busybox udhcpc -i eth0 -n -q -f -t 5 -r "$LEASE" -s /bin/true > "$T/udhcpc-2.log" 2>&1 || fail "no DHCP answer from m2: $(cat "$T/udhcpc-2.log")"
grep -q "lease of $LEASE obtained.*from $NET.12\|lease of $LEASE obtained" "$T/udhcpc-2.log" || fail "m2 did not give the client its lease $LEASE back: $(cat "$T/udhcpc-2.log")"
grep -q "$NET.12" "$T/udhcpc-2.log" || fail "the lease did not come from m2: $(cat "$T/udhcpc-2.log")"
pass "m2 took over with every node added more than $WINDOW ms before the kill (goal: 250 ms), and gave the client its lease $LEASE again"

log "3. m1 comes back and preempts: m2's writes are restored first"
writer m2 v 7a > "$T/writer-m2.out" &
WRITER=$!
# At least 1.5 s and 5 nodes (a loaded machine adds fewer a second).
sleep 1.5
wait_for 20 "5 nodes added on m2" bash -c "[ \$(wc -l < '$T/writer-m2.out') -ge 5 ]"
touch "$T/stop-v"; wait $WRITER 2>/dev/null || true   # the add under way finishes first
# What m2 holds (the writer may stop between an add and its note of it).
ADDED_ON_M2=$(mc m2 node list --json | jq '[.[] | select(.name | startswith("v"))] | length')
[ "$ADDED_ON_M2" -ge 5 ] || fail "only $ADDED_ON_M2 nodes were added on m2"
wait_for 5 "m2 has copied its last node" publishing m2
sleep 0.3
umount -l "$T/m1/volume" 2>/dev/null || true
glusterd_start m1
wait_for 30 "glusterd on m1 again" gl m1 volume list
start_master m1
wait_for 20 "m1 is active again" role_is m1 active
wait_for 20 "m2 is standby again" role_is m2 standby
# m1's cm-vipd held preemption until its cm-replicad found the volume whole, then took over.
took_over_after_hold "$T/vipd-m1.log" || fail "m1 took the VIP before the volume was whole: $(grep -n "preempt\|master" "$T/vipd-m1.log" | head)"
grep -q "the volume is whole" "$T/replicad-m1.log" || fail "m1's cm-replicad never found the volume whole"
why=$(grep -o 'the volume is not whole: .*' "$T/replicad-m1.log" | head -1 || true)
pass "m1 held preemption until its cm-replicad found the volume whole (${why:-whole at its first look}), then took the VIP"
wait_for 60 "m1's cm-pxed restored m2's state" grep -q "replicated state: restored m2's replica" "$T/pxed-m1.log"
HAVE=$(mc m1 node list --json | jq '[.[] | select(.name | startswith("v"))] | length')
[ "$HAVE" = "$ADDED_ON_M2" ] || fail "m1 has $HAVE of the $ADDED_ON_M2 nodes added on m2 while it was away"
pass "m1 returned, restored m2's state before serving: all $ADDED_ON_M2 nodes added on m2 meanwhile are there"

log "4. partition: both active, both written; on heal m2 yields and its writes are reported"
wait_for 10 "m1 publishes" publishing m1
# m2's bridge port stops forwarding; its carrier stays up, so neither master sees a fault.
PORT=$(ip -n "$LAN" -o link show | grep -o 'v[0-9]*@' | sed -n 2p | tr -d @)
bridge -n "$LAN" link set dev "$PORT" state 0
wait_for 10 "m2 becomes active in the partition" role_is m2 active
role_is m1 active || fail "m1 left the active role during the partition"
EP2=$(mc m2 vip status --json | jq .epoch)
# GlusterFS gives up on the other brick after ping_timeout (1 s); then each side writes its own.
sleep 1.5
mc m2 node add 52:54:00:79:ee:01 --name partition-m2 >/dev/null
mc m1 node add 52:54:00:79:ee:02 --name partition-m1 >/dev/null
# Both sides' writes on the volume (m2's takeover waits for GlusterFS to give up on m1's brick).
published() { mc "$1" master status --json 2>/dev/null | jq -e '.state.publishing and .state.databases[0].pendingSince == null' >/dev/null; }
wait_for 20 "m2 publishes its partition write" published m2
wait_for 20 "m1 publishes its partition write" published m1
sleep 0.5
bridge -n "$LAN" link set dev "$PORT" state 3
wait_for 10 "one active master after the heal" bash -c "[ \$( (for m in m1 m2; do '$BIN/cmctl' vip status --json --runtime-dir '$T/'\$m/run | jq -r .role; done) | grep -c active) = 1 ]"
# m1 stays (higher priority) but its epoch is older than m2's partition epoch: it gets a new one
# (cm-vipd's split brain report, or cm-replicad asking once m2 has handed over).
epoch_above() { [ "$(mc m1 vip status --json | jq .epoch)" -gt "$EP2" ]; }
wait_for 15 "m1 takes an epoch newer than m2's partition epoch" epoch_above
# (the last answer is kept in a .log: a failure shows it)
conflict_reported() { mc m1 master status --json > "$T/master-status-json.log" 2>&1; jq -e '.state.conflicts | length == 1' "$T/master-status-json.log" >/dev/null; }
wait_for 30 "the conflict is reported" conflict_reported
mc m1 master status > "$T/master-status.txt" 2>&1 || true
cat "$T/master-status.txt"
grep -q CONFLICTS "$T/master-status.txt" || fail "cmctl master status does not show the conflict"
mc m1 node list --json | jq -e 'map(.name) | index("partition-m1") and (index("partition-m2") | not)' >/dev/null \
  || fail "m1's inventory after the heal is not its own (partition-m1 without partition-m2)"
pass "after the partition m1 kept its state under a new epoch; m2's partition writes are reported as a conflict, kept apart"
