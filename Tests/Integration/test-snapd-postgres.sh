#!/usr/bin/env bash
# cm-snapd's online snapshots of a PostgreSQL 15 cluster (Debian's) that keeps serving:
#  1. pgbench -c 8 for 60 s with a snapshot every 10 s (cmctl snapshot create --what pg) and a
#     marker writer committing numbered rows: 0 failed transactions.
#  2. Each snapshot restored into a new instance (--to DIR --verify): it starts, replays its
#     WAL, passes pg_amcheck, and holds every marker committed before the snapshot began.
#  3. A restore in place: the server stopped and started by service_control (a script here:
#     PID 1 is not systemd), a safety snapshot first, the markers as the snapshot had them.
#  4. Bad input: an unknown id, an unknown data set, a copy onto an existing path, a full disk
#     (the store on a small tmpfs), cm-snapd killed in the middle of a snapshot: clear errors,
#     nothing half-made listed, the database untouched and serving.
. "$(dirname "$0")/lib.sh"
PGBIN=/usr/lib/postgresql/15/bin
[ -x $PGBIN/pg_basebackup ] && [ -x $PGBIN/pgbench ] || fail "PostgreSQL 15 is not installed (scripts/test installs postgresql-15)"
id postgres >/dev/null 2>&1 || fail "no postgres user (Debian's postgresql-common makes it)"

PORT=54329
mkdir -p "$T/etc" "$T/run" "$T/state" "$T/sock" "$T/sys/etc"
mkdir -p "$T/pg"; chmod 700 "$T/pg"; touch "$T/postgres.log"; chown postgres: "$T/sock" "$T/pg" "$T/postgres.log"
echo m1 > "$T/sys/etc/hostname"
pg() { runuser -u postgres -- "$@"; }
# The servers this test starts (pg_ctl daemonizes them) and its mounts go with it.
finish() {
  local d
  for d in "$T/pg" "$T/bt/pgdata"; do
    [ -f "$d/postmaster.pid" ] && pg $PGBIN/pg_ctl -D "$d" -m immediate stop >/dev/null 2>&1 || true
  done
  umount -l "$T/small" 2>/dev/null || true
  umount -l "$T/bt" 2>/dev/null || true
  cleanup
}
trap finish EXIT
psqlq() { pg $PGBIN/psql -X -q -A -t -h "$T/sock" -p $PORT -d bench "$@"; }

log "a PostgreSQL 15 cluster in $T/pg"
pg $PGBIN/initdb -D "$T/pg" -A peer --no-sync >"$T/initdb.log" 2>&1 || fail "initdb: $(tail -3 "$T/initdb.log")"
cat >> "$T/pg/postgresql.conf" <<CONF
listen_addresses = ''
port = $PORT
unix_socket_directories = '$T/sock'
max_connections = 40
fsync = on
CONF
pg $PGBIN/pg_ctl -D "$T/pg" -l "$T/postgres.log" -w start >/dev/null || fail "postgres did not start"
PGPID=$(head -1 "$T/pg/postmaster.pid")
pg $PGBIN/createdb -h "$T/sock" -p $PORT bench
pg $PGBIN/pgbench -h "$T/sock" -p $PORT -i -s 5 -q bench >"$T/pgbench-init.log" 2>&1 || fail "pgbench -i: $(tail -3 "$T/pgbench-init.log")"
psqlq -c "CREATE TABLE marks(id int PRIMARY KEY)"

# service_control: what systemctl would do for the unit "pg.service".
cat > "$T/svc.sh" <<SH
#!/bin/sh
# cm-snapd's service_control for this test: \$1 is stop or start, then the units.
case "\$1" in
stop) runuser -u postgres -- $PGBIN/pg_ctl -D "$T/pg" -m fast -w stop ;;
start) runuser -u postgres -- $PGBIN/pg_ctl -D "$T/pg" -l "$T/postgres.log" -w start ;;
esac
echo "\$*" >> "$T/svc-calls"
SH
chmod 755 "$T/svc.sh"
cat > "$T/etc/snapd.toml" <<TOML
[snapd]
store = "$T/store"
service_control = "$T/svc.sh"
[system]
paths = ["$T/sys/etc"]
exclude = []
services = []
[timeline]
enabled = false
[[data]]
name = "pg"
type = "postgresql"
path = "$T/pg"
socket_directory = "$T/sock"
port = $PORT
services = ["pg.service"]
TOML
"$BIN/cm-snapd" --check-config --config-dir "$T/etc" >/dev/null || fail "snapd.toml is not valid: $("$BIN/cm-snapd" --check-config --config-dir "$T/etc" 2>&1)"
start_snapd() { rm -f "$T/run/snapd.sock"; start_bg snapd "$BIN/cm-snapd" --config-dir "$T/etc" --runtime-dir "$T/run" --state-dir "$T/state" --log-target stderr; wait_for 10 "cm-snapd's socket" test -S "$T/run/snapd.sock"; }
start_snapd

# --- 0. restore points around changes: the APT hook's halves and cmctl's own changes ---------
log "restore points: the APT hook's pre and post, and cmctl web passwd between a pre and a post"
pre_out=$(cmctl snapshot apt-pre 2>&1)
echo "changed by the upgrade" > "$T/sys/etc/upgraded.conf"
post_out=$(cmctl snapshot apt-post 2>&1)
list=$(cmctl snapshot list --what system --json)
pre=$(jq -r '[.sets[0].snapshots[] | select(.kind == "pre")] | last | .id' <<<"$list")
post=$(jq -r "[.sets[0].snapshots[] | select(.kind == \"post\" and .pre == $pre)] | last | .id" <<<"$list")
[ "$pre" != null ] && [ "$post" != null ] || fail "the APT hook made no pre/post pair: $pre_out / $post_out / $list"
cmctl snapshot diff "$pre" "$post" 2>/dev/null | grep -qx "A /upgraded.conf\|A $T/sys/etc/upgraded.conf" || fail "diff PRE POST does not show the upgrade's file: $(cmctl snapshot diff "$pre" "$post" 2>&1)"
[ ! -e "$T/run/snapd-apt-pre" ] || fail "the APT hook's marker was left behind"
echo "a-long-enough-password" | cmctl web passwd tester --users-file "$T/sys/etc/webd-users" >/dev/null 2>"$T/passwd.err" || fail "cmctl web passwd: $(cat "$T/passwd.err")"
list=$(cmctl snapshot list --what system --json)
jq -e '[.sets[0].snapshots[] | select(.note == "cmctl web passwd tester")] | map(.kind) == ["pre", "post"]' <<<"$list" >/dev/null ||
  fail "no pre/post pair around cmctl web passwd: $(jq -c '[.sets[0].snapshots[] | {id, kind, note}]' <<<"$list")"
pass "restore points: apt's pre and post ($pre, $post; the diff shows the new file), and a pair around cmctl web passwd"

# --- 1. pgbench and a snapshot every 10 s ----------------------------------------------------
log "pgbench -c 8 -j 2 -T 60, a snapshot every 10 s"
# The count is renamed into place: a reader never sees the file empty, as between a truncation
# and a write.
( i=0; while [ ! -f "$T/stop-marks" ]; do i=$((i+1)); psqlq -c "INSERT INTO marks VALUES ($i)" && echo $i > "$T/marks-committed.new" && mv -f "$T/marks-committed.new" "$T/marks-committed"; done ) &
MARKS=$!; PIDS+=($MARKS)
pg $PGBIN/pgbench -h "$T/sock" -p $PORT -c 8 -j 2 -T 60 -P 10 bench >"$T/pgbench.log" 2>&1 &
BENCH=$!; PIDS+=($BENCH)
: > "$T/snaps"
bench_start=$(now_ms)
for round in 1 2 3 4 5; do
  # At 10, 20, … 50 s into the run, however long the previous snapshot took.
  wait_ms=$(( bench_start + round * 10000 - $(now_ms) ))
  [ $wait_ms -le 0 ] || sleep "$(printf '%d.%03d' $((wait_ms / 1000)) $((wait_ms % 1000)))"
  kill -0 $BENCH 2>/dev/null || fail "pgbench ended before snapshot $round"
  floor=$(cat "$T/marks-committed" 2>/dev/null || echo 0)
  [ -n "$floor" ] || fail "no marker count before snapshot $round"
  started=$(now_ms)
  id=$(cmctl snapshot create --what pg --note "round $round" 2>>"$T/cmctl.log") || fail "snapshot $round failed: $(tail -3 "$T/cmctl.log")"
  echo "$id $floor" >> "$T/snaps"
  log "snapshot $id: markers to $floor committed before it began; took $(( $(now_ms) - started )) ms"
done
wait $BENCH || fail "pgbench failed: $(tail -5 "$T/pgbench.log")"
touch "$T/stop-marks"; wait $MARKS || true
grep -q "number of failed transactions: 0 " "$T/pgbench.log" || fail "pgbench reported failed transactions: $(grep -i failed "$T/pgbench.log")"
tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$T/pgbench.log" | head -1)
[ "$(head -1 "$T/pg/postmaster.pid")" = "$PGPID" ] || fail "the server was restarted during the snapshots"
pass "pgbench -c 8 for 60 s with 5 snapshots: 0 failed transactions ($tps tps), the server up throughout"

# --- 2. every snapshot restored into a new instance, verified --------------------------------
VPORT=54330
while read -r id floor; do
  out=$(cmctl snapshot restore "$id" --what pg --to "$T/restored-$id" --verify 2>&1) || fail "restoring snapshot $id: $out"
  echo "$out" | grep -q "pg_amcheck passed" || fail "snapshot $id: no pg_amcheck verdict: $out"
  touch "$T/restored-$id.log"; chown postgres: "$T/restored-$id.log"
  pg $PGBIN/pg_ctl -D "$T/restored-$id" -l "$T/restored-$id.log" -o "-p $VPORT -k $T/sock -c listen_addresses=''" -w start >/dev/null ||
    fail "restored copy $id does not start again: $(tail -3 "$T/restored-$id.log")"
  got=$(pg $PGBIN/psql -X -A -t -h "$T/sock" -p $VPORT -d bench -c "SELECT count(*) FROM marks WHERE id <= $floor")
  accounts=$(pg $PGBIN/psql -X -A -t -h "$T/sock" -p $VPORT -d bench -c "SELECT count(*) FROM pgbench_accounts")
  pg $PGBIN/pg_ctl -D "$T/restored-$id" -m fast -w stop >/dev/null
  [ "$got" = "$floor" ] || fail "snapshot $id lacks markers committed before it: $got of $floor"
  [ "$accounts" = 500000 ] || fail "snapshot $id: $accounts accounts, not 500000"
  rm -rf "$T/restored-$id"
done < "$T/snaps"
pass "each of the 5 snapshots restored into a new instance: WAL replayed, pg_amcheck passed, every marker committed before it present"

# --- 3. in place -------------------------------------------------------------------------------
read -r id3 floor3 < <(sed -n 3p "$T/snaps")
before=$(psqlq -c "SELECT count(*) FROM marks")
out=$(cmctl snapshot restore "$id3" --what pg --yes 2>&1) || fail "restoring $id3 in place: $out"
echo "$out" | grep -q "restarted: pg.service" || fail "the restore did not say it restarted pg.service: $out"
grep -q "^stop pg.service" "$T/svc-calls" && grep -q "^start pg.service" "$T/svc-calls" || fail "service_control was not called: $(cat "$T/svc-calls" 2>/dev/null)"
after=$(psqlq -c "SELECT count(*) FROM marks")
[ "$after" -ge "$floor3" ] && [ "$after" -lt "$before" ] || fail "after restoring snapshot $id3 in place: $after markers (it began at $floor3; there were $before)"
safety=$(echo "$out" | sed -n 's/^safety snapshot: \([0-9]*\).*/\1/p')
[ -n "$safety" ] && cmctl snapshot list --what pg | grep -q "^pg  *$safety  *safety" || fail "no safety snapshot listed: $out"
pass "restore in place: server stopped and started, safety snapshot $safety, $after markers (snapshot $id3 began at $floor3; there were $before)"

# --- 3b. on btrfs: atomic snapshots ------------------------------------------------------------
log "a second cluster in a btrfs subvolume (loop device), its snapshots beside it"
truncate -s 1500M "$T/btrfs.img"
mkfs.btrfs -q "$T/btrfs.img"
mkdir -p "$T/bt"
mount -o loop "$T/btrfs.img" "$T/bt"
btrfs subvolume create "$T/bt/pgdata" >/dev/null
chown postgres: "$T/bt/pgdata"; chmod 700 "$T/bt/pgdata"
touch "$T/postgres-bt.log"; chown postgres: "$T/postgres-bt.log"
BPORT=54331
pg $PGBIN/initdb -D "$T/bt/pgdata" -A peer --no-sync >"$T/initdb-bt.log" 2>&1 || fail "initdb on btrfs: $(tail -3 "$T/initdb-bt.log")"
printf "listen_addresses = ''\nport = $BPORT\nunix_socket_directories = '$T/sock'\n" >> "$T/bt/pgdata/postgresql.conf"
pg $PGBIN/pg_ctl -D "$T/bt/pgdata" -l "$T/postgres-bt.log" -w start >/dev/null || fail "postgres on btrfs did not start"
pg $PGBIN/createdb -h "$T/sock" -p $BPORT bench
pg $PGBIN/pgbench -h "$T/sock" -p $BPORT -i -s 5 -q bench >"$T/pgbench-bt-init.log" 2>&1 || fail "pgbench -i on btrfs"
cat >> "$T/etc/snapd.toml" <<TOML
[[data]]
name = "pgb"
type = "postgresql"
path = "$T/bt/pgdata"
store = "$T/bt/snapshots"
socket_directory = "$T/sock"
port = $BPORT
TOML
reload_bg snapd
pg $PGBIN/pgbench -h "$T/sock" -p $BPORT -c 8 -j 2 -T 20 -P 1 bench >"$T/pgbench-bt.log" 2>&1 &
BENCH=$!; PIDS+=($BENCH)
for round in 1 2 3; do
  sleep 5
  cmctl snapshot create --what pgb --note "btrfs $round" >/dev/null 2>>"$T/cmctl.log" || fail "btrfs snapshot $round: $(tail -3 "$T/cmctl.log")"
done
wait $BENCH || fail "pgbench on btrfs failed: $(tail -5 "$T/pgbench-bt.log")"
grep -q "number of failed transactions: 0 " "$T/pgbench-bt.log" || fail "pgbench on btrfs reported failed transactions"
cmctl snapshot list --what pgb --json > "$T/pgb.json"
# Atomic and O(1): 0.05 s here; 3 s leaves room for a busy machine, a copy takes minutes.
jq -e '[.sets[0].snapshots[] | select(.backend == "btrfs" and .seconds < 3)] | length == 3' "$T/pgb.json" >/dev/null ||
  fail "the btrfs snapshots are not atomic subvolume snapshots under 3 s: $(jq -c '[.sets[0].snapshots[] | {backend, seconds}]' "$T/pgb.json")"
out=$(cmctl snapshot restore 3 --what pgb --to "$T/bt/restored" --verify 2>&1) || fail "restoring btrfs snapshot 3: $out"
echo "$out" | grep -q "pg_amcheck passed" || fail "btrfs snapshot 3: no pg_amcheck verdict: $out"
pass "on btrfs: 3 atomic snapshots under pgbench -c 8 ($(jq -r '[.sets[0].snapshots[].seconds] | max' "$T/pgb.json") s at most), 0 failed transactions; a copy recovers and passes pg_amcheck"

# --- 4. bad input ------------------------------------------------------------------------------
expect_refused() { # WHAT PATTERN CMD...
  local what=$1 pattern=$2; shift 2
  local out
  if out=$("$@" 2>&1); then fail "$what was accepted: $out"; fi
  echo "$out" | grep -q "$pattern" || fail "$what: unclear error: $out"
}
expect_refused "an unknown id" "no snapshot 999 of pg" cmctl snapshot restore 999 --what pg --to "$T/x"
expect_refused "an unknown data set" 'no data set "nope"' cmctl snapshot create --what nope
mkdir -p "$T/exists"
expect_refused "a copy onto an existing path" "exists: a copy is restored to a new path" cmctl snapshot restore "$id3" --what pg --to "$T/exists"
expect_refused "a restore in place without --yes" "add --yes" cmctl snapshot restore "$id3" --what pg

n_before=$(cmctl snapshot list --what pg --json | jq '.sets[0].snapshots | length')
log "cm-snapd killed in the middle of a snapshot (max_rate 8M: the copy takes seconds)"
sed -i 's|^services = \["pg.service"\]|&\nmax_rate = "8M"|' "$T/etc/snapd.toml"
reload_bg snapd
cmctl snapshot create --what pg --note doomed >/dev/null 2>&1 &
CREATE=$!
wait_for 20 "pg_basebackup running" pgrep -f "pg_basebackup -D $T/store"
copying() { compgen -G "$T/store/pg/.partial-*/tree/base" >/dev/null; }
wait_for 20 "pg_basebackup copying" copying
sleep 0.5
# As systemd stops a unit (KillMode=control-group): the daemon and its children.
pkill -KILL -f "pg_basebackup -D $T/store" || true
kill -KILL "$PID_snapd"; wait "$CREATE" 2>/dev/null || true
ls -a "$T/store/pg" | grep -q '^\.partial-' || fail "the killed snapshot left no partial directory: it was not cut short"
sed -i '/^max_rate = /d' "$T/etc/snapd.toml"   # the next snapshot at full speed
start_snapd
n_after=$(cmctl snapshot list --what pg --json | jq '.sets[0].snapshots | length')
[ "$n_after" = "$n_before" ] || fail "a snapshot cut short is listed ($n_before before, $n_after after)"
id=$(cmctl snapshot create --what pg --note "after the kill" 2>>"$T/cmctl.log") || fail "no snapshot after the restart: $(tail -3 "$T/cmctl.log")"
! ls -a "$T/store/pg" | grep -q '^\.partial-' || fail "the partial snapshot was not removed by the next one"
pass "killed mid-snapshot: nothing half-made listed; the next snapshot ($id) removed the partial"

log "a full disk: the store on an 8 MB tmpfs"
mkdir -p "$T/small"
mount -t tmpfs -o size=8m tmpfs "$T/small"
sed -i "s|^store = .*|store = \"$T/small/store\"|" "$T/etc/snapd.toml"
reload_bg snapd
expect_refused "a snapshot onto a full disk" "No space left on device" cmctl snapshot create --what pg
[ "$(cmctl snapshot list --what pg --json | jq '.sets[0].snapshots | length')" = 0 ] || fail "a snapshot cut short by a full disk is listed"
! ls -a "$T/small/store/pg" | grep -q '^\.partial-' || fail "the partial snapshot was left on the full disk"
psqlq -c "SELECT count(*) FROM pgbench_accounts" | grep -qx 500000 || fail "the database is not serving after the full disk"
pass "a full disk: the snapshot refused with the system's words, nothing listed or left, the database serving"
