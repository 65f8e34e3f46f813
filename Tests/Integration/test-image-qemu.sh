#!/usr/bin/env bash
# A node PXE boots into Debian on the shared root: the image is built by `cmctl image build`
# (mmdebstrap, packages cached between runs in /var/cache/clustermaker-test), published into a
# GlusterFS volume (glusterd in the master's namespace, one brick), served read-only over
# NFSv4.1 by nfs-ganesha's GLUSTER backend with exports from `cmctl image exports`, and booted
# by cm-pxed in full DHCP mode. QEMU (software emulation, 1 GiB):
#  1. the VM reaches multi-user (a login prompt on the serial console) on the NFS root with a
#     tmpfs overlay; cm-pxed lists it booted with image base@1;
#  2. prometheus-node-exporter answers on the node; root logs in over SSH with the master's key;
#  3. a file written to /shared on the node is on the volume; a change to /etc stays in the
#     node's overlay and `cmctl node diff` lists it;
#  4. bad input: an unknown package fails the build with apt's message and leaves no image;
#     image names with "/" or ".." are refused.
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
ip -n "$NS" tuntap add dev tap0 mode tap; ip -n "$NS" link set tap0 master br0; ip -n "$NS" link set tap0 up

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
NFSV4 { Graceless = true; RecoveryBackend = fs; Minor_Versions = 1, 2; }
%include "$T/exports.conf"
CONF
ip netns exec "$NS" unshare -m --propagation private sh -c "mount -t tmpfs tmpfs /run && mkdir -p /run/rpcbind && \
  mount --bind $T/ganesha/lib /var/lib/nfs/ganesha && (rpcbind -f -w &) && sleep 0.3 && \
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
cmctl image build base --note "test image" --images-dir "$T/vol/images" --work-dir "$CACHE" --config-dir "$T/etc" > "$T/build.out" 2>&1 \
  || fail "image build failed: $(tail -5 "$T/build.out")"
log "built in $(( ($(now_ms) - start) / 1000 )) s: $(tail -1 "$T/build.out")"
cmctl image show base --json --images-dir "$T/vol/images" --config-dir "$T/etc" | jq -e '.revision == 1 and .exportId >= 2' >/dev/null || fail "base@1 not published"

grep -q 'Pseudo = "/images/base/1"' "$T/exports.conf" || fail "no export for base@1 after the build: $(cat "$T/exports.conf")"
grep -q "ganesha (PID [0-9]*) reloaded its exports" "$T/replicad.log" || fail "ganesha was not reloaded after the build"
pass "the new revision is exported at once: cm-replicad rewrote the exports and ganesha reloaded them"

log "cm-pxed (full DHCP) boots a VM"
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
[[group]]
name = "default"
image = "base"
kernel_args = "console=ttyS0"
CONF
start_bg pxed ip netns exec "$NS" "$BIN/cm-pxed" --config-dir "$T/etc" --state-dir "$T/state" --runtime-dir "$T/run" --log-target stderr
wait_for 10 "cm-pxed answers" cmctl pxe status
MAC=52:54:00:78:00:01
start=$(now_ms)
ip netns exec "$NS" timeout 600 qemu-system-x86_64 -m 1024 -nographic -no-reboot -boot n \
  -netdev tap,id=n0,ifname=tap0,script=no,downscript=no -device e1000,netdev=n0,mac=$MAC </dev/null > "$T/vm.log" 2>&1 &
PIDS+=($!)
wait_for 400 "the node reaches a login prompt on its shared root" grep -aq "node001 login:" "$T/vm.log"
log "multi-user in $(( ($(now_ms) - start) / 1000 )) s from power-on"
grep -aq "ClusterMaker: root is $SERVER:/images/base/1" "$T/vm.log" || fail "the node did not mount its root from the export"
booted() { cmctl node list --json | jq -e --arg m $MAC '.[] | select(.mac == $m and .state == "booted" and .lastImage == "base@1")'; }
wait_for 10 "cmctl lists the node booted with base@1" booted
pass "a node boots Debian to multi-user on the shared root (base@1 over NFSv4.1 from ganesha on GlusterFS)"

ADDR=$(cmctl node list --json | jq -r --arg m $MAC '.[] | select(.mac == $m) | .address')
on_node() { ip netns exec "$NS" ssh -i "$T/etc/ssh/id_ed25519" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
  -o LogLevel=ERROR -o ConnectTimeout=10 "root@$ADDR" "$@"; }
wait_for 60 "node-exporter answers on the node" ip netns exec "$NS" curl -sf "http://$ADDR:9100/metrics" -o /dev/null
wait_for 60 "root logs in over SSH with the master's key" on_node true
[ "$(on_node hostname)" = node001 ] || fail "hostname is $(on_node hostname), not node001"
on_node "findmnt -n -o FSTYPE /" | grep -q overlay || fail "the root is not an overlay"
pass "node-exporter answers; SSH as root with the master's key; hostname from the inventory"

on_node "echo from-node001 > /shared/x && echo changed > /etc/cm-test.conf"
wait_for 10 "the node's write to /shared is on the volume" grep -q from-node001 "$T/vol/shared/x"
[ ! -e "$T/vol/images/base/1/root/etc/cm-test.conf" ] || fail "a write to /etc reached the image"
"$BIN/cmctl" node diff node001 --runtime-dir "$T/run" --config-dir "$T/etc" --images-dir "$T/vol/images" > "$T/diff.out" \
  || fail "cmctl node diff failed: $(cat "$T/diff.out")"
grep -qx "A /etc/cm-test.conf" "$T/diff.out" || fail "node diff does not list /etc/cm-test.conf: $(head -20 "$T/diff.out")"
pass "/shared is shared; /etc changes stay in the node's overlay and node diff lists them"
