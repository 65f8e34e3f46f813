#!/usr/bin/env bash
# Nodes PXE boot into Debian on the shared root. glusterd runs in the master's namespace (as
# Debian's glusterd.service would); cm-replicad makes the volume (one brick), mounts it and
# writes nfs-ganesha's exports (GLUSTER backend); `cmctl image build` makes the image into the
# volume (packages and the base root cached between runs in /var/cache/clustermaker-test);
# cm-pxed boots the nodes in full DHCP mode. QEMU, software emulation, 1 GiB each:
#  1. cm-replicad creates, starts and mounts the volume and writes the exports; a new revision
#     is exported at once (ganesha reloaded by SIGHUP).
#  2. Two VMs reach multi-user (a login prompt on the serial console) on base@1 over NFSv4.1
#     with a tmpfs overlay; cmctl lists both booted with base@1.
#  3. node-exporter answers on each node; root logs in over SSH with the master's key; each
#     node has its hostname, its own machine-id, the SSH host key cm-pxed keeps for it and the
#     cluster's /etc/hosts; that private key is refused to any other address.
#  4. node001 writes /shared/x and node002 reads it at once; a change to /etc on node001 stays
#     in its overlay (node002 does not see it) and `cmctl node diff node001` lists it.
#  5. `cmctl image shell` makes base@2; pinned for node002 and rebooted, node002 runs it with
#     the same host key; node001 stays on base@1, which cannot be removed while in use.
#  6. Bad input: names with "/" or ".." are refused; an unknown package fails the build with
#     apt's message and leaves no image; a damaged revision in the store keeps the old
#     exports (and says why) while the nodes keep their mounts.
. "$(dirname "$0")/lib.sh"
for c in qemu-system-x86_64 mmdebstrap glusterd glusterfs ganesha.nfsd rpcbind jq ssh; do
  command -v $c >/dev/null || fail "$c is not installed (scripts/test installs it)"
done
CACHE=${CM_IMAGE_CACHE:-/var/cache/clustermaker-test/images}
mkdir -p "$CACHE"

NS="cm-img-$SUFFIX"; NETNS+=("$NS")
SERVER=10.178.0.1
ip netns add "$NS"; ip -n "$NS" link set lo up
ip -n "$NS" link add br0 type bridge; ip -n "$NS" addr add $SERVER/24 dev br0; ip -n "$NS" link set br0 up
for i in 0 1; do ip -n "$NS" tuntap add dev tap$i mode tap; ip -n "$NS" link set tap$i master br0; ip -n "$NS" link set tap$i up; done

mkdir -p "$T/etc" "$T/run" "$T/state" "$T/boot" "$T/g/lib" "$T/g/run" "$T/g/log" "$T/brick" "$T/vol" "$T/ganesha/lib"

log "bad input: names and packages are refused before anything runs"
for bad in "../x" "a/b" ".." "x@1"; do
  if cmctl image build "$bad" --images-dir "$T/state/images" --work-dir "$CACHE" --config-dir "$T/etc" 2>"$T/err"; then fail "image name $bad accepted"; fi
  grep -q "not a valid image name" "$T/err" || fail "image name $bad: $(cat "$T/err")"
done
pass "image names with / or .. are refused"

log "glusterd in the master's namespace; cm-replicad makes the volume, mounts it and writes the exports"
# glusterd as Debian's glusterd.service would run it, with its state private to this test.
ip netns exec "$NS" unshare -m --propagation private sh -c "mount --bind $T/g/lib /var/lib/glusterd && mount --bind $T/g/run /run && \
  mount --bind $T/g/log /var/log/glusterfs && exec glusterd -N --log-file=$T/glusterd.log" > "$T/glusterd.out" 2>&1 &
PIDS+=($!)
wait_for 30 "glusterd answers on its socket" gluster --glusterd-sock="$T/g/run/glusterd.socket" --mode=script volume list
cleanup_mount() { umount -l "$T/vol" 2>/dev/null || true; }
trap 'cleanup_mount; cleanup' EXIT
cat > "$T/etc/replicad.toml" <<CONF
[volume]
address = "$SERVER"
brick = "$T/brick/b"
mount = "$T/vol"
glusterd_socket = "$T/g/run/glusterd.socket"
[nfs]
exports_file = "$T/exports.conf"
ganesha_pid_file = "$T/ganesha.pid"
clients = ["10.178.0.0/24"]
scan_interval = "500ms"
CONF
"$BIN/cm-replicad" --check-config --config-dir "$T/etc" || fail "replicad.toml does not pass --check-config"
# In the master's network namespace (it reaches glusterd at $SERVER) and the host's mount
# namespace (its FUSE mount is where cmctl writes images).
start_bg replicad nsenter --net=/run/netns/"$NS" "$BIN/cm-replicad" --config-dir "$T/etc" --state-dir "$T/state/replicad" --runtime-dir "$T/run" --log-target stderr
wait_for 60 "the volume is started and mounted" bash -c "'$BIN/cmctl' volume status --json --runtime-dir '$T/run' | jq -e '.state == \"Started\" and .mounted and (.bricks[0].online)'"
wait_for 10 "the exports (only /shared yet) are written" grep -q 'Pseudo = "/shared"' "$T/exports.conf"
cmctl volume status > "$T/volume-status.out"
grep -q "clustermaker (Started, Distribute)" "$T/volume-status.out" || fail "volume status: $(cat "$T/volume-status.out")"
pass "cm-replicad made, started and mounted the volume and wrote ganesha's exports"

log "nfs-ganesha (GLUSTER backend) with cm-replicad's exports"
cat > "$T/ganesha.conf" <<CONF
NFS_CORE_PARAM { Protocols = 4; Enable_NLM = false; Enable_RQUOTA = false; Bind_Addr = $SERVER; }
NFSV4 { Graceless = true; RecoveryBackend = fs; Minor_Versions = 1, 2; Allow_Numeric_Owners = true; Only_Numeric_Owners = true; }
%include "$T/exports.conf"
CONF
ip netns exec "$NS" unshare -m --propagation private sh -c "mount -t tmpfs tmpfs /run && mkdir -p /run/rpcbind && \
  mkdir -p $T/ganesha/lib/ganesha && mount --bind $T/ganesha/lib /var/lib/nfs && (rpcbind -f -w &) && sleep 0.3 && \
  exec ganesha.nfsd -F -f $T/ganesha.conf -L $T/ganesha.log -p $T/ganesha.pid" > "$T/ganesha.out" 2>&1 &
PIDS+=($!)
wait_for 30 "ganesha listens on 2049" ip netns exec "$NS" bash -c "exec 3<>/dev/tcp/$SERVER/2049"
wait_for 10 "cm-replicad sees ganesha" bash -c "'$BIN/cmctl' volume status --json --runtime-dir '$T/run' | jq -e '.problem == null'"

log "unknown package: the build fails with apt's message and leaves no image"
if cmctl image build broken --packages cm-no-such-package --images-dir "$T/vol/images" --work-dir "$CACHE" --config-dir "$T/etc" > "$T/broken.out" 2>&1; then
  fail "a build with an unknown package succeeded"
fi
grep -q "Unable to locate package cm-no-such-package" "$T/broken.out" || fail "the failed build does not say why: $(tail -3 "$T/broken.out")"
[ -z "$(cmctl image list --json --images-dir "$T/vol/images" --config-dir "$T/etc" | jq '.[]')" ] || fail "a failed build left an image"
pass "unknown package: apt's message, no image"

log "building image base (mmdebstrap; packages cached in $CACHE)"
start=$(now_ms)
# The base root is kept between runs (a week): mmdebstrap runs when the packages or node files change.
cmctl image build base --note "test image" --reuse-base-for 168 --images-dir "$T/vol/images" --work-dir "$CACHE" --config-dir "$T/etc" > "$T/build.out" 2>&1 \
  || fail "image build failed: $(tail -5 "$T/build.out")"
log "built in $(( ($(now_ms) - start) / 1000 )) s: $(tail -1 "$T/build.out")"
cmctl image show base --json --images-dir "$T/vol/images" --config-dir "$T/etc" | jq -e '.revision == 1 and .exportId >= 2' >/dev/null || fail "base@1 not published"

grep -q 'Pseudo = "/images/base/1"' "$T/exports.conf" || fail "no export for base@1 after the build: $(cat "$T/exports.conf")"
grep -q "ganesha (PID [0-9]*) reloaded its exports" "$T/replicad.log" || fail "ganesha was not reloaded after the build"
pass "the new revision is exported at once: cm-replicad rewrote the exports and ganesha reloaded them"

log "cm-pxed (full DHCP) boots two VMs"
cat > "$T/etc/pxed.toml" <<CONF
[pxed]
mode = "dhcp"
interface = "br0"
server_address = "$SERVER"
boot_dir = "$T/boot"
images_dir = "$T/vol/images"
tftp_port = 0
[dhcp]
network = "10.178.0.0/24"
range = ["10.178.0.100", "10.178.0.149"]
domain = "cluster"
[[group]]
name = "default"
image = "base"
kernel_args = "console=ttyS0"
CONF
start_bg pxed ip netns exec "$NS" "$BIN/cm-pxed" --config-dir "$T/etc" --state-dir "$T/state" --runtime-dir "$T/run" --log-target stderr
wait_for 10 "cm-pxed answers" cmctl pxe status
MAC1=52:54:00:78:00:01; MAC2=52:54:00:78:00:02
# Names in the order the nodes are first seen: node001 first.
cmctl node add $MAC1 --name node001 >/dev/null
cmctl node add $MAC2 --name node002 >/dev/null
vm() { # NAME MAC TAP: power on (QEMU exits when the node powers off or reboots)
  ip netns exec "$NS" timeout 900 qemu-system-x86_64 -m 1024 -nographic -no-reboot -boot n \
    -netdev "tap,id=n0,ifname=$3,script=no,downscript=no" -device "e1000,netdev=n0,mac=$2" </dev/null > "$T/vm-$1.log" 2>&1 &
  PIDS+=($!)
  eval "VM_$1=$!"
}
start=$(now_ms)
vm node001 $MAC1 tap0
vm node002 $MAC2 tap1
wait_for 600 "node001 reaches a login prompt on its shared root" grep -aq "node001 login:" "$T/vm-node001.log"
wait_for 300 "node002 reaches a login prompt on its shared root" grep -aq "node002 login:" "$T/vm-node002.log"
log "both at multi-user $(( ($(now_ms) - start) / 1000 )) s after power-on"
for n in node001 node002; do
  grep -aq "ClusterMaker: root is $SERVER:/images/base/1" "$T/vm-$n.log" || fail "$n did not mount its root from base@1's export"
done
booted() { cmctl node list --json | jq -e --arg n "$1" --arg i "$2" '.[] | select(.name == $n and .state == "booted" and .lastImage == $i)'; }
wait_for 10 "cmctl lists node001 booted with base@1" booted node001 base@1
wait_for 10 "cmctl lists node002 booted with base@1" booted node002 base@1
pass "two nodes boot Debian to multi-user on the shared root (base@1 over NFSv4.1 from ganesha on GlusterFS)"

addr() { cmctl node list --json | jq -r --arg n "$1" '.[] | select(.name == $n) | .address'; }
A1=$(addr node001); A2=$(addr node002)
on() { local a=$1; shift; ip netns exec "$NS" ssh -i "$T/etc/ssh/id_ed25519" -o BatchMode=yes -o StrictHostKeyChecking=no \
  -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10 "root@$a" "$@"; }
for a in $A1 $A2; do
  wait_for 60 "node-exporter answers on $a" ip netns exec "$NS" curl -sf "http://$a:9100/metrics" -o /dev/null
  wait_for 60 "root logs in on $a over SSH with the master's key" on "$a" true
done
# cm-healthd checks cm-pxed's nodes (follow_pxed) and scrapes their node-exporter.
mkdir -p "$T/hc/etc" "$T/hc/state"
printf '[cluster]\nname = "img"\n' > "$T/hc/etc/cluster.toml"
# Under software emulation a node-exporter scrape takes seconds: the check asks for its small
# landing page, and the scrapes are spaced out (a pile-up of timed-out scrapes gets HTTP 503).
printf '[metrics]\ninterval = "10s"\ntimeout = "8s"\n[[check]]\nname = "exporter"\ntype = "http"\nport = 9100\npath = "/"\ninterval = "2s"\ntimeout = "2s"\nrise = 1\n' \
  > "$T/hc/etc/healthd.toml"
start_bg healthd ip netns exec "$NS" "$BIN/cm-healthd" --config-dir "$T/hc/etc" --state-dir "$T/hc/state" --runtime-dir "$T/run" --log-target stderr
up() { cmctl health list --json | jq -e --arg id "exporter@$1" '.[] | select(.id == $id and .state == "up")'; }
wait_for 60 "cm-healthd marks node001 up" up node001
wait_for 60 "cm-healthd marks node002 up" up node002
scraped() { cmctl metrics node001 --json | jq -e 'tostring | test("cpu")'; }
wait_for 90 "cm-healthd has node001's metrics from its node-exporter" scraped
[ "$(on "$A1" hostname)" = node001 ] || fail "node001's hostname is $(on "$A1" hostname)"
on "$A1" "findmnt -n -o FSTYPE /" | grep -qx overlay || fail "node001's root is not an overlay"
[ "$(on "$A1" cat /etc/machine-id)" != "$(on "$A2" cat /etc/machine-id)" ] || fail "the nodes share a machine-id"
on "$A1" "getent hosts node002.cluster" | grep -q "$A2" || fail "node001's /etc/hosts does not know node002"
fp() { ssh-keygen -lf "$1" | awk '{print $2}'; }
ip netns exec "$NS" ssh-keyscan -t ed25519 "$A1" 2>/dev/null > "$T/scan1"
[ "$(fp "$T/scan1")" = "$(fp "$T/state/identity/${MAC1//:/-}/ssh_host_ed25519_key.pub")" ] || fail "node001's host key is not the one cm-pxed keeps for it"
code=$(ip netns exec "$NS" curl -s -o /dev/null -w '%{http_code}' "http://$SERVER:8067/node/${MAC1//:/-}/ssh_host_ed25519_key")
[ "$code" = 403 ] || fail "node001's private host key was given to $SERVER (HTTP $code)"
pass "node-exporter, cm-healthd marks both nodes up and scrapes them; SSH with the master's key; hostname, machine-id, host key and /etc/hosts per node; a host key goes only to its node"

on "$A1" "echo from-node001 > /shared/x && echo changed > /etc/cm-test.conf"
[ "$(on "$A2" cat /shared/x)" = from-node001 ] || fail "node002 does not read node001's /shared/x"
grep -q from-node001 "$T/vol/shared/x" || fail "/shared/x is not on the volume"
on "$A2" "test ! -e /etc/cm-test.conf" || fail "node001's /etc change is seen on node002"
[ ! -e "$T/vol/images/base/1/root/etc/cm-test.conf" ] || fail "a write to /etc reached the image"
# From the master's network namespace, where the nodes are.
ip netns exec "$NS" "$BIN/cmctl" node diff node001 --runtime-dir "$T/run" --config-dir "$T/etc" --images-dir "$T/vol/images" > "$T/diff.out" \
  || fail "cmctl node diff failed: $(cat "$T/diff.out")"
grep -qx "A /etc/cm-test.conf" "$T/diff.out" || fail "node diff does not list /etc/cm-test.conf: $(head -20 "$T/diff.out")"
pass "/shared is one directory for all nodes; /etc changes stay in the node's overlay and node diff lists them"

log "bad input: a damaged revision (no root) keeps the old exports; the nodes keep their mounts"
before=$(md5sum < "$T/exports.conf")
mkdir -p "$T/vol/images/damaged/1"
printf '{"name":"damaged","revision":1,"suite":"bookworm","packages":[],"created":"2026-12-07T00:00:00Z","createdBy":"t","how":"build","exportId":999}\n' \
  > "$T/vol/images/damaged/1/image.json"
problem() { cmctl volume status --json | jq -e '.problem | test("damaged")'; }
wait_for 10 "cm-replicad reports the damaged revision" problem
[ "$(md5sum < "$T/exports.conf")" = "$before" ] || fail "the exports changed for a damaged revision"
on "$A1" "cat /etc/os-release >/dev/null && ls /shared >/dev/null" || fail "node001 lost its mounts"
rm -rf "$T/vol/images/damaged"
wait_for 10 "the problem clears" bash -c "'$BIN/cmctl' volume status --json --runtime-dir '$T/run' | jq -e '.problem == null'"
pass "a damaged image store keeps the old exports, says why, and the nodes keep their mounts"

log "a new revision for node002 only: image shell, pin, reboot"
cmctl image shell base --command "echo rev2 > /etc/cm-revision" --note "test change" --images-dir "$T/vol/images" \
  --work-dir "$CACHE" --config-dir "$T/etc" > "$T/shell.out" 2>&1 || fail "image shell failed: $(tail -3 "$T/shell.out")"
grep -q "committed base@2" "$T/shell.out" || fail "image shell did not commit base@2: $(cat "$T/shell.out")"
cmctl image diff base 1 2 --images-dir "$T/vol/images" --config-dir "$T/etc" | grep -qx "A /etc/cm-revision" || fail "image diff does not show the change"
grep -q 'Pseudo = "/images/base/2"' "$T/exports.conf" || fail "base@2 is not exported"
cmctl node set node002 --image base@2 >/dev/null
cmctl node set node001 --image base@1 >/dev/null
if cmctl image rm base@1 --images-dir "$T/vol/images" --config-dir "$T/etc" 2>"$T/rm.err"; then fail "base@1 removed while node001 boots it"; fi
grep -q "in use" "$T/rm.err" || fail "image rm: $(cat "$T/rm.err")"
# The reboot as the console and cmctl ask it: cm-pxed over SSH with the power key, which the
# image lets run the reboot and nothing else.
on "$A2" "grep -c '^restrict,command=\"/usr/bin/systemctl --no-block reboot' /root/.ssh/authorized_keys" | grep -qx 1 \
  || fail "the image does not limit the power key to the reboot: $(on "$A2" cat /root/.ssh/authorized_keys)"
cmctl node reboot node002 > "$T/reboot.out" 2>&1 || fail "cmctl node reboot node002: $(cat "$T/reboot.out")"
grep -q "node002 ($A2) is rebooting" "$T/reboot.out" || fail "cmctl node reboot: $(cat "$T/reboot.out")"
wait_for 120 "node002's VM exits on reboot" bash -c "! kill -0 $VM_node002 2>/dev/null"
: > "$T/vm-node002.log"
vm node002 $MAC2 tap1
wait_for 600 "node002 is back at a login prompt" grep -aq "node002 login:" "$T/vm-node002.log"
grep -aq "ClusterMaker: root is $SERVER:/images/base/2" "$T/vm-node002.log" || fail "node002 did not boot base@2"
wait_for 10 "cmctl lists node002 booted with base@2" booted node002 base@2
wait_for 60 "root logs in on node002 again" on "$A2" true
[ "$(on "$A2" cat /etc/cm-revision)" = rev2 ] || fail "node002 does not run base@2"
on "$A1" "test ! -e /etc/cm-revision" || fail "node001 changed under it"
ip netns exec "$NS" ssh-keyscan -t ed25519 "$A2" 2>/dev/null > "$T/scan2"
[ "$(fp "$T/scan2")" = "$(fp "$T/state/identity/${MAC2//:/-}/ssh_host_ed25519_key.pub")" ] || fail "node002's host key changed across the reboot"
pass "node002 runs base@2 after a reboot (cmctl node reboot: cm-pxed over SSH with the power key) with the same host key; node001 stays on base@1; base@1 cannot be removed while in use"
