#!/usr/bin/env bash
# cm-lbd in network namespaces: a client, the load balancer and three backends running real
# nginx on one bridge; cm-healthd checks the backends and cm-lbd follows it.
#  1. Round-robin over three backends in HTTP and TCP mode; X-Forwarded-For carries the client;
#     PROXY v2 read by nginx; half-close in TCP mode; client_timeout; a chunked POST.
#  2. A backend killed (SIGKILL) under wrk load in HTTP mode: 0 non-2xx, 0 socket errors; it
#     leaves the pool (cm-healthd) and rejoins when restarted. In TCP mode a dead backend's
#     refused connects are retried on another server: 0 errors with connection per request.
#  3. Drain: a download in flight on the drained backend completes; no new request reaches it;
#     with all drained, cm-lbd's own 503; undrain brings them back.
#  4. Restart under load with the listening sockets held as systemd does: 0 errors.
#  5. SIGHUP: a bad lbd.toml keeps the old config (file:line:column logged); a good one
#     removes a server while a download through it goes on to the end.
#  6. Bad servers: one that never answers → 504 at server_timeout, one that closes → 502.
#     Bad input: garbage → 400, oversized headers → 431, oversized body → 413, each closing
#     only its own connection while other clients go on. A request head sent a byte every
#     100 ms → 408 at http_request_timeout, logged; its frontend at max_connections holds
#     its next client in the listen queue while another frontend answers at once.
#  7. WebSocket (python3-websockets client and echo server) through an HTTP frontend.
#  8. Metrics: `cmctl lb metrics` read by prometheus-node-exporter's textfile collector, with
#     the counts `cmctl lb status` shows, section 6's 504 and 502 among the errors, its 408
#     and full frontend counted.
. "$(dirname "$0")/lib.sh"
command -v wrk >/dev/null || fail "wrk is not installed (scripts/test installs it)"
HERE=$(cd "$(dirname "$0")" && pwd)

lan_create
host_create c1 10.199.9.50/24
host_create lb 10.199.9.10/24
for i in 1 2 3; do host_create "b$i" "10.199.9.2$i/24"; done
LB=10.199.9.10

# backend_conf N: nginx on 10.199.9.2N:8080 answering "bN <X-Forwarded-For>", a 4 MiB file
# served at 1 MiB/s (a download that takes a while), and X-Backend on every response.
mkdir -p "$T/www"; head -c 4194304 /dev/urandom > "$T/www/big"; BIG_SUM=$(sha256sum < "$T/www/big" | cut -d' ' -f1)
backend_conf() {
  local d="$T/b$1"; mkdir -p "$d"
  cat > "$d/nginx.conf" <<CONF
worker_processes 1; pid $d/nginx.pid; error_log $d/error.log; daemon off;
events { worker_connections 1024; }
http {
  access_log off; keepalive_requests 100000;
  client_body_temp_path $d; proxy_temp_path $d; fastcgi_temp_path $d; uwsgi_temp_path $d; scgi_temp_path $d;
  server {
    listen 10.199.9.2$1:8080 backlog=1024;
    add_header X-Backend b$1 always;
    location / { return 200 "b$1 \$http_x_forwarded_for\n"; }
    location = /big { root $T/www; limit_rate 1m; }
    location = /fast/big { alias $T/www/big; }
  }
  server { listen 10.199.9.2$1:8081 proxy_protocol; location / { return 200 "pp \$proxy_protocol_addr:\$proxy_protocol_port\n"; } }
}
CONF
}
backend_start() { start_bg "nginx-b$1" ip netns exec "$(ns_of "b$1")" nginx -c "$T/b$1/nginx.conf" -p "$T/b$1"; }
for i in 1 2 3; do backend_conf "$i"; backend_start "$i"; done

mkdir -p "$T/etc" "$T/state/healthd" "$T/state/lbd" "$T/run"
cat > "$T/etc/cluster.toml" <<CONF
[cluster]
name = "lb"
[[node]]
name = "b1"
address = "10.199.9.21"
[[node]]
name = "b2"
address = "10.199.9.22"
[[node]]
name = "b3"
address = "10.199.9.23"
CONF
printf '[metrics]\nenabled = false\n[[check]]\nname = "web"\ntype = "tcp"\nport = 8080\ninterval = "200ms"\ntimeout = "150ms"\nrise = 2\nfall = 2\n' > "$T/etc/healthd.toml"
lbd_conf() { # SERVERS: 3, or 2 without b3
  cat > "$T/etc/lbd.toml" <<CONF
[lbd]
drain_timeout = "5s"
[[frontend]]
name = "web"
listen = "$LB:80"
mode = "http"
backend = "web"
connect_timeout = "500ms"
max_header_bytes = 4096
max_body_bytes = 65536
[[frontend]]
name = "raw"
listen = "$LB:81"
mode = "tcp"
backend = "web"
connect_timeout = "500ms"
[[frontend]]
name = "pp"
listen = "$LB:82"
mode = "tcp"
backend = "pp"
proxy_protocol = true
[[frontend]]
name = "idle"
listen = "$LB:83"
mode = "tcp"
backend = "web"
client_timeout = "1s"
server_timeout = "1s"
[[frontend]]
name = "slow"
listen = "$LB:84"
mode = "http"
backend = "hang"
server_timeout = "1s"
http_request_timeout = "1s"
max_connections = 1
[[frontend]]
name = "rude"
listen = "$LB:85"
mode = "http"
backend = "rude"
[[frontend]]
name = "ws"
listen = "$LB:86"
mode = "http"
backend = "ws"
[[backend]]
name = "ws"
[[backend.server]]
address = "10.199.9.22:8765"
[[backend]]
name = "hang"
[[backend.server]]
address = "10.199.9.21:8090"
[[backend]]
name = "rude"
[[backend.server]]
address = "10.199.9.21:8091"
[[backend]]
name = "pp"
[[backend.server]]
address = "10.199.9.21:8081"
[[backend]]
name = "web"
health_check = "web"
fail_backoff = "2s"
[[backend.server]]
address = "10.199.9.21:8080"
node = "b1"
[[backend.server]]
address = "10.199.9.22:8080"
node = "b2"
CONF
  [ "$1" = 3 ] && printf '[[backend.server]]\naddress = "10.199.9.23:8080"\nnode = "b3"\n' >> "$T/etc/lbd.toml"
  return 0
}
lbd_conf 3
"$BIN/cm-lbd" --check-config --config-dir "$T/etc" >/dev/null || fail "lbd.toml does not pass --check-config"
start_bg healthd ip netns exec "$(ns_of lb)" "$BIN/cm-healthd" --config-dir "$T/etc" --state-dir "$T/state/healthd" --runtime-dir "$T/run" --log-target stderr
lbd_args() { echo --config-dir "$T/etc" --state-dir "$T/state/lbd" --runtime-dir "$T/run" --log-target stderr; }
# cm-lbd runs under fdholder.py: the frontends' sockets are held like systemd's socket units.
start_bg lbd ip netns exec "$(ns_of lb)" python3 "$HERE/fdholder.py" "web=$LB:80,raw=$LB:81" "$BIN/cm-lbd" $(lbd_args)
lb_status() { cmctl lb status --json; }
server_state() { lb_status | jq -r --arg a "$1" '.backends[] | select(.name == "web") | .servers[] | select(.address == $a) | .state'; }
state_is() { [ "$(server_state "$1")" = "$2" ]; }
client() { ip netns exec "$(ns_of c1)" "$@"; }
all_up() { for i in 1 2 3; do state_is "10.199.9.2$i:8080" up || return 1; done; }
wait_for 15 "cm-lbd serves with three servers up" all_up
grep -q 'socket from systemd' "$T/lbd.log" || fail "cm-lbd did not take the frontend sockets it was passed"

log "1. round-robin, X-Forwarded-For"
for mode in http tcp; do
  port=80; [ $mode = tcp ] && port=81
  seen=$(for _ in 1 2 3 4 5 6; do client curl -sf "http://$LB:$port/"; done | sort | uniq -c | awk '{print $1 "x" $2}' | tr '\n' ' ')
  [ "$seen" = "2xb1 2xb2 2xb3 " ] || fail "$mode mode: six requests spread as '$seen', not two per backend"
done
xff=$(client curl -sf "http://$LB/" | awk '{print $2}')
[ "$xff" = 10.199.9.50 ] || fail "the backend saw X-Forwarded-For '$xff', not the client 10.199.9.50"
# TCP mode with proxy_protocol: nginx (listen ... proxy_protocol) learns the client's address.
pp=$(client curl -sf --local-port 40123 "http://$LB:82/")
[ "$pp" = "pp 10.199.9.50:40123" ] || fail "through a PROXY v2 frontend nginx saw '$pp', not 'pp 10.199.9.50:40123'"
# TCP mode half-close: the client sends its request and shuts down writing; the answer
# still comes back in full.
half=$(client python3 -c '
import socket, sys
s = socket.create_connection((sys.argv[1], 81), timeout=5)
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
s.shutdown(socket.SHUT_WR)
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.split(b"\r\n\r\n", 1)[-1].decode().split()[0])
' "$LB")
case "$half" in b[123]) ;; *) fail "TCP mode with a half-closed client: got '$half', not a backend's answer";; esac
# client_timeout = 1s: an idle connection is closed after about a second.
idle=$(client python3 -c '
import socket, sys, time
s = socket.create_connection((sys.argv[1], 83), timeout=5)
t = time.monotonic()
closed = s.recv(1) == b""
print(f"{time.monotonic() - t:.1f}" if closed else "open")
' "$LB")
awk -v t="$idle" 'BEGIN { exit !(t >= 0.9 && t <= 2.5) }' || fail "an idle TCP connection with client_timeout = 1s was closed after '$idle' s"
# Pipelined requests in one write: both answered, in order, on the one connection.
piped=$(client python3 -c '
import socket, sys
s = socket.create_connection((sys.argv[1], 80), timeout=5)
s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.count(b"HTTP/1.1 200 OK"))
' "$LB")
[ "$piped" = 2 ] || fail "two pipelined requests got $piped responses"
# A 4 MiB download at full speed arrives byte for byte in both modes.
for port in 80 81; do
  got=$(client curl -sf "http://$LB:$port/fast/big" | sha256sum | cut -d' ' -f1)
  [ "$got" = "$BIG_SUM" ] || fail "4 MiB through port $port arrived changed ($got)"
done
# A chunked request body goes through HTTP mode.
chunked=$(printf 'hello' | client curl -sf -H 'Transfer-Encoding: chunked' --data-binary @- "http://$LB/" | awk '{print $1}')
case "$chunked" in b[123]) ;; *) fail "a chunked POST got '$chunked'";; esac
pass "six requests → two per backend in HTTP and TCP mode; X-Forwarded-For: $xff; PROXY v2 header read by nginx: $pp; half-close answered by $half; idle connection closed after ${idle}s; 2 pipelined requests answered; chunked POST answered by $chunked; 4 MiB intact through both modes"

# wrk_errors OUT: socket errors + non-2xx in a wrk report.
wrk_errors() { awk '/Socket errors/ {gsub(/,/, ""); n = $4 + $6 + $8 + $10} /Non-2xx/ {n += $5} END {print n + 0}' "$1"; }
wrk_requests() { awk '/requests in/ {print $1}' "$1"; }

log "2. a backend killed under load"
client wrk -t2 -c16 -d6s "http://$LB/" > "$T/wrk-kill.out" 2>&1 & WRK=$!
sleep 2
# nginx master and worker: everything in b2's namespace.
ip netns pids "$(ns_of b2)" | xargs -r kill -KILL
server_not_up() { [ "$(server_state "$1")" != up ]; }
wait_for 3 "b2 leaves the pool" server_not_up 10.199.9.22:8080
wait "$WRK" || true
errors=$(wrk_errors "$T/wrk-kill.out"); requests=$(wrk_requests "$T/wrk-kill.out")
[ "$errors" = 0 ] || { cat "$T/wrk-kill.out"; fail "HTTP mode: $errors errors at the client when b2 was killed"; }
state=$(server_state 10.199.9.22:8080)
wait_for 3 "cm-healthd reports b2 down" state_is 10.199.9.22:8080 down
# TCP mode, connection per request, b2 dead: its refused connects are retried unseen.
client wrk -t2 -c8 -d3s -H "Connection: close" "http://$LB:81/" > "$T/wrk-tcp-dead.out" 2>&1
tcp_errors=$(wrk_errors "$T/wrk-tcp-dead.out")
[ "$tcp_errors" = 0 ] || { cat "$T/wrk-tcp-dead.out"; fail "TCP mode with b2 dead: $tcp_errors errors"; }
backend_start 2
wait_for 5 "b2 rejoins the pool" state_is 10.199.9.22:8080 up
b2_seen=$(for _ in 1 2 3 4 5 6; do client curl -sf "http://$LB/"; done | grep -c '^b2' || true)
[ "$b2_seen" -ge 1 ] || fail "b2 is up again but gets no requests"
pass "b2 killed under load: $requests requests, 0 errors (b2 left the pool as "$state", then cm-healthd said down); TCP mode with b2 dead: 0 errors; b2 back and serving"

log "3. drain"
client curl -s -D "$T/drain.headers" -o "$T/drain.body" "http://$LB/big" & DL=$!
wait_for 3 "the download started" test -s "$T/drain.headers"
victim=$(tr -d '\r' < "$T/drain.headers" | awk 'tolower($1) == "x-backend:" {print $2}')
[ -n "$victim" ] || fail "no X-Backend header on the download"
cmctl lb drain "$victim" >/dev/null || fail "cmctl lb drain $victim failed"
state_is "10.199.9.2${victim#b}:8080" drained || fail "$victim is not shown as drained"
others=$(for _ in $(seq 12); do client curl -sf "http://$LB/"; done | awk '{print $1}' | sort -u | tr '\n' ' ')
case " $others" in *" $victim "*) fail "new requests still reach drained $victim ($others)";; esac
wait "$DL" || fail "the download from drained $victim failed"
[ "$(sha256sum < "$T/drain.body" | cut -d' ' -f1)" = "$BIG_SUM" ] || fail "the download from drained $victim is incomplete"
# With every server drained HTTP clients get cm-lbd's own 503, saying why.
for b in b1 b2 b3; do [ "$b" = "$victim" ] || cmctl lb drain "$b" >/dev/null; done
unavailable=$(client curl -s -w ' %{http_code}' "http://$LB/")
case "$unavailable" in "cm-lbd: 503 Service Unavailable: no server of backend web is available"*" 503") ;;
  *) fail "with every server drained the client got '$unavailable'";; esac
for b in b1 b2 b3; do [ "$b" = "$victim" ] || cmctl lb undrain "$b" >/dev/null; done
cmctl lb undrain "$victim" >/dev/null
back=$(for _ in $(seq 6); do client curl -sf "http://$LB/"; done | grep -c "^$victim" || true)
[ "$back" -ge 1 ] || fail "undrained $victim gets no requests"
pass "drained $victim: its download of 4 MiB completed intact, new requests went to $others, all drained → 503 with its reason, undrain brought it back"

log "4. restart under load, sockets held across it"
client wrk -t2 -c16 -d6s -H "Connection: close" "http://$LB/" > "$T/wrk-restart.out" 2>&1 & WRK=$!
client wrk -t1 -c4 -d6s -H "Connection: close" "http://$LB:81/" > "$T/wrk-restart-tcp.out" 2>&1 & WRK2=$!
sleep 2
kill -USR1 "$PID_lbd"
wait_for 8 "cm-lbd restarted" grep -q 'starting again' "$T/lbd.log"
wait "$WRK" "$WRK2" || true
errors=$(( $(wrk_errors "$T/wrk-restart.out") + $(wrk_errors "$T/wrk-restart-tcp.out") ))
[ "$errors" = 0 ] || { cat "$T/wrk-restart.out" "$T/wrk-restart-tcp.out"; fail "$errors errors across the restart"; }
took=$(sed -n 's/.*exited [0-9-]* after \([0-9.]*\)s.*/\1/p' "$T/lbd.log" | tail -1)
wait_for 10 "cm-lbd serves again" all_up
pass "restart under load: $(( $(wrk_requests "$T/wrk-restart.out") + $(wrk_requests "$T/wrk-restart-tcp.out") )) requests, 0 errors, 0 refused (old process drained in ${took}s)"

log "5. reload"
# The cm-lbd that fdholder.py started again in section 4. (Not a pipeline ending in head: under
# pipefail its status was that of the last pid looked at, and the script stopped without a word
# when that was not cm-lbd.)
lbd_pid=""
for p in $(ip netns pids "$(ns_of lb)"); do
  if tr '\0' ' ' 2>/dev/null < "/proc/$p/cmdline" | grep -q "^$BIN/cm-lbd"; then lbd_pid=$p; break; fi
done
[ -n "$lbd_pid" ] || fail "cannot find cm-lbd's pid"
cp "$T/etc/lbd.toml" "$T/lbd.good"
printf '[[backend]]\nname = "web"\nalgorithm = "fastest"\n' >> "$T/etc/lbd.toml"
kill -HUP "$lbd_pid"
wait_for 5 "the bad config is refused" grep -q 'reload refused' "$T/lbd.log"
grep -q 'lbd.toml:[0-9]*:[0-9]*: backend "web": algorithm: "fastest" is not an algorithm' "$T/lbd.log" || fail "no file:line:column for the bad lbd.toml"
[ "$(lb_status | jq '.backends[] | select(.name == "web") | .servers | length')" = 3 ] || fail "the refused config changed the pool"
# A download through b3, then b3 leaves the configuration: the download goes on.
cp "$T/lbd.good" "$T/etc/lbd.toml"
for _ in $(seq 6); do
  rm -f "$T/reload.headers"
  client curl -s -D "$T/reload.headers" -o "$T/reload.body" "http://$LB/big" & DL=$!
  wait_for 3 "a download started" test -s "$T/reload.headers"
  grep -q 'X-Backend: b3' "$T/reload.headers" && break
  kill "$DL" 2>/dev/null; wait "$DL" 2>/dev/null || true
done
grep -q 'X-Backend: b3' "$T/reload.headers" || fail "no download landed on b3"
lbd_conf 2
kill -HUP "$lbd_pid"
web_servers_are() { [ "$(lb_status | jq '.backends[] | select(.name == "web") | .servers | length')" = "$1" ]; }
wait_for 5 "the new config is in force" web_servers_are 2
wait "$DL" || fail "the download through b3 broke on reload"
[ "$(sha256sum < "$T/reload.body" | cut -d' ' -f1)" = "$BIG_SUM" ] || fail "the download through b3 is incomplete after the reload"
pass "SIGHUP: a bad lbd.toml refused with file:line:column, the old pool kept; removing b3 let its download finish"

log "6. bad servers and bad input"
# On b1: port 8090 accepts and never answers, port 8091 reads the request and closes.
cat > "$T/badserver.py" <<'PY'
import socket, sys, threading, time
def serve(port, rude):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.199.9.21", port)); s.listen(64)
    held = []
    while True:
        c, _ = s.accept()
        if rude:
            c.recv(65536); c.close()
        else:
            held.append(c)
threading.Thread(target=serve, args=(8090, False), daemon=True).start()
serve(8091, True)
PY
start_bg badserver ip netns exec "$(ns_of b1)" python3 "$T/badserver.py"
badserver_listens() { [ "$(ip netns exec "$(ns_of b1)" ss -Hltn '( sport = :8090 or sport = :8091 )' | grep -c LISTEN)" = 2 ]; }
wait_for 5 "the bad servers listen" badserver_listens
t0=$(now_ms)
slow=$(client curl -s -w ' %{http_code}' "http://$LB:84/")
slow_ms=$(( $(now_ms) - t0 ))
case "$slow" in "cm-lbd: 504 Gateway Timeout: server 10.199.9.21:8090 sent nothing for 1s"*" 504") ;; *) fail "a server that never answers gave '$slow'";; esac
[ "$slow_ms" -ge 900 ] && [ "$slow_ms" -le 3000 ] || fail "the 504 came after $slow_ms ms, not about 1 s (server_timeout)"
rude=$(client curl -s -w ' %{http_code}' -X POST --data x "http://$LB:85/")
case "$rude" in "cm-lbd: 502 Bad Gateway:"*" 502") ;; *) fail "a server that closes without answering gave '$rude' to a POST";; esac
pass "a silent server → 504 after ${slow_ms} ms (server_timeout 1s); a server closing without an answer → 502"
client wrk -t1 -c4 -d4s "http://$LB/" > "$T/wrk-bad.out" 2>&1 & WRK=$!
# status_of TEXT: the status line cm-lbd answers TEXT with, on a raw connection.
status_of() { client timeout 3 bash -c "exec 3<>/dev/tcp/$LB/80; printf '$1' >&3; head -1 <&3" | tr -d '\r'; }
garbage=$(status_of 'GARBAGE\r\n\r\n')
big=$(client curl -s -o /dev/null -w '%{http_code}' -H "X-Big: $(head -c 6000 /dev/zero | tr '\0' a)" "http://$LB/")
body=$(client curl -s -o /dev/null -w '%{http_code}' --data-binary @"$T/www/big" "http://$LB/")
wait "$WRK" || true
[ "$garbage" = "HTTP/1.1 400 Bad Request" ] || fail "garbage got '$garbage', not 400"
[ "$big" = 431 ] || fail "6000 bytes of header got $big, not 431"
[ "$body" = 413 ] || fail "a 4 MiB body got $body, not 413"
errors=$(wrk_errors "$T/wrk-bad.out")
[ "$errors" = 0 ] || { cat "$T/wrk-bad.out"; fail "other clients saw $errors errors"; }
client curl -sf "http://$LB/" >/dev/null || fail "cm-lbd does not answer after the bad input"
pass "garbage → 400, big headers → 431, big body → 413; $(wrk_requests "$T/wrk-bad.out") requests from other clients meanwhile, 0 errors"
# A request head trickled a byte every 100 ms to the slow frontend (http_request_timeout 1s,
# max_connections 1). While it holds the frontend's one connection a second client of that
# frontend waits in the listen queue (then gets the hang backend's 504 a server_timeout later),
# and the web frontend answers at once.
trickle=$(client python3 -c '
import socket, sys, threading, time
lb = sys.argv[1]
t0 = time.monotonic()
slow = socket.create_connection((lb, 84), timeout=5)
answer = {}
def trickle():
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200 + b"\r\n\r\n"
    slow.settimeout(0.1)
    got = b""
    for byte in head:
        try:
            slow.send(bytes([byte]))
            got += slow.recv(4096)
        except socket.timeout:
            continue
        except OSError:
            break
        if got:
            break
    answer["at"] = time.monotonic() - t0
    answer["status"] = got.split(b"\r\n")[0].decode()
    slow.close()
th = threading.Thread(target=trickle)
th.start()
time.sleep(0.3)
second = socket.create_connection((lb, 84), timeout=10)
second.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
w0 = time.monotonic()
web = socket.create_connection((lb, 80), timeout=5)
web.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
web_status = web.recv(64).split(b"\r\n")[0].decode()
web_ms = (time.monotonic() - w0) * 1000
second_status = second.recv(64).split(b"\r\n")[0].decode()
second_at = time.monotonic() - t0
th.join()
t_status, t_at = answer["status"], answer["at"]
print(f"{t_status}|{t_at:.2f}|{web_status}|{web_ms:.0f}|{second_status}|{second_at:.2f}")
' "$LB")
IFS='|' read -r t_status t_at w_status w_ms s_status s_at <<< "$trickle"
[ "$t_status" = "HTTP/1.1 408 Request Timeout" ] || fail "a trickled request head got '$trickle', not 408"
awk -v t="$t_at" 'BEGIN { exit !(t >= 0.9 && t <= 2.5) }' || fail "the 408 came after $t_at s, not about 1 s (http_request_timeout)"
[ "$w_status" = "HTTP/1.1 200 OK" ] && [ "$w_ms" -lt 500 ] || fail "with the slow frontend full the web frontend gave '$w_status' after $w_ms ms"
[ "$s_status" = "HTTP/1.1 504 Gateway Timeout" ] || fail "the slow frontend's queued client got '$s_status', not the hang backend's 504"
awk -v s="$s_at" -v t="$t_at" 'BEGIN { exit !(s >= t + 0.9) }' || fail "the slow frontend's second client was answered at $s_at s, before the first left at $t_at s (max_connections 1)"
wait_for 3 "the 408 is logged" grep -q 'frontend slow: client 10.199.9.50 did not complete a request head within http_request_timeout 1s; answered 408' "$T/lbd.log"
pass "a head trickled a byte per 100 ms → 408 after ${t_at}s, logged; meanwhile web answered in ${w_ms} ms and the full slow frontend's next client waited until ${s_at}s"

# 7. WebSocket through an HTTP frontend: real peers from python3-websockets, an echo server
#    on b2 and a client; 100 messages and one of 100 KiB come back intact.
log "7. WebSocket through http mode"
start_bg wsecho ip netns exec "$(ns_of b2)" /usr/bin/python3 "$HERE/ws-echo.py" serve 10.199.9.22 8765
wait_for 5 "the WebSocket echo server on b2" ip netns exec "$(ns_of b2)" bash -c 'exec 3<>/dev/tcp/10.199.9.22/8765'
ws=$(client timeout 20 /usr/bin/python3 "$HERE/ws-echo.py" client "ws://$LB:86/") || fail "WebSocket through cm-lbd: $ws"
[ "$ws" = "ok 101 messages" ] || fail "WebSocket through cm-lbd: '$ws'"
pass "WebSocket upgrade through the http frontend: $ws echoed intact (101 Switching Protocols, then a tunnel)"

log "8. metrics through prometheus-node-exporter's textfile collector"
mkdir -p "$T/textfile"
# (node-exporter prints large values as 1.234567e+06: compared as numbers.)
# As cm-lbd(8) says: written aside and renamed, so that the exporter never reads half a file.
cmctl lb metrics > "$T/textfile/cm-lbd.prom.tmp" || fail "cmctl lb metrics failed"
mv "$T/textfile/cm-lbd.prom.tmp" "$T/textfile/cm-lbd.prom"
lb_status | jq -r '.frontends[] | "\(.name) \(.mode) \(.backend) \(.requests) \(.errors)"' > "$T/status-counts.txt"
start_bg exporter ip netns exec "$(ns_of lb)" prometheus-node-exporter --web.listen-address=127.0.0.1:9109 \
  --collector.disable-defaults --collector.textfile --collector.textfile.directory="$T/textfile"
scrape() { ip netns exec "$(ns_of lb)" curl -sf http://127.0.0.1:9109/metrics > "$T/scraped.txt"; }
wait_for 10 "prometheus-node-exporter serves" scrape
grep -qx 'node_textfile_scrape_error 0' "$T/scraped.txt" || { grep -i textfile "$T/scraped.txt" "$T/exporter.log"; fail "node-exporter could not read cmctl lb metrics"; }
# scraped NAME FRONTEND MODE BACKEND: the sample's value as node-exporter serves it.
scraped() {
  awk -v k="$1{backend=\"$4\",frontend=\"$2\",mode=\"$3\"}" '$1 == k {printf "%d", $2}' "$T/scraped.txt"
}
while read -r name mode backend requests errors; do
  [ "$(scraped cm_lbd_frontend_requests_total "$name" "$mode" "$backend")" = "$requests" ] \
    || fail "frontend $name: node-exporter serves requests_total '$(scraped cm_lbd_frontend_requests_total "$name" "$mode" "$backend")', cmctl lb status says $requests"
  [ "$(scraped cm_lbd_frontend_errors_total "$name" "$mode" "$backend")" = "$errors" ] \
    || fail "frontend $name: node-exporter serves errors_total '$(scraped cm_lbd_frontend_errors_total "$name" "$mode" "$backend")', cmctl lb status says $errors"
done < "$T/status-counts.txt"
web=$(scraped cm_lbd_frontend_requests_total web http web)
# Section 6's 504 and 502 came from cm-lbd itself (counters start again with the restart of section 4).
slow=$(scraped cm_lbd_frontend_errors_total slow http hang); rude=$(scraped cm_lbd_frontend_errors_total rude http rude)
[ "${slow:-0}" -ge 1 ] && [ "${rude:-0}" -ge 1 ] || fail "section 6's 504 and 502 are not counted as errors (slow '$slow', rude '$rude')"
timeouts=$(scraped cm_lbd_frontend_request_timeouts_total slow http hang); full=$(scraped cm_lbd_frontend_full_total slow http hang)
[ "${timeouts:-0}" = 1 ] && [ "${full:-0}" -ge 1 ] || fail "section 6's 408 and full slow frontend are not counted (request_timeouts '$timeouts', full '$full')"
up=$(grep -c '^cm_lbd_server_up{backend="web",.*} 1$' "$T/scraped.txt" || true)
[ "$up" = 2 ] || fail "$up servers of web shown up, not 2 (b3 left in section 5)"
pass "cmctl lb metrics read by prometheus-node-exporter without an error, its counts those of cmctl lb status ($(wc -l < "$T/status-counts.txt") frontends; web $web requests, the 504 and 502 of section 6 counted, its 408 and full frontend too), $up servers of web up"
