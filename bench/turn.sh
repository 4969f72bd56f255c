#!/usr/bin/env bash
# Relayed datagrams per second through gatehouse's TURN server and through
# coturn's turnserver, on this machine, in one run: same load client
# (bench/turnbench, pion's TURN client), same packet size, same number of
# allocations, UDP on loopback. Prints both rates and their ratio.
#
#   bench/turn.sh [seconds] [clients] [size]
#
# Needs Go and the Debian package coturn (turnserver). Uses 127.0.0.1 only.
set -euo pipefail

seconds=${1:-10}
clients=${2:-8}
size=${3:-160}
gh_port=34791
co_port=34792

command -v turnserver >/dev/null || { echo "turn.sh: turnserver not found: apt-get install coturn" >&2; exit 1; }

cd "$(dirname "$0")/.."
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/turnbench" ./bench/turnbench

"$work/turnbench" serve -listen "127.0.0.1:$gh_port" -user bench -password bench 2>"$work/gatehouse.log" &
pids+=($!)
# coturn as packaged, with its defaults (one relay thread per core), told
# only what the comparison needs: loopback, one account, no TLS, no CLI.
turnserver -n --listening-ip=127.0.0.1 --listening-port="$co_port" --relay-ip=127.0.0.1 \
	--min-port=40000 --max-port=44999 --lt-cred-mech --user=bench:bench --realm=bench \
	--no-tls --no-dtls --no-cli --allow-loopback-peers --total-quota=0 --user-quota=0 \
	--log-file="$work/coturn.log" --simple-log >/dev/null 2>&1 &
pids+=($!)
sleep 1

run() { # name port
	local line
	line=$("$work/turnbench" load -server "127.0.0.1:$2" -user bench -password bench \
		-clients "$clients" -size "$size" -duration "${seconds}s")
	echo "$1: $line" >&2
	sed -n 's/^relayed_pps=\([0-9]*\).*/\1/p' <<<"$line"
}
gatehouse=$(run gatehouse $gh_port)
coturn=$(run coturn $co_port)

echo "relayed datagrams/s, $clients allocations, $size-byte payload, ${seconds}s each:"
echo "  gatehouse $gatehouse"
echo "  coturn    $coturn"
awk -v g="$gatehouse" -v c="$coturn" 'BEGIN { printf "  ratio gatehouse/coturn %.2f\n", g / c }'
