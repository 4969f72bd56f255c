#!/usr/bin/env bash
# Relayed datagrams per second through gatehouse's TURN server and through
# coturn's turnserver, on this machine, in one run: same load client
# (bench/turnbench, pion's TURN client), same packet size, same number of
# allocations, UDP on loopback. Prints both rates and their ratio.
#
#   bench/turn.sh [seconds] [clients] [size]
#
# Environment:
#   BASELINE   another turnbench binary (built from an earlier commit:
#              go build -o /tmp/turnbench-old ./bench/turnbench) measured as
#              "baseline" in the same run, interleaved with the others
#   ROUNDS     rounds of gatehouse, [baseline,] coturn; medians printed [3]
#   THREADS    threads each server runs on: GOMAXPROCS for turnbench serve
#              (gatehouse and baseline; one UDP socket per GOMAXPROCS) and
#              coturn's --relay-threads [1]
#   PROFILE    1: perf-record turnbench serve (gatehouse, and baseline) during
#              its last round and print its share of samples in the kernel
#              and its hottest symbols (needs perf) [0]
#
# Needs Go and the Debian package coturn (turnserver). Uses 127.0.0.1 only.
set -euo pipefail

seconds=${1:-10}
clients=${2:-8}
size=${3:-160}
gh_port=34791
co_port=34792
bl_port=34793
BASELINE=${BASELINE:-}
ROUNDS=${ROUNDS:-3}
PROFILE=${PROFILE:-0}
THREADS=${THREADS:-1}

[ -z "$BASELINE" ] || [ -x "$BASELINE" ] || { echo "turn.sh: BASELINE=$BASELINE is not an executable" >&2; exit 1; }
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

GOMAXPROCS=$THREADS "$work/turnbench" serve -listen "127.0.0.1:$gh_port" -user bench -password bench 2>"$work/gatehouse.log" &
pids+=($!)
gh_pid=$!
if [ -n "$BASELINE" ]; then
	GOMAXPROCS=$THREADS "$BASELINE" serve -listen "127.0.0.1:$bl_port" -user bench -password bench 2>"$work/baseline.log" &
	pids+=($!)
	bl_pid=$!
fi
# coturn as packaged, with its defaults but for the relay threads, told
# only what the comparison needs: loopback, one account, no TLS, no CLI.
turnserver -n --relay-threads="$THREADS" --listening-ip=127.0.0.1 --listening-port="$co_port" --relay-ip=127.0.0.1 \
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
med() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# profiled name pid port: run, under perf in the last round with PROFILE=1.
profiled() {
	if [ "$PROFILE" = 1 ] && [ "$r" = "$ROUNDS" ]; then
		perf record -o "$work/perf-$1.data" -p "$2" -- sleep "$seconds" >/dev/null 2>&1 &
		local perf_pid=$!
		run "$1" "$3"
		wait "$perf_pid"
	else
		run "$1" "$3"
	fi
}
g=() b=() c=()
for r in $(seq "$ROUNDS"); do
	g+=("$(profiled gatehouse "$gh_pid" $gh_port)")
	[ -z "$BASELINE" ] || b+=("$(profiled baseline "$bl_pid" $bl_port)")
	c+=("$(run coturn $co_port)")
done
gatehouse=$(printf '%s\n' "${g[@]}" | med)
coturn=$(printf '%s\n' "${c[@]}" | med)

echo "relayed datagrams/s, $clients allocations, $size-byte payload, ${seconds}s each, $THREADS thread(s) each, median of $ROUNDS rounds:"
echo "  gatehouse $gatehouse   (${g[*]})"
if [ -n "$BASELINE" ]; then
	baseline=$(printf '%s\n' "${b[@]}" | med)
	echo "  baseline  $baseline   (${b[*]})"
fi
echo "  coturn    $coturn   (${c[*]})"
awk -v g="$gatehouse" -v c="$coturn" 'BEGIN { printf "  ratio gatehouse/coturn %.2f\n", g / c }'
if [ -n "$BASELINE" ]; then
	awk -v g="$baseline" -v c="$coturn" 'BEGIN { printf "  ratio baseline/coturn  %.2f\n", g / c }'
	awk -v g="$gatehouse" -v c="$baseline" 'BEGIN { printf "  ratio gatehouse/baseline %.2f\n", g / c }'
fi
if [ "$PROFILE" = 1 ]; then
	for f in "$work"/perf-*.data; do
		name=${f##*/perf-}
		name=${name%.data}
		echo "$name (perf, last round): samples by where, then the hottest symbols"
		perf report -i "$f" -g none --sort dso --stdio 2>/dev/null | grep '%' | grep -v '^#' | head -4 || true
		perf report -i "$f" -g none --sort sym --stdio 2>/dev/null | grep '%' | grep -v '^#' | head -12 || true
	done
fi
