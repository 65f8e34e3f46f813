#!/usr/bin/env bash
# Rebooting nodes through their BMC: cm-pxed (mode off) in a master namespace, and a node
# whose BMC is OpenIPMI's simulator (ipmi_sim, a real IPMI v2.0 LAN server from Debian's
# openipmi) on its own address, its chassis control hook recording what it is told.
#  1. cmctl node reboot --via ipmi: ipmitool asks the power state, then resets the node.
#  2. A node that is off is powered on instead.
#  3. No --via: SSH cannot (the node never booted an image: no host key), so the BMC resets
#     it, and the answer says why SSH was not used.
#  4. A wrong password, a BMC that does not answer, a node without a BMC: refused with
#     ipmitool's or cm-pxed's words, and nothing is done.
# The SSH way is proven against a real node in test-image-qemu.
. "$(dirname "$0")/lib.sh"
for c in ipmi_sim ipmitool jq; do command -v $c >/dev/null || fail "$c is not installed (scripts/test installs it)"; done

NET=10.181.0
lan_create
host_create m $NET.1/24
host_create bmc $NET.21/24

# --- the BMC: ipmi_sim with a chassis control hook ---------------------------------------
mkdir -p "$T/bmc/state" "$T/etc" "$T/state" "$T/run"
cat > "$T/bmc/control.sh" <<'SH'
#!/bin/sh
# ipmi_sim's chassis_control hook: "0x20 get power" prints power:0|1; "0x20 set NAME VALUE".
d=$(dirname "$0")
[ -f "$d/power" ] || echo 1 > "$d/power"
case "$2" in
get) echo "power:$(cat "$d/power")" ;;
set) echo "$3 $4" >> "$d/actions"
     case "$3" in power) echo "$4" > "$d/power" ;; esac ;;
*) exit 1 ;;
esac
SH
chmod 755 "$T/bmc/control.sh"
cat > "$T/bmc/lan.conf" <<CONF
name "cmnode"
set_working_mc 0x20
  startlan 1
    addr $NET.21 623
    priv_limit admin
    allowed_auths_admin md5
    guid 0123456789abcdef0123456789abcdef
  endlan
  chassis_control "$T/bmc/control.sh 0x20"
  user 2 true "admin" "bmc-secret" admin 10 md5
CONF
cat > "$T/bmc/cm.emu" <<'EMU'
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02
mc_enable 0x20
EMU
start_bg ipmi_sim ip netns exec "$(ns_of bmc)" ipmi_sim -n -c "$T/bmc/lan.conf" -f "$T/bmc/cm.emu" -s "$T/bmc/state"
printf 'bmc-secret\n' > "$T/etc/ipmi-password"; chmod 640 "$T/etc/ipmi-password"
ipmi() { ip netns exec "$(ns_of m)" ipmitool -I lanplus -C 3 -N 1 -R 1 -H $NET.21 -U admin -f "$T/etc/ipmi-password" "$@"; }
wait_for 15 "ipmi_sim answers" ipmi mc info

# --- cm-pxed knowing the BMC ---------------------------------------------------------------
cat > "$T/etc/pxed.toml" <<CONF
[pxed]
mode = "off"
interface = "eth0"
server_address = "$NET.1"
tftp_port = 0
http_port = 18069
images_dir = "$T/state/images"
reboot_timeout = "10s"
[ipmi]
user = "admin"
password_file = "$T/etc/ipmi-password"
cipher_suite = 3
[[group]]
name = "default"
CONF
"$BIN/cm-pxed" --check-config --config-dir "$T/etc" >/dev/null || fail "pxed.toml does not pass --check-config"
start_bg pxed ip netns exec "$(ns_of m)" "$BIN/cm-pxed" --config-dir "$T/etc" --state-dir "$T/state" --runtime-dir "$T/run" --log-target stderr
wait_for 10 "cm-pxed answers" cmctl pxe status
cmctl node add 52:54:00:81:00:01 --name n1 --address $NET.11 --bmc $NET.21 >/dev/null
cmctl node add 52:54:00:81:00:02 --name n2 --address $NET.12 >/dev/null
cmctl node show n1 | grep -q "bmc: *$NET.21" || fail "cmctl node show does not show n1's BMC: $(cmctl node show n1)"
actions() { cat "$T/bmc/actions" 2>/dev/null; }

log "1. --via ipmi resets a node that is on"
cmctl node reboot n1 --via ipmi > "$T/reboot1.out" 2>&1 || fail "cmctl node reboot n1 --via ipmi: $(cat "$T/reboot1.out")"
grep -q "n1 is being reset by its BMC ($NET.21)" "$T/reboot1.out" || fail "cmctl said: $(cat "$T/reboot1.out")"
[ "$(actions)" = "reset 1" ] || fail "the BMC was told: $(actions)"
grep -q "node n1 (52:54:00:81:00:01) is rebooting (reset by its BMC at $NET.21), asked by" "$T/pxed.log" || fail "cm-pxed's log: $(tail -3 "$T/pxed.log")"
pass "cmctl node reboot --via ipmi: cm-pxed asked the BMC for the power state and reset the node; logged with who asked"

log "2. a node that is off is powered on"
ipmi chassis power off >/dev/null
: > "$T/bmc/actions"
cmctl node reboot n1 --via ipmi > "$T/reboot2.out" 2>&1 || fail "cmctl node reboot n1 (off): $(cat "$T/reboot2.out")"
[ "$(actions)" = "power 1" ] || fail "the BMC was told: $(actions)"
pass "a node that is off is powered on, not reset"

log "3. without --via: SSH cannot (no host key), so the BMC resets it"
: > "$T/bmc/actions"
cmctl node reboot n1 > "$T/reboot3.out" 2>&1 || fail "cmctl node reboot n1: $(cat "$T/reboot3.out")"
grep -q "not over SSH: node n1 has no SSH host key" "$T/reboot3.out" && grep -q "reset by its BMC" "$T/reboot3.out" \
  || fail "cmctl said: $(cat "$T/reboot3.out")"
[ "$(actions)" = "reset 1" ] || fail "the BMC was told: $(actions)"
pass "a node SSH cannot reboot is reset by its BMC, and cmctl says why not over SSH"

log "4. refusals: a node without a BMC, a wrong password, a BMC that does not answer"
: > "$T/bmc/actions"
if cmctl node reboot n2 > "$T/reboot4.out" 2>&1; then fail "n2 (no host key, no BMC) was rebooted: $(cat "$T/reboot4.out")"; fi
grep -q "no SSH host key" "$T/reboot4.out" || fail "n2's refusal: $(cat "$T/reboot4.out")"
if cmctl node reboot n2 --via ipmi > "$T/reboot5.out" 2>&1; then fail "n2 was reset without a BMC"; fi
grep -q "has no BMC address" "$T/reboot5.out" || fail "n2's refusal: $(cat "$T/reboot5.out")"
printf 'wrong\n' > "$T/etc/ipmi-password"
if cmctl node reboot n1 --via ipmi > "$T/reboot6.out" 2>&1; then fail "a wrong BMC password reset the node"; fi
grep -q "asking node n1's BMC at $NET.21 for its power state" "$T/reboot6.out" || fail "wrong password: $(cat "$T/reboot6.out")"
printf 'bmc-secret\n' > "$T/etc/ipmi-password"
cmctl node set n1 --bmc $NET.99 >/dev/null
start=$(now_ms)
if cmctl node reboot n1 --via ipmi > "$T/reboot7.out" 2>&1; then fail "a BMC that does not exist reset the node"; fi
took=$(( $(now_ms) - start ))
[ "$took" -lt 12000 ] || fail "the refusal took $took ms (reboot_timeout 10 s)"
grep -q "$NET.99" "$T/reboot7.out" || fail "dead BMC: $(cat "$T/reboot7.out")"
[ -z "$(actions)" ] || fail "the BMC was told something during the refusals: $(actions)"
cmctl pxe status --json | jq -e '.counters.node_ipmi_resets == 3' >/dev/null || fail "counters: $(cmctl pxe status --json | jq -c .counters)"
pass "refused with the reason (no BMC, ipmitool's error for a wrong password, no answer in $took ms), the BMC told nothing"
