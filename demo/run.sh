#!/usr/bin/env bash
# Runs gatehouse on the demo configuration, on loopback ports, without root:
# a stand-in PBX web server on 127.0.0.1:8081 behind gatehouse on :8080 and
# :8443, and the admin UI on :9443. Shows a routed request, two refused ones
# and the blacklist from the admin API, then keeps running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build # cheap when nothing changed; never a stale binary

# The demo's ports are fixed, so that the README's URLs work: say which one
# is taken, by what, and what to do, rather than fail halfway.
for port in 8080 8443 8081 9443; do
	if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
		echo "demo: port $port on 127.0.0.1 is already in use (another \`make demo\`, or another server):" >&2
		(command -v ss >/dev/null && ss -ltnp "sport = :$port" | tail -n +2) >&2 || true
		echo "demo: stop it (Ctrl-C in the other demo's terminal), then run \`make demo\` again." >&2
		exit 1
	fi
done
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/pbx" ./demo/pbx
"$work/pbx" -dir "$work" -listen 127.0.0.1:8081 &
for _ in $(seq 50); do [ -s "$work/gatehouse.key" ] && break; sleep 0.1; done
hash=$(echo demo | bin/gatehouse hash-password)
sed -e "s#@DIR@#$work#g" -e "s#@HASH@#$hash#g" demo/gatehouse.yaml > "$work/gatehouse.yaml"

bin/gatehouse check -config "$work/gatehouse.yaml"
bin/gatehouse run -config "$work/gatehouse.yaml" &
gh=$!
# Wait for the admin listener: a probe of a service port would itself be a
# suspicious connection (it sends nothing).
up=
for _ in $(seq 50); do
	(exec 3<>/dev/tcp/127.0.0.1/9443) 2>/dev/null && { up=1; break; }
	kill -0 "$gh" 2>/dev/null || break # exited: its log above says why
	sleep 0.1
done
if [ -z "$up" ]; then
	echo "demo: gatehouse did not start (its log is above); nothing was shown." >&2
	exit 1
fi

if command -v curl >/dev/null; then
	show() { echo; echo "\$ curl $*"; curl -sS -w '[HTTP %{http_code}]\n' "$@" || true; }
	show --cacert "$work/ca.crt" --resolve hq.example.com:8443:127.0.0.1 https://hq.example.com:8443/PBX0/MY/index.htm
	show --cacert "$work/ca.crt" --resolve hq.example.com:8443:127.0.0.1 https://hq.example.com:8443/PBX0/ADMIN.xml
	show --resolve intranet.example.com:8080:127.0.0.1 http://intranet.example.com:8080/
	# The admin certificate is self-signed: -k here, its fingerprint is in the log.
	show -k -u admin:demo https://127.0.0.1:9443/api/blacklist
else
	echo "curl is not installed: try https://hq.example.com:8443/PBX0/MY/ (hq.example.com → 127.0.0.1)"
fi
if [ "${DEMO_ONESHOT:-}" = 1 ]; then # the test of the demo stops here
	exit 0
fi
echo
echo "gatehouse is running on 127.0.0.1:8080 (http) and :8443 (https); config $work/gatehouse.yaml."
echo "Admin UI: https://127.0.0.1:9443/ (user admin, password demo; self-signed certificate). Ctrl-C stops."
wait
