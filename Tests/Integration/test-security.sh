#!/usr/bin/env bash
# Control-socket security: a uid outside root/clustermaker is refused (by the socket file's
# mode, and by SO_PEERCRED when the mode would let it in); a member of group clustermaker
# gets in, also when the daemon runs as the units run it (user clustermaker, /proc
# hidepid=invisible); an oversized or garbage frame closes only that connection.
. "$(dirname "$0")/lib.sh"

getent group clustermaker >/dev/null || groupadd --system clustermaker
CMGID=$(getent group clustermaker | cut -d: -f3)
mkdir -p "$T/etc" "$T/state" "$T/run"
printf '[cluster]\nname = "sec"\n[[node]]\nname = "local"\naddress = "127.0.0.1"\n' > "$T/etc/cluster.toml"
printf '[metrics]\nenabled = false\n[[check]]\nname = "lo"\ntype = "icmp"\n' > "$T/etc/healthd.toml"
chmod -R a+rX "$T"

start_bg healthd "$BIN/cm-healthd" $(healthd_args)
wait_for 15 "control socket" test -S "$T/run/healthd.sock"
wait_for 10 "daemon answers" cmctl status --config-dir "$T/etc"
mode=$(stat -c '%a %G' "$T/run/healthd.sock")
[ "$mode" = "660 clustermaker" ] || fail "socket is '$mode', expected '660 clustermaker'"
pass "socket bound by the daemon is 0660 group clustermaker"

as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
as_member() { setpriv --reuid=nobody --regid=nogroup --groups="$CMGID" "$@"; }

rc=0; as_nobody "$BIN/cmctl" health list --runtime-dir "$T/run" > "$T/nobody1.out" 2>&1 || rc=$?
cat "$T/nobody1.out"
[ "$rc" -eq 77 ] || fail "nobody through a 0660 socket: exit $rc, expected 77"
pass "nobody is kept out by the socket's mode (exit 77)"

chmod 0666 "$T/run/healthd.sock"   # now only SO_PEERCRED stands between nobody and the daemon
rc=0; as_nobody "$BIN/cmctl" health list --runtime-dir "$T/run" > "$T/nobody2.out" 2>&1 || rc=$?
cat "$T/nobody2.out"
[ "$rc" -eq 77 ] || fail "nobody through a 0666 socket: exit $rc, expected 77"
grep -q 'permission denied: cm-healthd accepts only root and members of group clustermaker' "$T/nobody2.out" || fail "no clear refusal message"
grep -q 'refused connection from pid' "$T/healthd.log" || fail "the refusal is not logged"
pass "SO_PEERCRED refuses uid nobody with a clear message, and logs it"

as_member "$BIN/cmctl" health list --runtime-dir "$T/run" > "$T/member.out" 2>&1 || { cat "$T/member.out"; fail "a member of group clustermaker was refused"; }
pass "a member of group clustermaker is let in"

for kind in oversized garbage; do
  out=$(python3 "$(dirname "$0")/wire-raw.py" "$T/run/healthd.sock" "$kind")
  echo "$out"
  echo "$out" | tail -1 | grep -qx closed || fail "$kind frame: connection not closed"
  echo "$out" | grep -q '"kind":"error"' || fail "$kind frame: no error frame before closing"
  cmctl health list >/dev/null || fail "daemon unusable after a $kind frame"
done
kill -0 "$PID_healthd" || fail "daemon died"
pass "oversized and garbage frames close only their own connection; the daemon serves on"

# Under the units the daemon runs as user clustermaker with ProtectProc=invisible, which mounts
# /proc hidepid=invisible: it cannot see other users' processes, so a member's supplementary
# groups must come from the socket (SO_PEERGROUPS), not from /proc/PID/status. Reproduce that
# sandbox without systemd, as ../shared/TESTBED.md describes, and ask again.
getent passwd clustermaker >/dev/null ||
  useradd --system --gid clustermaker --no-create-home --home-dir /var/lib/clustermaker \
    --shell /usr/sbin/nologin --comment "ClusterMaker daemons" clustermaker
mkdir -p "$T/sandbox/state" "$T/sandbox/run"
chown clustermaker:clustermaker "$T/sandbox/state" "$T/sandbox/run"
start_bg sandboxed unshare -m --propagation private sh -c \
  'mount -t proc -o hidepid=invisible proc /proc && exec setpriv --reuid=clustermaker --regid=clustermaker --init-groups "$@"' \
  sh "$BIN/cm-healthd" --config-dir "$T/etc" --state-dir "$T/sandbox/state" --runtime-dir "$T/sandbox/run" --log-target stderr
wait_for 15 "sandboxed control socket" test -S "$T/sandbox/run/healthd.sock"
wait_for 10 "sandboxed daemon answers" "$BIN/cmctl" status --runtime-dir "$T/sandbox/run"
# The sandbox is what it should be, or the checks below prove nothing.
[ "$(stat -c %U "/proc/$PID_sandboxed")" = clustermaker ] || fail "the sandboxed daemon does not run as user clustermaker"
grep -q '^proc /proc proc .*hidepid=invisible' "/proc/$PID_sandboxed/mounts" || fail "the sandboxed daemon's /proc is not hidepid=invisible"
pass "cm-healthd runs as user clustermaker with /proc hidepid=invisible"

as_member "$BIN/cmctl" health list --runtime-dir "$T/sandbox/run" > "$T/sandbox-member.out" 2>&1 ||
  { cat "$T/sandbox-member.out"; fail "a member of group clustermaker (supplementary) was refused by the sandboxed daemon"; }
pass "the sandboxed daemon lets in a member of group clustermaker whose primary group is another"

# More groups than the daemon's first SO_PEERGROUPS buffer holds (64): it must ask again.
many=$(seq -s, 60001 60100),$CMGID
setpriv --reuid=nobody --regid=nogroup --groups="$many" "$BIN/cmctl" health list --runtime-dir "$T/sandbox/run" > "$T/sandbox-many.out" 2>&1 ||
  { cat "$T/sandbox-many.out"; fail "a member of group clustermaker with 101 supplementary groups was refused"; }
pass "the sandboxed daemon lets in a member with 101 supplementary groups"

chmod 0666 "$T/sandbox/run/healthd.sock"   # only the peer check stands between nobody and the daemon
rc=0; as_nobody "$BIN/cmctl" health list --runtime-dir "$T/sandbox/run" > "$T/sandbox-nobody.out" 2>&1 || rc=$?
cat "$T/sandbox-nobody.out"
[ "$rc" -eq 77 ] || fail "nobody through the sandboxed daemon's 0666 socket: exit $rc, expected 77"
grep -q 'permission denied: cm-healthd accepts only root and members of group clustermaker' "$T/sandbox-nobody.out" || fail "no clear refusal message from the sandboxed daemon"
pass "the sandboxed daemon still refuses uid nobody without the group"
