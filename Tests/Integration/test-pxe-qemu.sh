#!/usr/bin/env bash
# cm-pxed boots QEMU VMs (software emulation, iPXE ROM, e1000) on a bridge in a network
# namespace; the test image is Debian's kernel and a busybox initramfs that prints a marker
# on the serial console and powers off.
#  1. Full DHCP: a BIOS VM boots from cm-pxed alone to the marker, kernel and initrd over
#     HTTP; it appears in `cmctl node list --json` as node001, booted, with its MAC; the
#     events discovered → booting → booted reach a subscriber in order.
#  2. Restart cm-pxed (SIGTERM, then kill -9 too): the same VM boots again with the same
#     name and address; `cmctl node boot --image` picks the next boot's image once.
#  3. 5,000 DISCOVERs from made-up MAC addresses add no node and are rate limited; then four
#     VMs boot at once (their offers take the flood's); a UEFI VM (OVMF) boots too.
#  4. HTTP Range requests; HTTP listens on server_address only; bad input: TFTP path
#     traversal, absolute paths, symlinks out of the root and writes are refused with TFTP
#     errors; a good file arrives intact with blksize and windowsize; 2,000 RRQs from one
#     address start at most 8 transfers (the rest duplicates or "busy"), add no threads,
#     and a download after them works; malformed DHCP datagrams are dropped and counted;
#     the daemon goes on. cm-healthd checks an inventory node; the inventory is imported
#     from CSV, exported as TOML and imported again; a bad CSV, an import that clashes
#     half-way and a script fetch from an address DHCP did not give that MAC address change
#     nothing.
#  5. proxyDHCP: dnsmasq hands out addresses (no boot options), cm-pxed only boot information;
#     a fetch from another node's fixed address is an observation and deletes nothing (kill -9).
#  6. follow_vipd: DHCP is answered only while cm-vipd reports this master active; silent
#     without cm-vipd and again when it stops.
. "$(dirname "$0")/lib.sh"
for c in qemu-system-x86_64 dnsmasq busybox cpio; do command -v $c >/dev/null || fail "$c is not installed (scripts/test installs it)"; done

NS="cm-pxe-$SUFFIX"; CL="cm-pxc-$SUFFIX"; NETNS+=("$NS" "$CL")
SERVER=10.177.0.1
ip netns add "$NS"; ip -n "$NS" link set lo up
ip -n "$NS" link add br0 type bridge; ip -n "$NS" addr add $SERVER/24 dev br0; ip -n "$NS" link set br0 up
for i in 0 1 2 3 4 5; do
  ip -n "$NS" tuntap add dev tap$i mode tap; ip -n "$NS" link set tap$i master br0; ip -n "$NS" link set tap$i up
done
# A client namespace on the same bridge, for TFTP and DHCP probes.
ip netns add "$CL"; ip -n "$CL" link set lo up
ip -n "$NS" link add vcl type veth peer name eth0 netns "$CL"
ip -n "$NS" link set vcl master br0 up
ip -n "$CL" addr add 10.177.0.250/24 dev eth0; ip -n "$CL" link set eth0 up

log "building the test image: Debian's kernel and a busybox initramfs"
. "$(dirname "$0")/../../scripts/lib/node-image.sh"
mkdir -p "$T/state/images/rescue" "$T/boot" "$T/etc" "$T/run"
cm_node_image "$T/state/images/default" || fail "cannot build the test image"
cp "$T/state/images/default/"* "$T/state/images/rescue/"

pxed_conf() { # MODE
  cat > "$T/etc/pxed.toml" <<CONF
[pxed]
mode = "$1"
interface = "br0"
server_address = "$SERVER"
boot_dir = "$T/boot"
images_dir = "$T/state/images"
[dhcp]
network = "10.177.0.0/24"
range = ["10.177.0.100", "10.177.0.149"]
lease_time = "10m"
[[group]]
name = "default"
image = "default"
kernel_args = "console=ttyS0 quiet panic=-1 cm.test=default"
CONF
}
pxed_start() {
  start_bg pxed ip netns exec "$NS" "$BIN/cm-pxed" --config-dir "$T/etc" --state-dir "$T/state" --runtime-dir "$T/run" --log-target stderr
  wait_for 10 "cm-pxed answers on its socket" cmctl pxe status
}
nodes() { cmctl node list --json; }
node_field() { nodes | jq -r --arg m "$1" --arg f "$2" '.[] | select(.mac == $m) | .[$f]'; }

# vm NAME MAC TAP [uefi]: boots a VM in the background, serial console to $T/vm-NAME.log.
vm() {
  local name=$1 mac=$2 tap=$3 fw=()
  if [ "${4:-}" = uefi ]; then
    cp /usr/share/OVMF/OVMF_VARS_4M.fd "$T/vars-$name.fd"
    fw=(-drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd -drive "if=pflash,format=raw,file=$T/vars-$name.fd")
  fi
  ip netns exec "$NS" timeout 300 qemu-system-x86_64 -m 256 -nographic -no-reboot -boot n "${fw[@]}" \
    -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" -device "e1000,netdev=n0,mac=$mac" </dev/null > "$T/vm-$name.log" 2>&1 &
  PIDS+=($!)
  eval "VM_$name=$!"
}
vm_wait() { # NAME SECONDS: waits for the VM to power off, then for its marker
  local pid_var="VM_$1"
  local deadline=$(( $(date +%s) + $2 ))
  while kill -0 "${!pid_var}" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || { tail -c 3000 "$T/vm-$1.log"; fail "VM $1 did not power off within $2 s"; }
    sleep 1
  done
  grep -aq CM-NODE-BOOTED "$T/vm-$1.log" || { tail -c 3000 "$T/vm-$1.log"; fail "VM $1 powered off without the marker"; }
}

log "1. full DHCP: one BIOS VM boots from cm-pxed alone"
pxed_conf dhcp
pxed_start
cmctl node watch --json > "$T/events.out" 2> "$T/events.err" & PIDS+=($!)
wait_for 5 "node watch subscribed" grep -q "^watching" "$T/events.err"
t0=$(date +%s)
vm one 52:54:00:77:00:01 tap0
vm_wait one 240
grep -aq "cm.test=default" "$T/vm-one.log" || fail "the kernel command line lacks the group's kernel_args"
[ "$(node_field 52:54:00:77:00:01 name)" = node001 ] || { nodes; fail "the VM is not node001"; }
is_booted() { [ "$(node_field "$1" state)" = booted ]; }
wait_for 5 "node001 is booted" is_booted 52:54:00:77:00:01
ADDR=$(node_field 52:54:00:77:00:01 address)
[ "$ADDR" = 10.177.0.100 ] || fail "node001's address is $ADDR, expected the first of the range"
grep -q "node001 (52:54:00:77:00:01) is booting image default from $ADDR" "$T/pxed.log" || fail "the script was not fetched from $ADDR"
[ "$(cmctl pxe status --json | jq '.counters.http_files')" -ge 2 ] || fail "kernel and initrd were not sent over HTTP"
seq=$(jq -r 'select(.mac == "52:54:00:77:00:01") | .state' "$T/events.out" | tr '\n' ' ')
[ "$seq" = "discovered booting booted " ] || { cat "$T/events.out"; fail "events were: $seq"; }
pass "VM booted to the marker in $(( $(date +%s) - t0 )) s via DHCP + HTTP; node001 at $ADDR; events discovered → booting → booted"

log "2. restarts keep names and addresses"
kill -TERM "$PID_pxed"; wait "$PID_pxed" 2>/dev/null || true
pxed_start
cmctl node boot node001 --image rescue >/dev/null
[ "$(node_field 52:54:00:77:00:01 nextImage)" = rescue ] || fail "next image not recorded"
kill -KILL "$PID_pxed"; wait "$PID_pxed" 2>/dev/null || true
pxed_start
vm one 52:54:00:77:00:01 tap0
vm_wait one 240
[ "$(node_field 52:54:00:77:00:01 name)" = node001 ] && [ "$(node_field 52:54:00:77:00:01 address)" = "$ADDR" ] ||
  { nodes; fail "after restarts the VM is not node001 at $ADDR"; }
grep -q "node001 (52:54:00:77:00:01) is booting image rescue from $ADDR" "$T/pxed.log" || fail "the one-shot image was not booted"
[ "$(node_field 52:54:00:77:00:01 nextImage)" = null ] || fail "the one-shot image stays set"
[ "$(node_field 52:54:00:77:00:01 bootCount)" = 2 ] || fail "boot count is not 2"
pass "after SIGTERM and kill -9 restarts: node001 keeps $ADDR; the one-shot image was used once"

log "3. 5,000 made-up PXE clients, then four VMs at once, then UEFI"
before=$(nodes | jq length)
ip netns exec "$CL" python3 "$(dirname "$0")/dhcp-probe.py" eth0 flood 5000 >/dev/null
limited() { [ "$(cmctl pxe status --json | jq '.counters.dhcp_rate_limited // 0')" -gt 0 ]; }
wait_for 10 "the flood is rate limited" limited
[ "$(nodes | jq length)" = "$before" ] || fail "made-up DISCOVERs became $(( $(nodes | jq length) - before )) nodes"
log "flood: $(cmctl pxe status --json | jq -c '{received: .counters.dhcp_received, replied: .counters.dhcp_replied, limited: .counters.dhcp_rate_limited}'); no node added"
t0=$(date +%s)
for i in 2 3 4 5; do vm "m$i" "52:54:00:77:00:0$i" "tap$((i - 1))"; done
for i in 2 3 4 5; do vm_wait "m$i" 280; done
took=$(( $(date +%s) - t0 ))
t0=$(date +%s)
vm efi 52:54:00:77:00:07 tap5 uefi
vm_wait efi 280
[ "$(node_field 52:54:00:77:00:07 arch)" = uefi-x86_64 ] || fail "the UEFI VM's architecture is $(node_field 52:54:00:77:00:07 arch)"
for i in 2 3 4 5 7; do
  [ "$(node_field "52:54:00:77:00:0$i" state)" = booted ] || { nodes; fail "52:54:00:77:00:0$i is not listed as booted"; }
done
[ "$(nodes | jq 'map(.address) | unique | length')" = 6 ] || { nodes; fail "addresses are not unique"; }
pass "after a flood of 5,000 made-up clients four VMs booted at once in $took s; UEFI VM in $(( $(date +%s) - t0 )) s; six nodes with distinct addresses"

log "4. HTTP ranges; bad input to TFTP and DHCP"
img="http://$SERVER:8067/images/default/initrd.img"
size=$(stat -c %s "$T/state/images/default/initrd.img")
got=$(ip netns exec "$CL" curl -s -r 100-199 -o "$T/range.bin" -w '%{http_code} %{size_download}' "$img")
[ "$got" = "206 100" ] && cmp -s "$T/range.bin" <(tail -c +101 "$T/state/images/default/initrd.img" | head -c 100) || fail "Range 100-199 gave $got"
got=$(ip netns exec "$CL" curl -s -r "$size"- -o /dev/null -w '%{http_code}' "$img")
[ "$got" = 416 ] || fail "a range past the end gave $got, expected 416"
got=$(ip netns exec "$CL" curl -s -o /dev/null -w '%{http_code}' "http://$SERVER:8067/images/../etc/passwd" --path-as-is)
[ "$got" = 404 ] || fail "/images/../etc/passwd gave $got"
# HTTP listens on server_address only, not on the master's other addresses.
got=$(ip netns exec "$NS" curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:8067/images/default/initrd.img" || true)
[ "$got" = 000 ] || fail "HTTP answered on 127.0.0.1 with $got; it should listen on $SERVER only"
head -c 3000000 /dev/urandom > "$T/boot/payload.bin"
ln -s /etc/passwd "$T/boot/escape"
tftp_get() { ip netns exec "$CL" busybox tftp "$@" $SERVER 2>&1; }
(cd "$T" && tftp_get -g -b 1468 -r payload.bin -l got.bin) >/dev/null || fail "TFTP download failed"
cmp -s "$T/boot/payload.bin" "$T/got.bin" || fail "TFTP download differs"
for bad in ../etc/passwd /etc/passwd escape sub/../../x; do
  out=$(cd "$T" && tftp_get -g -r "$bad" -l junk) && fail "TFTP served \"$bad\""
  echo "$out" | grep -qi 'error\|violation\|not found' || fail "no TFTP error for \"$bad\": $out"
done
out=$(cd "$T" && tftp_get -p -l got.bin -r upload.bin) && fail "TFTP accepted a write"
[ ! -e "$T/boot/upload.bin" ] || fail "a file was written"
ip netns exec "$CL" python3 "$(dirname "$0")/tftp-window.py" $SERVER payload.bin "$T/boot/payload.bin" || fail "windowed TFTP (blksize 1468, windowsize 8) failed"
# 70,000 blocks of 8 bytes: block numbers roll over past 65535.
head -c 560000 /dev/urandom > "$T/boot/many-blocks.bin"
ip netns exec "$CL" python3 "$(dirname "$0")/tftp-window.py" $SERVER many-blocks.bin "$T/boot/many-blocks.bin" 8 16 || fail "TFTP past block 65535 failed"
refused=$(cmctl pxe status --json | jq '.counters.tftp_refused')
[ "$refused" -ge 5 ] || fail "tftp_refused is $refused, expected at least 5"
# A flood of 2,000 read requests from one address, 200 ports asking 10 times each and never
# answering: 8 transfers start (tftp_max_per_client), the rest are duplicates or refused
# "busy"; the transfers add no thread; once the flood's sockets are gone a download works.
counter() { cmctl pxe status --json | jq ".counters.$1 // 0"; }
threads() { awk '/^Threads:/ {print $2}' "/proc/$PID_pxed/status"; }
threads_before=$(threads) dup0=$(counter tftp_duplicates) busy0=$(counter tftp_refused_busy) req0=$(counter tftp_requests)
ip netns exec "$CL" python3 - $SERVER > "$T/flood.log" 2>&1 <<'PY' &
import socket, sys, time
rrq = b"\x00\x01payload.bin\x00octet\x00timeout\x00255\x00blksize\x001468\x00"
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(200)]
for _ in range(10):
    for s in socks:
        s.sendto(rrq, (sys.argv[1], 69))
    time.sleep(0.02)
time.sleep(5)  # the sockets stay open (and silent) while the test looks
PY
flood=$!
handled() { [ $(( $(counter tftp_duplicates) - dup0 + $(counter tftp_refused_busy) - busy0 + $(counter tftp_requests) - req0 )) -ge 1900 ]; }
wait_for 5 "the TFTP flood counted" handled
threads_during=$(threads) dup=$(( $(counter tftp_duplicates) - dup0 )) busy=$(( $(counter tftp_refused_busy) - busy0 )) req=$(( $(counter tftp_requests) - req0 ))
[ "$req" -le 8 ] || fail "$req TFTP transfers started for one address, more than tftp_max_per_client (8)"
[ "$dup" -ge 8 ] && [ "$busy" -ge 1500 ] || fail "flood: $dup duplicates, $busy refused busy"
[ "$threads_during" -le $((threads_before + 2)) ] || fail "cm-pxed's threads went from $threads_before to $threads_during during the flood"
wait "$flood" || fail "the flood script failed: $(cat "$T/flood.log")"
tftp_after_flood() { rm -f "$T/got2.bin"; (cd "$T" && tftp_get -g -b 1468 -r payload.bin -l got2.bin) && cmp -s "$T/boot/payload.bin" "$T/got2.bin"; }
wait_for 40 "a TFTP download after the flood" tftp_after_flood
kill -0 "$PID_pxed" || fail "cm-pxed died"
log "TFTP flood: $req transfers, $dup duplicates dropped, $busy refused busy; threads $threads_before → $threads_during; a download after it intact"
before=$(cmctl pxe status --json | jq '.counters.dhcp_malformed // 0')
ip netns exec "$CL" python3 - <<'PY'
import socket, os
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
s.bind(("0.0.0.0", 68))
for p in [b"", b"\x01", os.urandom(300), b"\x01\x01\x06\x00" + b"\x00" * 232 + b"\x63\x82\x53\x63" + b"\x35\x05\x01", b"\x02" * 400]:
    s.sendto(p, ("255.255.255.255", 67))
PY
malformed_at_least() { [ "$(cmctl pxe status --json | jq '.counters.dhcp_malformed // 0')" -ge "$1" ]; }
wait_for 5 "malformed DHCP datagrams counted" malformed_at_least $((before + 4))
kill -0 "$PID_pxed" || fail "cm-pxed died"

# cm-healthd checks cm-pxed's inventory nodes: no second list to keep in sync.
mkdir -p "$T/hc/etc" "$T/hc/state"
printf '[cluster]\nname = "pxe"\n' > "$T/hc/etc/cluster.toml"
printf '[metrics]\nenabled = false\n[[check]]\nname = "ping"\ntype = "icmp"\ninterval = "500ms"\nrise = 1\n' > "$T/hc/etc/healthd.toml"
start_bg healthd ip netns exec "$NS" "$BIN/cm-healthd" --config-dir "$T/hc/etc" --state-dir "$T/hc/state" --runtime-dir "$T/run" --log-target stderr
cmctl node add 52:54:00:77:00:99 --name probe1 --address 10.177.0.250 >/dev/null
ping_state() { cmctl health list --json | jq -r '.[] | select(.id == "ping@probe1") | .state'; }
probe_is() { [ "$(ping_state)" = "$1" ]; }
wait_for 10 "cm-healthd checks the inventory node probe1 and finds it up" probe_is up
cmctl node rm probe1 >/dev/null
wait_for 5 "probe1's check goes with it" probe_is ""
kill -TERM "$PID_healthd"

# An existing cluster's inventory comes in as CSV and goes out as TOML and back.
printf 'name,mac,address,group,kernel_args\nimp1,52:54:00:77:01:01,10.177.0.60,default,quiet\n,52:54:00:77:01:02,,,\n' > "$T/nodes.csv"
out=$(cmctl node import "$T/nodes.csv") && [ "$out" = "$T/nodes.csv: 2 nodes added, 0 updated" ] || fail "CSV import said: $out"
[ "$(node_field 52:54:00:77:01:01 address)" = 10.177.0.60 ] && [ "$(node_field 52:54:00:77:01:01 kernelArgs)" = quiet ] || { nodes; fail "imp1 not imported as written"; }
cmctl node export > "$T/export.toml"
grep -q '^name = "imp1"$' "$T/export.toml" && grep -q '^address = "10.177.0.60"$' "$T/export.toml" || fail "export lacks imp1"
total=$(nodes | jq length)
out=$(cmctl node import "$T/export.toml") && [ "$out" = "$T/export.toml: 0 nodes added, $total updated" ] || fail "re-import of the export said: $out"
printf 'name,mac\nbad,zz\n' > "$T/bad.csv"
out=$(cmctl node import "$T/bad.csv" 2>&1) && fail "a bad CSV was imported"
echo "$out" | grep -q "bad.csv:2:1: mac: \"zz\" is not a MAC address" || fail "bad CSV error was: $out"
[ "$(nodes | jq length)" = "$total" ] || fail "a failed import changed the inventory"
printf 'name,mac,address\nimp3,52:54:00:77:01:03,\nimp4,52:54:00:77:01:04,10.177.0.60\n' > "$T/clash.csv"
out=$(cmctl node import "$T/clash.csv" 2>&1) && fail "an import that takes imp1's address went through"
echo "$out" | grep -q 'entry 2 (52:54:00:77:01:04).*nothing imported' || fail "clashing import said: $out"
[ "$(nodes | jq length)" = "$total" ] && [ -z "$(node_field 52:54:00:77:01:03 name)" ] || { nodes; fail "a refused import added a node"; }
# Anybody can fetch any MAC address's script; only a fetch from the address DHCP gave that
# MAC address is recorded. From web1's fixed address, for a MAC address nobody knows:
cmctl node add 52:54:00:77:00:98 --name web1 --address 10.177.0.250 >/dev/null
ip netns exec "$CL" curl -fsS "http://$SERVER:8067/boot/52-54-00-77-09-01.ipxe" | grep -q '^#!ipxe' || fail "no script for an unknown MAC"
[ -z "$(node_field 52:54:00:77:09:01 name)" ] && [ "$(node_field 52:54:00:77:00:98 name)" = web1 ] || { nodes; fail "a script fetch made a node"; }
pass "HTTP: 206 for a range, 416 past the end, 404 for .., nothing on 127.0.0.1; TFTP: traversal, absolute, symlink escape and write refused ($refused refusals); 3 MB intact; malformed DHCP counted; cm-pxed alive; cm-healthd follows the inventory; CSV import, TOML export and re-import; a clashing import and a stray script fetch change nothing"

log "5. proxyDHCP beside dnsmasq"
kill -TERM "$PID_pxed"; wait "$PID_pxed" 2>/dev/null || true
pxed_conf proxy
pxed_start
start_bg dnsmasq ip netns exec "$NS" dnsmasq --no-daemon --conf-file=/dev/null --interface=br0 --bind-interfaces --port=0 \
  --dhcp-range=10.177.0.200,10.177.0.220,1h --dhcp-leasefile="$T/dnsmasq.leases" --log-dhcp
wait_for 5 "dnsmasq serves DHCP" grep -q "DHCP, IP range" "$T/dnsmasq.log"
vm proxy 52:54:00:77:00:08 tap0
vm_wait proxy 240
paddr=$(node_field 52:54:00:77:00:08 seenAddress)
case "$paddr" in 10.177.0.2[0-2][0-9]) ;; *) nodes; fail "the proxy-booted node's address $paddr is not from dnsmasq's range" ;; esac
grep -q "proxyDHCP" "$T/pxed.log" || fail "no proxyDHCP exchange logged"
[ "$(node_field 52:54:00:77:00:08 address)" = null ] || fail "an address seen in proxy mode became the node's fixed address"
pass "proxyDHCP: dnsmasq gave $paddr, cm-pxed the boot file; $(node_field 52:54:00:77:00:08 name) booted"
# Proxy mode: the other DHCP server gives web1's fixed address to a new machine. Its script
# fetch records where it was seen, and deletes or changes no other node, across a kill -9.
ip netns exec "$CL" curl -fsS "http://$SERVER:8067/boot/52-54-00-77-09-02.ipxe" >/dev/null || fail "script fetch failed"
[ "$(node_field 52:54:00:77:09:02 seenAddress)" = 10.177.0.250 ] || { nodes; fail "the fetch from the boot network was not recorded"; }
kill -KILL "$PID_pxed"; wait "$PID_pxed" 2>/dev/null || true
pxed_start
[ "$(node_field 52:54:00:77:00:98 name)" = web1 ] && [ "$(node_field 52:54:00:77:00:98 address)" = 10.177.0.250 ] || { nodes; fail "web1 did not survive a script fetch from its address"; }
pass "a script fetch from web1's address in proxy mode left web1 as it was, across kill -9"

log "6. follow_vipd: only the active master answers DHCP"
kill -TERM "$PID_dnsmasq" "$PID_pxed"; wait "$PID_pxed" 2>/dev/null || true
pxed_conf dhcp
sed -i 's/^interface = "br0"$/interface = "br0"\nfollow_vipd = true/' "$T/etc/pxed.toml"
pxed_start
probe() { ip netns exec "$CL" python3 "$(dirname "$0")/dhcp-probe.py" eth0 52:54:00:77:00:aa 1.5; }
active_is() { [ "$(cmctl pxe status --json | jq .active)" = "$1" ]; }
active_is false || fail "cm-pxed is active without cm-vipd"
! probe >/dev/null || fail "a standby cm-pxed answered DHCP"
mkdir -p "$T/vip"
printf '[[instance]]\nname = "boot"\ninterface = "br0"\nvrid = 60\npriority = 100\nadvert_interval = "100ms"\naddresses = ["10.177.0.99/24"]\n' > "$T/vip/vipd.toml"
start_bg vipd ip netns exec "$NS" "$BIN/cm-vipd" --config-dir "$T/vip" --state-dir "$T/vip" --runtime-dir "$T/run" --log-target stderr
wait_for 10 "cm-vipd makes this master active and cm-pxed follows" active_is true
out=$(probe) || fail "the active master did not answer DHCP"
kill -TERM "$PID_vipd"
wait_for 5 "cm-pxed goes silent when cm-vipd stops" active_is false
! probe >/dev/null || fail "cm-pxed answered DHCP after cm-vipd stopped"
pass "standby without cm-vipd; active (offer: $out) while cm-vipd is master; silent again after it stops"

kill -TERM "$PID_pxed"
t0=$(now_ms); wait "$PID_pxed" 2>/dev/null || true
[ $(( $(now_ms) - t0 )) -lt 3000 ] || fail "cm-pxed took more than 3 s to stop"
pass "cm-pxed stops on SIGTERM"
