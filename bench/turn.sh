#!/usr/bin/env bash
# Relayed datagrams per second through gatehouse's TURN server and through
# coturn's turnserver, on this machine, in one run: same load client
# (bench/turnbench, pion's TURN client), same packet size, same number of
# allocations, UDP on loopback. Prints the rates and their ratios.
#
#   bench/turn.sh [seconds] [clients] [size]
#
# Environment:
#   BASELINE   other turnbench binaries, space-separated (built from earlier
#              commits: go build -o /tmp/turnbench-old ./bench/turnbench),
#              each measured under its file name in the same run,
#              interleaved with the others
#   ROUNDS     rounds of gatehouse, [baselines,] coturn; medians printed [3]
#   THREADS    threads each server runs on: GOMAXPROCS for turnbench serve
#              (gatehouse and baselines; one UDP socket per GOMAXPROCS) and
#              coturn's --relay-threads [1]
#   PROFILE    1: perf-record turnbench serve (gatehouse and baselines)
#              during its last round and print its share of samples in the
#              kernel and its hottest symbols (needs perf) [0]
#
# Needs Go and the Debian package coturn (turnserver). Uses 127.0.0.1 only.
set -euo pipefail

seconds=${1:-10}
clients=${2:-8}
size=${3:-160}
gh_port=34791
co_port=34792
bl_port=34793 # and up, one per baseline
BASELINE=${BASELINE:-}
ROUNDS=${ROUNDS:-3}
PROFILE=${PROFILE:-0}
THREADS=${THREADS:-1}

for b in $BASELINE; do
	[ -x "$b" ] || { echo "turn.sh: BASELINE $b is not an executable" >&2; exit 1; }
done
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

# Subjects: name, port, pid of the server.
names=(gatehouse) ports=($gh_port) spids=()
GOMAXPROCS=$THREADS "$work/turnbench" serve -listen "127.0.0.1:$gh_port" -user bench -password bench 2>"$work/gatehouse.log" &
pids+=($!) spids+=($!)
i=0
for b in $BASELINE; do
	port=$((bl_port + i))
	i=$((i + 1))
	GOMAXPROCS=$THREADS "$b" serve -listen "127.0.0.1:$port" -user bench -password bench 2>"$work/baseline-$i.log" &
	pids+=($!) spids+=($!)
	names+=("$(basename "$b")") ports+=("$port")
done
# coturn as packaged, with its defaults but for the relay threads, told
# only what the comparison needs: loopback, one account, no TLS, no CLI.
turnserver -n --relay-threads="$THREADS" --listening-ip=127.0.0.1 --listening-port="$co_port" --relay-ip=127.0.0.1 \
	--min-port=40000 --max-port=44999 --lt-cred-mech --user=bench:bench --realm=bench \
	--no-tls --no-dtls --no-cli --allow-loopback-peers --total-quota=0 --user-quota=0 \
	--log-file="$work/coturn.log" --simple-log >/dev/null 2>&1 &
pids+=($!) spids+=($!)
names+=(coturn) ports+=($co_port)

# Each server must relay before the rounds start (coturn takes a moment).
for k in "${!names[@]}"; do
	for try in $(seq 20); do
		"$work/turnbench" load -server "127.0.0.1:${ports[$k]}" -user bench -password bench \
			-clients 1 -duration 200ms >/dev/null 2>&1 && break
		[ "$try" = 20 ] && { echo "turn.sh: ${names[$k]} does not relay" >&2; exit 1; }
		sleep 0.5
	done
done

# cputicks pid: the process's user and system time, in clock ticks.
cputicks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# run name port pid: one round; prints the rate and the server's CPU time
# per relayed datagram in microseconds.
run() {
	local line t0 t1
	t0=$(cputicks "$3")
	line=$("$work/turnbench" load -server "127.0.0.1:$2" -user bench -password bench \
		-clients "$clients" -size "$size" -duration "${seconds}s")
	t1=$(cputicks "$3")
	echo "$1: $line server_cpu=$(((t1 - t0) * 1000 / hz))ms" >&2
	sed -n 's/^relayed_pps=\([0-9]*\).* received=\([0-9]*\).*/\1 \2/p' <<<"$line" |
		awk -v t=$((t1 - t0)) -v hz="$hz" '{ printf "%s %.2f\n", $1, t / hz * 1e6 / (2 * $2) }'
}
med() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# profiled k: run subject k, under perf in the last round with PROFILE=1
# (not coturn).
profiled() {
	local k=$1
	if [ "$PROFILE" = 1 ] && [ "$r" = "$ROUNDS" ] && [ "${names[$k]}" != coturn ]; then
		perf record -o "$work/perf-${names[$k]}.data" -p "${spids[$k]}" -- sleep "$seconds" >/dev/null 2>&1 &
		local perf_pid=$!
		run "${names[$k]}" "${ports[$k]}" "${spids[$k]}"
		wait "$perf_pid"
	else
		run "${names[$k]}" "${ports[$k]}" "${spids[$k]}"
	fi
}
declare -A rates cpus
for r in $(seq "$ROUNDS"); do
	for k in "${!names[@]}"; do
		read -r rate cpu <<<"$(profiled "$k")" || true
		if [ -z "${rate:-}" ] || ! kill -0 "${spids[$k]}" 2>/dev/null; then
			echo "turn.sh: no figure from ${names[$k]} in round $r; its server's log:" >&2
			tail -20 "$work"/*.log >&2 || true
			exit 1
		fi
		rates[$k]="${rates[$k]:-} $rate"
		cpus[$k]="${cpus[$k]:-} $cpu"
	done
done

echo "relayed datagrams/s, $clients allocations, $size-byte payload, ${seconds}s each, $THREADS thread(s) each, median of $ROUNDS rounds:"
declare -A medians
for k in "${!names[@]}"; do
	medians[$k]=$(printf '%s\n' ${rates[$k]} | med)
	printf '  %-22s %8s   (%s)\n' "${names[$k]}" "${medians[$k]}" "${rates[$k]# }"
done
echo "server CPU time per relayed datagram, us, median of $ROUNDS rounds:"
for k in "${!names[@]}"; do
	printf '  %-22s %8s   (%s)\n' "${names[$k]}" "$(printf '%s\n' ${cpus[$k]} | med)" "${cpus[$k]# }"
done
co=$((${#names[@]} - 1))
for k in "${!names[@]}"; do
	[ "$k" = "$co" ] && continue
	awk -v n="${names[$k]}" -v g="${medians[$k]}" -v c="${medians[$co]}" 'BEGIN { printf "  ratio %s/coturn %.2f\n", n, g / c }'
done
for k in "${!names[@]}"; do
	[ "$k" = 0 ] || [ "$k" = "$co" ] && continue
	awk -v n="${names[$k]}" -v g="${medians[0]}" -v c="${medians[$k]}" 'BEGIN { printf "  ratio gatehouse/%s %.2f\n", n, g / c }'
done
if [ "$PROFILE" = 1 ]; then
	for f in "$work"/perf-*.data; do
		name=${f##*/perf-}
		name=${name%.data}
		echo "$name (perf, last round): samples by where, then the hottest symbols"
		perf report -i "$f" -g none --sort dso --stdio 2>/dev/null | grep '%' | grep -v '^#' | head -4 || true
		perf report -i "$f" -g none --sort sym --stdio 2>/dev/null | grep '%' | grep -v '^#' | head -12 || true
	done
fi
