#!/usr/bin/env bash
# cm-webd with the real daemons in network namespaces, driven by headless Chromium (Debian's
# chromium and chromium-driver through Selenium): a master running cm-healthd, cm-lbd and
# cm-webd (TLS with a self-signed certificate), two nodes running nginx and
# prometheus-node-exporter.
#  1. Bad input: without a session every page redirects to the login and the API answers 401;
#     a POST without the CSRF token, or from another origin, is refused and changes nothing;
#     over-long and malformed requests, unknown routes and path traversal get 4xx, and the
#     server goes on serving; the login is throttled after webd.toml's login_attempts.
#  2. In the browser (webd-browser.py): log in, the overview shows the nodes, drain a backend
#     in the page and see it in `cmctl lb status`, add a node in the page and see it in
#     `cmctl node list`, then remove it; a stopped nginx turns its node red within
#     the check's fall time without a reload, the node's charts are drawn, no console errors,
#     logout. Screenshots of each page: .build/test-artifacts/webd/.
#  3. SIGHUP: a new users file takes effect (a removed user cannot log in).
#  4. `cmctl status` reaches cm-webd's control socket; `--check-config` reports a bad users file.
#  5. PAM: a system account in pam_group logs in with its password; one outside the group,
#     a wrong password and a locked account do not (users and group made for the test).
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
for tool in chromium chromedriver openssl curl; do command -v $tool >/dev/null || fail "$tool is not installed (scripts/test installs it)"; done
/usr/bin/python3 -c "import selenium" 2>/dev/null || fail "python3-selenium is not installed (scripts/test installs it)"
SHOTS=$ROOT/.build/test-artifacts/webd; rm -rf "$SHOTS"; mkdir -p "$SHOTS"

lan_create
host_create m 10.199.12.1/24
host_create n1 10.199.12.11/24
host_create n2 10.199.12.12/24
M=$(ns_of m)
for i in 1 2; do
  nginx_conf "$T/n$i" "10.199.12.1$i" 8080
  start_bg "nginx-n$i" ip netns exec "$(ns_of "n$i")" nginx -c "$T/n$i/nginx.conf" -p "$T/n$i"
  start_bg "exporter-n$i" ip netns exec "$(ns_of "n$i")" prometheus-node-exporter --web.listen-address="10.199.12.1$i:9100" \
    --collector.disable-defaults --collector.cpu --collector.meminfo --collector.loadavg --collector.netdev --collector.diskstats --collector.filesystem
done

mkdir -p "$T/etc/webd" "$T/state" "$T/run"
cat > "$T/etc/cluster.toml" <<CONF
[cluster]
name = "webtest"
[[node]]
name = "n1"
address = "10.199.12.11"
[[node]]
name = "n2"
address = "10.199.12.12"
CONF
printf '[metrics]\ninterval = "1s"\ntimeout = "900ms"\n[[check]]\nname = "web"\ntype = "tcp"\nport = 8080\ninterval = "300ms"\ntimeout = "200ms"\nrise = 2\nfall = 2\n' > "$T/etc/healthd.toml"
cat > "$T/etc/lbd.toml" <<CONF
[[frontend]]
name = "web"
listen = "10.199.12.1:80"
mode = "http"
backend = "web"
[[backend]]
name = "web"
health_check = "web"
[[backend.server]]
address = "10.199.12.11:8080"
node = "n1"
[[backend.server]]
address = "10.199.12.12:8080"
node = "n2"
CONF
openssl req -x509 -newkey rsa:2048 -sha256 -days 2 -nodes -keyout "$T/etc/webd/key.pem" -out "$T/etc/webd/cert.pem" \
  -subj "/CN=10.199.12.1" -addext "subjectAltName=IP:10.199.12.1" 2>/dev/null
cat > "$T/etc/webd.toml" <<CONF
[http]
listen = "10.199.12.1:9443"
tls_certificate = "$T/etc/webd/cert.pem"
tls_key = "$T/etc/webd/key.pem"
[auth]
users_file = "$T/etc/webd-users"
login_attempts = 3
# PAM through /etc/pam.d/other (Debian's common stacks): no file of the test's in /etc/pam.d.
pam_service = "cm-webd-test-$SUFFIX"
pam_group = "cmwt$SUFFIX"
login_window = "1m"
CONF
PASSWORD="pw-$RANDOM-$RANDOM"
echo "$PASSWORD" | "$BIN/cmctl" web passwd admin --config-dir "$T/etc" --cost 10 >/dev/null
echo "second-password" | "$BIN/cmctl" web passwd operator --config-dir "$T/etc" --cost 10 >/dev/null
[ "$(stat -c %a "$T/etc/webd-users")" = 640 ] || fail "the users file is not mode 0640"

# --check-config names the bad line of a users file.
cp "$T/etc/webd-users" "$T/users.good"
echo "broken line" >> "$T/etc/webd-users"
out=$("$BIN/cm-webd" --check-config --config-dir "$T/etc" 2>&1) && fail "--check-config accepted a bad users file"
grep -q "webd-users:3: not NAME:BCRYPT-HASH" <<<"$out" || fail "--check-config did not name the bad line: $out"
cp "$T/users.good" "$T/etc/webd-users"
"$BIN/cm-webd" --check-config --config-dir "$T/etc" >/dev/null || fail "--check-config refused a good configuration"
pass "--check-config checks the users file line by line"

start_bg healthd ip netns exec "$M" "$BIN/cm-healthd" $(healthd_args)
wait_for 10 "cm-healthd's socket" test -S "$T/run/healthd.sock"
start_bg lbd ip netns exec "$M" "$BIN/cm-lbd" --config-dir "$T/etc" --state-dir "$T/state/lbd" --runtime-dir "$T/run" --log-target stderr
wait_for 10 "cm-lbd's socket" test -S "$T/run/lbd.sock"
cat > "$T/etc/pxed.toml" <<CONF
[pxed]
mode = "off"
interface = "eth0"
server_address = "10.199.12.1"
http_port = 18067
tftp_port = 0
images_dir = "$T/state/pxed/images"
[[group]]
name = "default"
CONF
mkdir -p "$T/state/pxed/images"
start_bg pxed ip netns exec "$M" "$BIN/cm-pxed" --config-dir "$T/etc" --state-dir "$T/state/pxed" --runtime-dir "$T/run" --log-target stderr
wait_for 10 "cm-pxed's socket" test -S "$T/run/pxed.sock"
# cm-snapd with restore points of a small tree: the page lists them and takes one.
mkdir -p "$T/snap-src/etc"; echo m1 > "$T/snap-src/etc/hostname"
printf '[snapd]\nstore = "%s"\n[system]\npaths = ["%s"]\nexclude = []\nservices = []\n[timeline]\nenabled = false\n' "$T/snap-store" "$T/snap-src/etc" > "$T/etc/snapd.toml"
start_bg snapd "$BIN/cm-snapd" --config-dir "$T/etc" --runtime-dir "$T/run" --log-target stderr
wait_for 10 "cm-snapd's socket" test -S "$T/run/snapd.sock"
start_bg webd ip netns exec "$M" "$BIN/cm-webd" --config-dir "$T/etc" --runtime-dir "$T/run" --log-target stderr
wait_for 10 "cm-webd's socket" test -S "$T/run/webd.sock"
URL=https://10.199.12.1:9443
mc() { ip netns exec "$M" curl -sk --max-time 5 "$@"; }
wait_for 10 "cm-webd answering" mc -o /dev/null "$URL/login"
wait_for 10 "both checks up" check_state web@n1 up
wait_for 10 "both checks up" check_state web@n2 up
cmctl status 2>/dev/null | grep -q "cm-webd.*console on 10.199.12.1:9443" || fail "cmctl status does not show cm-webd: $(cmctl status 2>&1)"
pass "cm-webd serves TLS on 10.199.12.1:9443 and answers cmctl status"

# /metrics without a session (public_metrics): the daemons' state and the nodes' scraped values.
scraped_in_metrics() { mc "$URL/metrics" > "$T/metrics.txt" && grep -q '^clustermaker_node_cpu_percent{node="n2"} ' "$T/metrics.txt"; }
wait_for 15 "the nodes' CPU in /metrics" scraped_in_metrics
grep -q '^clustermaker_node_memory_used_percent{node="n1"} [0-9]' "$T/metrics.txt" && grep -q '^clustermaker_node_scrape_up{node="n1"} 1$' "$T/metrics.txt" \
  && grep -q '^clustermaker_check_up{check="web",node="n1",type="tcp"} 1$' "$T/metrics.txt" && grep -q '^clustermaker_daemon_up{daemon="cm-pxed"} 1$' "$T/metrics.txt" \
  || fail "/metrics lacks the nodes' or the daemons' values: $(head -c 3000 "$T/metrics.txt")"
pass "/metrics: every daemon's state and each node's CPU, memory and scrape status from its node-exporter"

# --- 1. bad input ----------------------------------------------------------------------------
code() { mc -o /dev/null -w '%{http_code}' "$@"; }
[ "$(code "$URL/nodes")" = 302 ] || fail "a page without a session did not redirect to the login"
[ "$(code "$URL/api/v1/nodes")" = 401 ] || fail "the API without a session did not answer 401"
[ "$(code -X POST -d 'target=n1&drain=1' "$URL/actions/drain")" = 401 ] || fail "an action without a session was not refused"
mc -c "$T/jar" -o /dev/null -d "user=admin&password=$PASSWORD" "$URL/login"
CSRF=$(mc -b "$T/jar" "$URL/" | sed -n 's/.*<meta name="csrf" content="\([^"]*\)".*/\1/p')
[ -n "$CSRF" ] || fail "no CSRF token on the overview after logging in"
[ "$(code -b "$T/jar" -d 'target=n1&drain=1' "$URL/actions/drain")" = 403 ] || fail "a POST without the CSRF token was not refused"
[ "$(code -b "$T/jar" -H 'Origin: https://evil.example' -d "csrf=$CSRF&target=n1&drain=1" "$URL/actions/drain")" = 403 ] || fail "a cross-origin POST was not refused"
cmctl lb status --json | jq -e '[.backends[].servers[] | select(.state == "drained")] | length == 0' >/dev/null || fail "a refused POST drained a server"
for path in /static/../../etc/passwd /static/%2e%2e%2f%2e%2e%2fetc%2fpasswd /no/such/route "/nodes/..%2f..%2fetc"; do
  c=$(code -b "$T/jar" --path-as-is "$URL$path")
  [ "${c:0:1}" = 4 ] || fail "$path answered $c, not 4xx"
done
[ "$(code -b "$T/jar" -H "X-Long: $(head -c 100000 /dev/zero | tr '\0' a)" "$URL/")" = 431 ] ||
  [ "$(code -b "$T/jar" -H "X-Long: $(head -c 100000 /dev/zero | tr '\0' a)" "$URL/")" = 400 ] || fail "a 100 kB header was not refused with 4xx"
head -c 200000 /dev/zero | tr '\0' a > "$T/big"
[ "$(code -b "$T/jar" --data-binary @"$T/big" -H 'Content-Type: application/x-www-form-urlencoded' "$URL/login")" = 413 ] || fail "a 200 kB form was not refused with 413"
printf 'GARBAGE\r\n\r\n' | ip netns exec "$M" timeout 5 openssl s_client -quiet -connect 10.199.12.1:9443 2>/dev/null | head -1 | grep -q '^HTTP/1.1 4' ||
  fail "a malformed request line did not get a 4xx"
# The throttle counts per client address: these come from n2's (the browser below comes from
# the master's own).
n2code() { ip netns exec "$(ns_of n2)" curl -sk --max-time 5 -o /dev/null -w '%{http_code}' "$@"; }
for _ in 1 2 3; do [ "$(n2code -d 'user=admin&password=guess' "$URL/login")" = 200 ] || fail "a wrong password did not get the form again"; done
[ "$(n2code -d "user=admin&password=$PASSWORD" "$URL/login")" = 429 ] || fail "the fourth failed login in a minute was not throttled"
[ "$(code -b "$T/jar" "$URL/")" = 200 ] || fail "the server stopped serving after the bad requests"
grep -q "failed login" "$T/webd.log" || fail "failed logins are not logged"
pass "no session, no CSRF token, another origin, traversal, oversized and malformed requests: 4xx; logins throttled; still serving"

# --- 2. the browser --------------------------------------------------------------------------
log "driving headless Chromium (screenshots: $SHOTS)"
START_N1="setsid ip netns exec $(ns_of n1) nginx -c $T/n1/nginx.conf -p $T/n1 >/dev/null 2>&1 < /dev/null &" \
KILL_N1="kill $(cat "$T/n1/nginx.pid")" CMCTL="$BIN/cmctl" RUNTIME_DIR="$T/run" FALL_SECONDS=1 \
  ip netns exec "$M" /usr/bin/python3 "$HERE/webd-browser.py" "https://10.199.12.1:9443" admin "$PASSWORD" "$SHOTS" 2>"$T/browser.log" | tee "$T/browser-steps.log" ||
  fail "the browser test failed: $(tail -5 "$T/browser.log")"
grep -q "ok: logged out" "$T/browser-steps.log" || fail "the browser test did not finish"
grep -q "admin drained 10.199.12.12:8080" "$T/webd.log" || fail "the drain is not in cm-webd's log with the acting user"
grep -q "admin added node n3" "$T/webd.log" && grep -q "admin removed node n3" "$T/webd.log" || fail "adding and removing n3 is not in cm-webd's log"
cmctl snapshot list --json | jq -e '.sets[0].snapshots[] | select(.note == "from the console")' >/dev/null ||
  fail "the snapshot taken in the page is not in cmctl snapshot list: $(cmctl snapshot list 2>&1)"
grep -q "asked by admin (cm-webd)" "$T/snapd.log" || fail "cm-snapd did not log the console's user"
pass "browser: login, overview, drain, add and remove a node, live red node, charts, a snapshot taken, no console errors, logout"

# --- 3. SIGHUP reads the users file again ----------------------------------------------------
[ "$(code -d 'user=operator&password=second-password' "$URL/login")" = 302 ] || fail "operator cannot log in"
"$BIN/cmctl" web rm operator --config-dir "$T/etc" >/dev/null
kill -HUP "$PID_webd"
wait_for 5 "the reload" grep -q "users file and session settings reloaded" "$T/webd.log"
[ "$(code -d 'user=operator&password=second-password' "$URL/login")" = 200 ] || fail "a removed user can still log in after SIGHUP"
[ "$(code -d "user=admin&password=$PASSWORD" "$URL/login")" = 302 ] || fail "admin cannot log in after SIGHUP"
pass "SIGHUP: a removed user can no longer log in"

# --- 5. PAM with system accounts ------------------------------------------------------------
command -v useradd >/dev/null && command -v chpasswd >/dev/null || fail "useradd/chpasswd missing (package passwd)"
G=cmwt$SUFFIX; UIN=cmwti$SUFFIX; UOUT=cmwto$SUFFIX
pam_cleanup() { userdel "$UIN" 2>/dev/null || true; userdel "$UOUT" 2>/dev/null || true; groupdel "$G" 2>/dev/null || true; }
trap 'pam_cleanup; cleanup' EXIT
groupadd "$G"
useradd -M -N -g users -G "$G" -s /usr/sbin/nologin "$UIN"
useradd -M -N -g users -s /usr/sbin/nologin "$UOUT"
printf '%s:in-group-pass\n%s:out-group-pass\n' "$UIN" "$UOUT" | chpasswd
pam_login() { ip netns exec "$(ns_of n1)" curl -sk --max-time 10 -o /dev/null -D - -d "user=$1&password=$2" "$URL/login" | grep -ci '^set-cookie: cm_session=[^;]'; }
[ "$(pam_login "$UIN" in-group-pass)" = 1 ] || fail "a member of $G could not log in with PAM: $(tail -3 "$T/webd.log")"
[ "$(pam_login "$UOUT" out-group-pass)" = 0 ] || fail "a user outside $G logged in"
grep -q "$UOUT.*not a member of group $G" "$T/webd.log" || fail "the log does not say why $UOUT was refused"
[ "$(pam_login "$UIN" wrong-pass)" = 0 ] || fail "a wrong system password logged in"
usermod -L "$UIN"
[ "$(pam_login "$UIN" in-group-pass)" = 0 ] || fail "a locked account logged in"
pass "PAM: a member of the group logs in; outside the group, a wrong password, a locked account do not"

# --- 6. socket activation -------------------------------------------------------------------
# As cm-webd-https.socket does: systemd holds the listening socket (FileDescriptorName=http) and
# starts cm-webd on the first connection; READY=1 comes once it serves.
start_bg notify python3 "$HERE/notify-listener.py" "$T/notify.sock"
wait_for 5 "notify listener" test -S "$T/notify.sock"
mkdir -p "$T/run2"
start_bg webd2 ip netns exec "$M" systemd-socket-activate -l 10.199.12.1:9444 --fdname=http -E NOTIFY_SOCKET="$T/notify.sock" \
  "$BIN/cm-webd" --config-dir "$T/etc" --runtime-dir "$T/run2" --log-target stderr
wait_for 5 "the activator listening" bash -c "ip netns exec '$M' ss -ltn | grep -q '10.199.12.1:9444'"
[ ! -S "$T/run2/webd.sock" ] || fail "cm-webd started before anyone connected"
[ "$(mc -o /dev/null -w '%{http_code}' https://10.199.12.1:9444/login)" = 200 ] || fail "the first connection to the passed socket was not served: $(tail -5 "$T/webd2.log")"
grep -q "socket from systemd" "$T/webd2.log" || fail "cm-webd did not say it serves systemd's socket: $(tail -5 "$T/webd2.log")"
wait_for 5 "READY=1" grep -q 'READY=1' "$T/notify.log"
pass "socket activation: the first HTTPS connection starts cm-webd on systemd's socket (FileDescriptorName=http); READY=1"
