#!/usr/bin/env bash
# cmctl master clone: two masters, each a Debian 12 root of its own (mmdebstrap, cached) entered
# through its own network, mount and UTS namespaces, so that neither sees the other's /etc,
# /var/lib or brick. m1 runs ClusterMaker (scripts/setup --prefix into its root) with a
# one-brick volume; m2 is a fresh install reachable over SSH as root, with the same
# machine-id and SSH host keys as m1 (both roots come from one tarball, as a copied disk would).
#  1. Bad input first: an unreachable host and one that is not Debian 12 → clear errors, nothing
#     changed on m1.
#  2. The clone: packages there, files, /etc/clustermaker with m2's own values, a fresh
#     identity, m2's brick added (replica 2) and healed; then run again: nothing left to do.
#  3. m2's daemons started (as clustermaker.target would): standby; a node added on m1 is on
#     m2 after m1 is killed.
#  4. A host that runs an active master is refused.
. "$(dirname "$0")/lib.sh"
for c in mmdebstrap jq ssh ssh-keygen unshare nsenter; do command -v $c >/dev/null || fail "$c is not installed (scripts/test installs it)"; done
SRC=$(cd "$(dirname "$0")/../.." && pwd)

NET=10.180.0
VIP=$NET.100
lan_create
host_create m1 $NET.11/24
host_create m2 $NET.12/24
host_create m3 $NET.13/24   # no SSH there: the unreachable host

log "0. a Debian 12 root for the masters (cached between runs)"
PKGS=systemd,openssh-server,openssh-client,glusterfs-server,nfs-ganesha,nfs-ganesha-gluster,rpcbind,libsystemd0,libcurl4,libsqlite3-0,libpam0g,iproute2,procps,mmdebstrap,ipxe,libjs-chart.js,openssl,ipmitool,rsync,btrfs-progs,passwd,ca-certificates
CACHE=/var/cache/clustermaker-test/master-root-$(echo "$PKGS" | sha256sum | cut -c1-12).tar
mkdir -p "$(dirname "$CACHE")"
if [ ! -f "$CACHE" ]; then
  mmdebstrap --variant=minbase --format=tar --include="$PKGS" --aptopt='Acquire::Check-Valid-Until "false"' \
    bookworm "$CACHE.part" /etc/apt/sources.list.d/debian.sources > "$T/mmdebstrap.log" 2>&1 || fail "mmdebstrap: $(tail -5 "$T/mmdebstrap.log")"
  mv "$CACHE.part" "$CACHE"
fi

# Each master: its root, and a process holding its namespaces (the root's /proc, /dev, /sys,
# /run, /tmp, and the Swift runtime the debug binaries load, read-only).
unmount_roots() { for m in m1 m2; do umount -R -l "$T/$m/root" 2>/dev/null || true; done; }
trap 'unmount_roots; cleanup' EXIT
master_make() {
  local m=$1 r=$T/$1/root
  mkdir -p "$r"; tar -C "$r" -xf "$CACHE"
  # As an installed Debian has it (minbase has none): glusterd's daemons reach it as localhost.
  printf '127.0.0.1\tlocalhost\n%s\tm1\n%s\tm2\n' $NET.11 $NET.12 > "$r/etc/hosts"
  ip netns exec "$(ns_of "$m")" unshare -m -u --propagation private sh -c "
    mount -t proc proc $r/proc && mount --rbind /dev $r/dev && mount --rbind /sys $r/sys &&
    mount -t tmpfs tmpfs $r/run && mount -t tmpfs tmpfs $r/tmp && mkdir -p $r/opt/swift &&
    mount --bind /opt/swift $r/opt/swift && mount -o remount,bind,ro $r/opt/swift && hostname $m-fresh && exec sleep infinity" &
  PIDS+=($!)
  eval "HOLD_$m=$!"
}
# on M COMMAND...: runs COMMAND in master M's root and namespaces. -r: entering a mount
# namespace moves to that namespace's "/"; the holder's root is the one to resolve $T from
# (they differ when the test itself runs in a chroot, as on a fresh-machine run).
on() { local m=$1 v="HOLD_$1"; shift; nsenter -t "${!v}" -m -u -n -r chroot "$T/$m/root" "$@"; }
role_is() { on "$1" cmctl vip status --json 2>/dev/null | jq -e --arg r "$2" '.role == $r' >/dev/null; }
copied() { on m1 cmctl master status --json 2>/dev/null | jq -e '.state.publishing and .state.databases[0].pendingSince == null and .state.databases[0].copied != null' >/dev/null; }

master_make m1; master_make m2
wait_for 10 "m1's root is mounted" on m1 test -r /proc/self/status
wait_for 10 "m2's root is mounted" on m2 test -r /proc/self/status

# m2: a fresh install that lets m1's key in as root.
ssh-keygen -q -t ed25519 -N "" -C clustermaker@m1 -f "$T/id_ed25519"
install -d -m 0700 "$T/m2/root/root/.ssh"; install -m 0600 "$T/id_ed25519.pub" "$T/m2/root/root/.ssh/authorized_keys"
on m2 sh -c 'mkdir -p /run/sshd && /usr/sbin/sshd -E /tmp/sshd.log' || fail "sshd does not start on m2"

# m1: ClusterMaker installed as scripts/setup installs it, and its configuration.
bash "$SRC/scripts/setup" --prefix "$T/m1/root" --bin-dir "$BIN" > "$T/setup.log" 2>&1 || fail "scripts/setup --prefix: $(tail -5 "$T/setup.log")"
E=$T/m1/root/etc/clustermaker
install -d -m 0700 "$E/ssh"; cp "$T/id_ed25519" "$T/id_ed25519.pub" "$E/ssh/"
cat > "$E/cluster.toml" <<CONF
[cluster]
name = "clonetest"
[[network]]
name = "nodes"
cidr = "$NET.0/24"
[[master]]
name = "m1"
address = "$NET.11"
[[master]]
name = "m2"
address = "$NET.12"
[[master]]
name = "m3"
address = "$NET.13"
CONF
cat > "$E/vipd.toml" <<CONF
[[instance]]
name = "VI_1"
interface = "eth0"
vrid = 80
priority = 150
advert_interval = "100ms"
addresses = ["$VIP/24"]
CONF
cat > "$E/replicad.toml" <<CONF
[volume]
address = "$NET.11"
ping_timeout = "1s"
[nfs]
clients = ["$NET.0/24"]
[state]
master = "m1"
CONF
cat > "$E/pxed.toml" <<CONF
[pxed]
mode = "dhcp"
interface = "eth0"
server_address = "$NET.11"
boot_address = "$VIP"
tftp_port = 0
images_dir = "/srv/clustermaker/images"
follow_vipd = true
[dhcp]
network = "$NET.0/24"
range = ["$NET.150", "$NET.199"]
[[group]]
name = "default"
CONF
rm -f "$E"/healthd.toml "$E"/lbd.toml   # not run here
for d in vipd replicad pxed; do on m1 cm-$d --check-config >/dev/null || fail "m1's $d.toml does not pass --check-config"; done

start_m() {
  local m=$1
  on "$m" sh -c 'gluster --mode=script volume list >/dev/null 2>&1 || glusterd'
  wait_for 30 "glusterd on $m" on "$m" gluster --mode=script volume list
  for d in vipd replicad pxed; do start_bg "$d-$m" on "$m" "/usr/sbin/cm-$d" --log-target stderr; done
}
start_m m1
wait_for 15 "m1 is active" role_is m1 active
mounted() { on "$1" grep -q " /srv/clustermaker fuse.glusterfs" /proc/mounts; }
wait_for 60 "m1's volume is mounted" mounted m1
M1_CONFIG=$(cd "$E" && find . -type f -exec sha256sum {} + | sort)
bricks() { on m1 gluster --mode=script --xml volume info clustermaker | grep -c '<brick '; }
[ "$(bricks)" = 1 ] || fail "m1's volume does not have one brick"
pass "m1 runs ClusterMaker on its own root with a one-brick volume; m2 is a fresh Debian 12 with SSH"

log "1. bad input: an unreachable host, a host that is not Debian 12"
if on m1 cmctl master clone m3 --packages suite > "$T/clone-m3.out" 2>&1; then fail "a clone onto an unreachable host succeeded"; fi
grep -q "cannot reach root@$NET.13 over SSH" "$T/clone-m3.out" || fail "unclear error for an unreachable host: $(cat "$T/clone-m3.out")"
cp "$T/m2/root/etc/os-release" "$T/os-release"
printf 'ID=ubuntu\nVERSION_ID="22.04"\n' > "$T/m2/root/etc/os-release"
if on m1 cmctl master clone m2 --packages suite > "$T/clone-ubuntu.out" 2>&1; then fail "a clone onto Ubuntu succeeded"; fi
grep -q "runs ubuntu 22.04, not Debian 12" "$T/clone-ubuntu.out" || fail "unclear error for a non-Debian host: $(cat "$T/clone-ubuntu.out")"
cp "$T/os-release" "$T/m2/root/etc/os-release"
if on m1 cmctl master clone nowhere > "$T/clone-nowhere.out" 2>&1; then fail "a clone of a host not in cluster.toml succeeded"; fi
grep -q "not in cluster.toml's \[\[master\]\] list" "$T/clone-nowhere.out" || fail "unclear error for an unknown host: $(cat "$T/clone-nowhere.out")"
[ "$(cd "$E" && find . -type f -exec sha256sum {} + | sort)" = "$M1_CONFIG" ] || fail "a failed clone changed m1's configuration"
[ "$(bricks)" = 1 ] || fail "a failed clone changed m1's volume"
[ ! -e "$T/m2/root/usr/sbin/cm-vipd" ] || fail "a refused clone installed files on m2"
pass "unreachable, not Debian 12 and unknown hosts: clear errors, nothing changed on either side"

log "2. cmctl master clone m2"
MID1=$(cat "$T/m1/root/etc/machine-id"); KEY1=$(cut -d' ' -f2 "$T/m1/root/etc/ssh/ssh_host_ed25519_key.pub")
[ "$(cat "$T/m2/root/etc/machine-id")" = "$MID1" ] || log "note: the roots' machine-ids differ already"
on m1 cmctl master clone m2 --packages suite > "$T/clone.out" 2>&1 || fail "the clone failed: $(cat "$T/clone.out")"
cat "$T/clone.out"
for s in reach packages files configuration identity GlusterFS standby; do grep -q "^\[[1-7]/7\] $s:" "$T/clone.out" || fail "no progress line for stage $s"; done
R2=$T/m2/root
for f in usr/sbin/cm-vipd usr/sbin/cm-replicad usr/sbin/cm-pxed usr/bin/cmctl usr/lib/systemd/system/clustermaker.target usr/share/man/man8/cm-replicad.8.gz; do
  [ -e "$R2/$f" ] || fail "the clone did not install /$f on m2"
done
grep -q "^address = \"$NET.12\"" "$R2/etc/clustermaker/replicad.toml" || fail "m2's replicad.toml does not have m2's address"
grep -q "^master = \"m2\"" "$R2/etc/clustermaker/replicad.toml" || fail "m2's replicad.toml does not name m2"
grep -q "^priority = 100" "$R2/etc/clustermaker/vipd.toml" || fail "m2's vipd.toml priority is not below m1's"
grep -q "^server_address = \"$NET.12\"" "$R2/etc/clustermaker/pxed.toml" || fail "m2's pxed.toml server_address is not m2's"
cmp -s "$E/cluster.toml" "$R2/etc/clustermaker/cluster.toml" || fail "cluster.toml was not copied as it is"
cmp -s "$E/ssh/id_ed25519" "$R2/etc/clustermaker/ssh/id_ed25519" || fail "the master key was not copied"
[ "$(cat "$R2/etc/hostname")" = m2 ] || fail "m2's hostname is $(cat "$R2/etc/hostname")"
[ "$(on m2 hostname)" = m2 ] || fail "m2's running hostname is $(on m2 hostname)"
[ "$(cat "$R2/etc/machine-id")" != "$MID1" ] || fail "m2 has m1's machine-id"
[ "$(cut -d' ' -f2 "$R2/etc/ssh/ssh_host_ed25519_key.pub")" != "$KEY1" ] || fail "m2 has m1's SSH host key"
U1=$(sed -n 's/^UUID=//p' "$T/m1/root/var/lib/glusterd/glusterd.info"); U2=$(sed -n 's/^UUID=//p' "$R2/var/lib/glusterd/glusterd.info")
[ -n "$U2" ] && [ "$U1" != "$U2" ] || fail "m2's GlusterFS UUID ($U2) is not its own (m1: $U1)"
[ "$(bricks)" = 2 ] || fail "the volume does not have m2's brick"
on m1 gluster --mode=script --xml volume info clustermaker | grep -q "<replicaCount>2</replicaCount>" || fail "the volume is not replica 2"
[ -d "$R2/var/lib/clustermaker/brick/images" ] || fail "m2's brick was not healed (no images/)"
# nfs-ganesha's configuration as scripts/setup wrote it on m1, and an epoch of m2's own for its
# ganesha (m2 is the second master: 2 << 16, generation 1).
for f in etc/ganesha/nfs-ganesha etc/apt/apt.conf.d/80clustermaker-snapshot; do
  cmp -s "$T/m1/root/$f" "$R2/$f" || fail "the clone did not copy /$f as scripts/setup wrote it on m1"
done
grep -q '^EPOCH_EXEC="/usr/bin/cmctl master ganesha-epoch"' "$R2/etc/ganesha/nfs-ganesha" || fail "m2's /etc/ganesha/nfs-ganesha has no EPOCH_EXEC"
[ "$(on m2 cmctl master ganesha-epoch)" = $(( 2 << 16 | 1 )) ] || fail "m2's ganesha epoch is not its own: $(on m2 cmctl master ganesha-epoch 2>&1)"
[ "$(on m1 cmctl master ganesha-epoch)" = $(( 1 << 16 | 1 )) ] || fail "m1's ganesha epoch: $(on m1 cmctl master ganesha-epoch 2>&1)"
pass "m2 cloned: packages, files, its own configuration values, a fresh identity, replica 2 healed, ganesha's epoch its own"

on m1 cmctl master clone m2 --packages suite > "$T/clone-again.out" 2>&1 || fail "the second clone failed: $(cat "$T/clone-again.out")"
grep -q "all [0-9]* packages are there" "$T/clone-again.out" && grep -q "identity: its own already" "$T/clone-again.out" \
  && ! grep -q "added: replica" "$T/clone-again.out" || fail "the second clone did more than check: $(cat "$T/clone-again.out")"
pass "cloning again finds everything done (packages, identity, brick) and repairs nothing"

log "3. m2's daemons (as clustermaker.target starts them): standby, then the state follows a failover"
start_m m2
wait_for 15 "m2 is standby" role_is m2 standby
wait_for 60 "m2's volume is mounted" mounted m2
on m1 cmctl node add 52:54:00:80:00:01 --name cloned001 >/dev/null
wait_for 10 "m1 copied the inventory" copied
sleep 0.2
ip netns pids "$(ns_of m1)" | grep -vx "$HOLD_m1" | xargs -r kill -KILL
wait_for 10 "m2 takes over" role_is m2 active
wait_for 30 "m2's cm-pxed restored m1's state" grep -q "replicated state: restored m1's replica" "$T/pxed-m2.log"
on m2 cmctl node list --json | jq -e 'map(.name) | index("cloned001")' >/dev/null || fail "the node added on m1 is not on m2"
pass "the clone runs standby; after m1 is killed it is active with m1's inventory"

log "4. a host that runs an active master is refused"
if on m1 cmctl master clone m2 --packages suite > "$T/clone-active.out" 2>&1; then fail "cloning over the active master m2 succeeded"; fi
grep -q "runs an active master" "$T/clone-active.out" || fail "unclear refusal: $(cat "$T/clone-active.out")"
pass "cloning over an active master is refused"
