#!/usr/bin/env bash
# A node keeps its shared root through a master failure. Two masters in network namespaces on
# one bridge, each with its own glusterd (private /var/lib/glusterd, /run, logs), nfs-ganesha
# (GLUSTER backend, its own rpcbind), cm-vipd, cm-replicad and cm-pxed; one volume replicated
# on both (as cmctl master clone makes it); the VIP on m1. A QEMU node (software emulation)
# PXE boots Debian from the VIP and runs, every 100 ms, a write to /shared and a read of files
# of its root, noting each with its uptime.
#  1. The node reaches multi-user on its root from VIP:/images/base/1.
#  2. m1's link goes down: m2 takes the VIP (adverts every 50 ms), its ganesha serves the node
#     from its own brick. The node's loop goes on with 0 I/O errors; the longest stall is
#     printed with the VIP's part (the goal is 2 s; the engines alone did 1.14 s in TESTBED.md)
#     and must stay under 5 s.
#  3. m1 left the active role: cm-replicad restarted its ganesha (which takes an epoch of its
#     own from cmctl master ganesha-epoch at each start), so that it holds no client state of
#     before when the node comes back to it.
#  4. m1's link comes back: m1 (higher priority, preempt_after_sync) takes the VIP back only
#     once its cm-replicad finds the volume whole (m2's writes healed onto m1's brick, m1's
#     restarted ganesha connected to both bricks); the node goes on with 0 I/O errors and the
#     volume has no split brain.
#  5. Every process of m1 is killed (kill -9: glusterd, its brick, ganesha, the daemons), as a
#     crash would: m2 takes the VIP and the node goes on with 0 I/O errors.
#  6. m2 holds the node's inventory entry (the replicated state).
. "$(dirname "$0")/lib.sh"
for c in qemu-system-x86_64 mmdebstrap glusterd glusterfs ganesha.nfsd rpcbind jq ssh; do
  command -v $c >/dev/null || fail "$c is not installed (scripts/test installs it)"
done
CACHE=${CM_IMAGE_CACHE:-/var/cache/clustermaker-test/images}
mkdir -p "$CACHE"

NET=10.181.0
VIP=$NET.100
lan_create
host_create m1 $NET.11/24
host_create m2 $NET.12/24
host_create c1 $NET.50/24     # where the test logs in to the node from
ip -n "$LAN" tuntap add dev tap0 mode tap; ip -n "$LAN" link set tap0 master br0 up

unmount_volumes() { for m in m1 m2; do umount -l "$T/$m/volume" 2>/dev/null || true; done; }
trap 'unmount_volumes; cleanup' EXIT
gl() { local m=$1; shift; gluster --glusterd-sock="$T/$m/g/run/glusterd.socket" --mode=script "$@"; }
mc() { local m=$1; shift; "$BIN/cmctl" "$@" --runtime-dir "$T/$m/run"; }

log "1. two masters: glusterd, a replicated volume, ganesha, cm-vipd, cm-replicad, cm-pxed"
for m in m1 m2; do
  mkdir -p "$T/$m/g/lib" "$T/$m/g/run" "$T/$m/g/log" "$T/$m/brick" "$T/$m/etc" "$T/$m/run" "$T/$m/state" "$T/$m/nfs"
  ip netns exec "$(ns_of $m)" unshare -m --propagation private sh -c "mount --bind $T/$m/g/lib /var/lib/glusterd && \
    mount --bind $T/$m/g/run /run && mount --bind $T/$m/g/log /var/log/glusterfs && exec glusterd -N --log-file=$T/$m/glusterd.log" \
    > "$T/glusterd-$m.log" 2>&1 &
  PIDS+=($!)
done
wait_for 30 "glusterd on m1" gl m1 volume list
wait_for 30 "glusterd on m2" gl m2 volume list
gl m1 peer probe $NET.12 >/dev/null
wait_for 30 "m2 in m1's pool" bash -c "gluster --glusterd-sock='$T/m1/g/run/glusterd.socket' --mode=script pool list | grep -q '$NET.12.*Connected'"
gl m1 volume create clustermaker replica 2 $NET.11:"$T/m1/brick" $NET.12:"$T/m2/brick" force >/dev/null
gl m1 volume set clustermaker cluster.quorum-type none >/dev/null
gl m1 volume set clustermaker cluster.favorite-child-policy mtime >/dev/null

ssh-keygen -q -t ed25519 -N "" -C clustermaker@test -f "$T/id_ed25519"
conf() {
  local m=$1 prio=$2 addr=$3
  mkdir -p "$T/$m/etc/ssh"; cp "$T/id_ed25519" "$T/id_ed25519.pub" "$T/$m/etc/ssh/"
  printf '[cluster]\nname = "failover"\n[[master]]\nname = "m1"\naddress = "%s"\n[[master]]\nname = "m2"\naddress = "%s"\n' $NET.11 $NET.12 > "$T/$m/etc/cluster.toml"
  cat > "$T/$m/etc/vipd.toml" <<CONF
[[instance]]
name = "VI_1"
interface = "eth0"
vrid = 81
priority = $prio
advert_interval = "50ms"
preempt_after_sync = true
addresses = ["$VIP/24"]
CONF
  cat > "$T/$m/etc/replicad.toml" <<CONF
[volume]
address = "$addr"
brick = "$T/$m/brick"
mount = "$T/$m/volume"
glusterd_socket = "$T/$m/g/run/glusterd.socket"
ping_timeout = "1s"
[nfs]
clients = ["$NET.0/24"]
exports_file = "$T/$m/exports.conf"
ganesha_pid_file = "$T/$m/ganesha.pid"
scan_interval = "500ms"
[state]
master = "$m"
[[database]]
name = "pxed"
path = "$T/$m/state/pxed/pxed.sqlite"
CONF
  cat > "$T/$m/etc/pxed.toml" <<CONF
[pxed]
mode = "dhcp"
interface = "eth0"
server_address = "$addr"
boot_address = "$VIP"
tftp_port = 0
boot_dir = "$T/$m/boot"
images_dir = "$T/$m/volume/images"
follow_vipd = true
[dhcp]
network = "$NET.0/24"
range = ["$NET.150", "$NET.199"]
domain = "cluster"
[[group]]
name = "default"
image = "base"
kernel_args = "console=ttyS0"
CONF
  cat > "$T/$m/ganesha.conf" <<CONF
NFS_CORE_PARAM { Protocols = 4; Enable_NLM = false; Enable_RQUOTA = false; }
NFSV4 { Graceless = true; RecoveryBackend = fs; Minor_Versions = 1, 2; Allow_Numeric_Owners = true; Only_Numeric_Owners = true; }
%include "$T/$m/exports.conf"
CONF
}
conf m1 150 $NET.11; conf m2 100 $NET.12
for m in m1 m2; do
  # In the master's network namespace and the host's mount namespace: the FUSE mount is seen by all.
  for d in vipd replicad pxed; do
    start_bg "$d-$m" nsenter --net=/run/netns/"$(ns_of $m)" "$BIN/cm-$d" --config-dir "$T/$m/etc" --state-dir "$T/$m/state/$d" \
      --runtime-dir "$T/$m/run" --log-target stderr
  done
done
mounted() { grep -q " $T/$1/volume fuse.glusterfs" /proc/mounts; }
wait_for 60 "m1's volume is mounted" mounted m1
wait_for 60 "m2's volume is mounted" mounted m2
role_is() { mc "$1" vip status --json 2>/dev/null | jq -e --arg r "$2" '.role == $r' >/dev/null; }
wait_for 15 "m1 is active" role_is m1 active
wait_for 15 "m2 is standby" role_is m2 standby
for m in m1 m2; do
  wait_for 20 "$m's exports are written" test -s "$T/$m/exports.conf"
  # As nfs-ganesha.service with scripts/setup's /etc/ganesha/nfs-ganesha: each start takes its
  # epoch from cmctl master ganesha-epoch; started again when it exits (cm-replicad stops it
  # when the master leaves the active role), as systemctl restart would.
  ip netns exec "$(ns_of $m)" unshare -m --propagation private sh -c "mount -t tmpfs tmpfs /run && mkdir -p /run/rpcbind && \
    mkdir -p $T/$m/nfs/ganesha && mount --bind $T/$m/nfs /var/lib/nfs && (rpcbind -f -w &) && sleep 0.3 && \
    while :; do ganesha.nfsd -F -E \$($BIN/cmctl master ganesha-epoch --config-dir $T/$m/etc --state-dir $T/$m/state) \
      -f $T/$m/ganesha.conf -L $T/$m/ganesha.log -p $T/$m/ganesha.pid; sleep 0.2; done" > "$T/ganesha-$m.out" 2>&1 &
  PIDS+=($!)
  wait_for 30 "ganesha listens on $m" ip netns exec "$(ns_of $m)" bash -c "exec 3<>/dev/tcp/127.0.0.1/2049"
done

log "the image (mmdebstrap; packages and the base root cached in $CACHE)"
mc m1 image build base --reuse-base-for 168 --images-dir "$T/m1/volume/images" --work-dir "$CACHE" --config-dir "$T/m1/etc" > "$T/build.out" 2>&1 \
  || fail "image build failed: $(tail -5 "$T/build.out")"
for m in m1 m2; do wait_for 20 "$m exports base@1" grep -q 'Pseudo = "/images/base/1"' "$T/$m/exports.conf"; done

MAC=52:54:00:81:00:01
mc m1 node add $MAC --name node001 >/dev/null
ip netns exec "$LAN" timeout 1200 qemu-system-x86_64 -m 1024 -nographic -no-reboot -boot n \
  -netdev "tap,id=n0,ifname=tap0,script=no,downscript=no" -device "e1000,netdev=n0,mac=$MAC" </dev/null > "$T/vm.log" 2>&1 &
PIDS+=($!)
start=$(now_ms)
wait_for 600 "node001 reaches a login prompt on its shared root" grep -aq "node001 login:" "$T/vm.log"
grep -aq "ClusterMaker: root is $VIP:/images/base/1" "$T/vm.log" || fail "node001 did not mount its root from the VIP"
pass "node001 booted Debian to multi-user on VIP:/images/base/1 in $(( ($(now_ms) - start) / 1000 )) s"

A=$(mc m1 node list --json | jq -r '.[] | select(.name == "node001") | .address')
# Under emulation, with other tests beside it, the node's sshd can take a while to answer: each
# command is tried three times, 30 s each.
on() {
  local i
  for i in 1 2 3; do
    ip netns exec "$(ns_of c1)" ssh -i "$T/id_ed25519" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
      -o LogLevel=ERROR -o ConnectTimeout=30 "root@$A" "$@" && return 0
    [ $? -eq 255 ] || return 1   # the command failed, not ssh
    sleep 1
  done
  return 1
}
wait_for 120 "root logs in on node001" on true
# The loop: every 100 ms a write to /shared (read-write, on the volume) and a read of a root
# file (read-only, the image), with the shell's builtins only (under emulation every program
# started costs a lot): "ok START END" in the node's uptime, or "err START".
on "nohup sh -c 'while :; do read -r s _ < /proc/uptime; if echo \$s >> /shared/loop && read -r x < /etc/os-release; then read -r e _ < /proc/uptime; echo ok \$s \$e; else echo err \$s; fi; sleep 0.1; done' > /run/loop.log 2>&1 < /dev/null &"
sleep 5
[ "$(on "grep -c ^ok /run/loop.log")" -ge 10 ] || fail "the node's loop does not run: $(on cat /run/loop.log | tail -3)"

# measure WHAT NEW_ACTIVE COMMAND...: runs COMMAND (the failure) and, 10 s later, reads the node's
# loop: operations, errors, and the longest time between two successful operations' ends from
# the last one before COMMAND, less the loop's own period (its median gap: the sleep and the
# shell under emulation). The goal (<= 2 s) is a benchmark's to judge over many runs; the test
# fails on 5 s, a regression such as GlusterFS's default 42 s ping-timeout or the NFS client's
# default 60 s timeo.
measure() {
  local what=$1 to=$2 limit=${TAKEOVER_LIMIT:-10}; shift 2
  local t0 from took stats oks errs gap at period stall
  t0=$(on "cut -d' ' -f1 /proc/uptime")
  "$@"
  from=$(now_ms)
  wait_for "$limit" "$to takes the VIP" role_is "$to" active
  took=$(( $(now_ms) - from ))
  sleep 10
  on "cat /run/loop.log" > "$T/loop.log"
  stats=$(awk -v t0="$t0" '$1 == "ok" && $3 < t0 { p = $3 } $2 >= t0 { if ($1 == "err") e++; if ($1 == "ok") { if (p != "" && $3 - p > g) { g = $3 - p; at = p } p = $3; n++ } }
    END { printf "%d %d %.2f %.2f", n, e, g, at - t0 }' "$T/loop.log")
  read -r oks errs gap at <<< "$stats"
  period=$(awk 'NR > 1 && $1 == "ok" { print $3 - p } $1 == "ok" { p = $3 }' "$T/loop.log" | sort -n | awk '{ a[NR] = $1 } END { printf "%.2f", a[int((NR + 1) / 2)] }')
  stall=$(awk -v g="$gap" -v p="$period" 'BEGIN { printf "%.2f", g - p }')
  log "$what: $oks operations ok, $errs errors; longest gap $gap s (from $at s after), the loop's period $period s: stall $stall s (goal <= 2 s: $(awk -v s="$stall" 'BEGIN { print (s <= 2.0) ? "met" : "NOT met" }')); $to active $took ms after"
  [ "$oks" -ge 20 ] || fail "$what: the node did only $oks operations after it"
  [ "$errs" = 0 ] || fail "$what: $errs I/O errors on the node"
  awk -v s="$stall" 'BEGIN { exit !(s <= 5.0) }' || fail "$what: the node stalled $stall s"
  pass "$what: the node's root and /shared went on from $to with 0 errors, longest stall $stall s (VIP moved in $took ms)"
}

log "2. failures of m1"
measure "m1's link down" m2 ip -n "$LAN" link set v1 down     # m1's port on the bridge
# m1 left the active role: its ganesha starts afresh, so that the node does not come back to
# its own client state of before the failure (which it recovered from one open file every 5 s).
wait_for 30 "m1's ganesha restarted" grep -q "stopped ganesha (PID [0-9]*) for its supervisor to start it afresh: this master left the active role" "$T/replicad-m1.log"
wait_for 60 "m1's ganesha listens again" ip netns exec "$(ns_of m1)" bash -c "exec 3<>/dev/tcp/127.0.0.1/2049"
[ "$(grep -c "Ganesha Version" "$T/m1/ganesha.log")" -ge 2 ] || fail "m1's ganesha did not start again"
e1=$(sed -n 's/.* : epoch \([0-9a-f]*\) : .*Ganesha Version.*/\1/p' "$T/m1/ganesha.log" | tail -1)
e2=$(sed -n 's/.* : epoch \([0-9a-f]*\) : .*Ganesha Version.*/\1/p' "$T/m2/ganesha.log" | tail -1)
# In hex in ganesha's log: the master's place in cluster.toml (m1 first), then how many times
# its ganesha started (m2's twice when it won the start-up race and handed over to m1).
n1=$(grep -c "Ganesha Version" "$T/m1/ganesha.log"); n2=$(grep -c "Ganesha Version" "$T/m2/ganesha.log")
want1=$(printf '0001%04x' "$n1"); want2=$(printf '0002%04x' "$n2")
[ "$e1" = "$want1" ] && [ "$e2" = "$want2" ] || fail "the masters' ganesha epochs are not their own: m1 $e1 (want $want1), m2 $e2 (want $want2)"
pass "m1 left the active role: its ganesha started afresh, with epoch $e1 (m1, start $n1; m2's is $e2, start $n2)"
log "3. m1's link back: m1 takes the VIP back once the volume is whole"
# Without preempt_after_sync m1 took the VIP back at once, and the node's next write to /shared
# failed with EIO: m1's ganesha, started while m2's brick was out of reach, wrote to m1's stale
# brick before its GlusterFS client was back in touch with m2's (a split brain on that file).
TAKEOVER_LIMIT=90 measure "m1's link back" m1 ip -n "$LAN" link set v1 up
took_over_after_hold "$T/vipd-m1.log" || fail "m1 took the VIP before the volume was whole: $(grep -n "preempt\|master" "$T/vipd-m1.log" | tail)"
split=$(mc m1 volume status --json | jq '[.bricks[].splitBrain // 0] | add')
[ "$split" = 0 ] || fail "the volume has $split entries in split brain after m1 took the VIP back"
why=$(grep -o 'the volume is not whole: .*' "$T/replicad-m1.log" | tail -1 || true)
pass "m1 took the VIP back after its cm-replicad found the volume whole (before: ${why:-whole at once}); no split brain"

log "4. kill -9 of every process of m1"
# m2's ganesha was restarted 5 s after m2 left the active role; it must be serving again.
wait_for 60 "m2's ganesha listens again" ip netns exec "$(ns_of m2)" bash -c "exec 3<>/dev/tcp/127.0.0.1/2049"
kill_m1() { ip netns pids "$(ns_of m1)" | xargs -r kill -KILL; }
measure "kill -9 of m1" m2 kill_m1

log "5. m2 serves the node's state"
mc m2 node list --json | jq -e '.[] | select(.name == "node001" and .state == "booted")' >/dev/null || fail "m2's inventory lacks node001"
pass "m2's inventory has node001, booted (replicated from m1)"
