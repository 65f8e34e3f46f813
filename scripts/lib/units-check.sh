#!/usr/bin/env bash
# Lints the systemd units in units/: `systemd-analyze verify` must print nothing, and
# `systemd-analyze security --offline=true` must rate every service at an exposure of at most
# MAX_EXPOSURE (default 2.0). Prints each service's exposure line.
#   scripts/lib/units-check.sh [BIN]
# The units name /usr/sbin/cm-*, which exist only after scripts/setup; so the units are
# copied to a temporary directory and ExecStart= is pointed at BIN: a directory holding the
# built daemons (`swift build --show-bin-path`; a daemon missing there is replaced by
# /bin/true), or one executable used for every service. Without BIN: /bin/true.
# Documentation=man:... references are checked against the pages in man/ when man(1) exists.
# Needs no root and no systemd as PID 1.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}
BIN=${1:-}

die() { printf 'units-check: %s\n' "$*" >&2; exit 1; }
command -v systemd-analyze >/dev/null || die "systemd-analyze not found (apt-get install systemd)"
[ -z "$BIN" ] || [ -e "$BIN" ] || die "$BIN: no such file or directory"

T=$(mktemp -d /tmp/cm-units.XXXXXX)
trap 'rm -rf "$T"' EXIT
cp "$ROOT"/units/* "$T"/
# A template (name@.socket) is verified as an instance of it: "@18080" (port 18080 on every
# address). An address:port instance is what admins use, but systemd-analyze verify cannot
# load a file whose name holds ":" ("Couldn't process aliases"), though systemd itself can.
for template in "$T"/*@.*; do
  [ -e "$template" ] || continue
  mv "$template" "${template/@./@18080.}"
done

services=()
for unit in "$T"/*.service; do
  name=$(basename "$unit" .service)
  exe=/bin/true
  if [ -d "$BIN" ]; then
    [ -x "$BIN/$name" ] && exe=$(cd "$BIN" && pwd)/$name
  elif [ -n "$BIN" ]; then
    exe=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
  fi
  # Keep the arguments, change only the program.
  sed -i -E "s|^ExecStart=([-@:+!]*)/usr/sbin/$name\\b|ExecStart=\\1$exe|" "$unit"
  grep -q "^ExecStart=[-@:+!]*$exe" "$unit" || die "$name.service: no ExecStart=/usr/sbin/$name to rewrite"
  services+=("$unit")
done
[ ${#services[@]} -gt 0 ] || die "no services in $ROOT/units"

failed=0

# verify: units, their dependencies among each other, and the man pages they cite.
if command -v man >/dev/null; then
  out=$(cd "$T" && MANPATH="$ROOT/man" systemd-analyze verify "$T"/* 2>&1) || true
else
  out=$(cd "$T" && systemd-analyze verify --man=no "$T"/* 2>&1) || true
fi
if [ -n "$out" ]; then
  printf 'units-check: systemd-analyze verify complained:\n%s\n' "${out//$T\//units/}" >&2
  failed=1
else
  echo "systemd-analyze verify: $(cd "$T" && echo *) clean"
fi

# security: one exposure line per service, compared with MAX_EXPOSURE.
for unit in "${services[@]}"; do
  name=$(basename "$unit")
  report=$(cd "$T" && systemd-analyze security --offline=true --no-pager "./$name" 2>&1) || true
  line=$(printf '%s\n' "$report" | grep 'Overall exposure level' || true)
  score=$(printf '%s\n' "$line" | sed -nE 's/.*: ([0-9]+\.[0-9]+) .*/\1/p')
  if [ -z "$score" ]; then
    printf 'units-check: %s: no exposure score in:\n%s\n' "$name" "$report" >&2
    failed=1
    continue
  fi
  echo "$line"
  if awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s > m) }'; then
    printf 'units-check: %s: exposure %s is above %s; what is still open:\n' "$name" "$score" "$MAX_EXPOSURE" >&2
    printf '%s\n' "$report" | grep '✗' >&2 || true
    failed=1
  fi
done

exit $failed
