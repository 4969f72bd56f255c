#!/usr/bin/env bash
# Measures a service reached through an agent tunnel against the same
# service reached directly by gatehouse, in one run, interleaved: HTTP
# keep-alive requests/s with p50/p99 latency (wrk) and bulk MB/s (curl of a
# large file). One gatehouse edge holds both services (bench.example.com
# direct, tunnel.example.com through the agent); one `gatehouse agent` fronts
# the same nginx target. Everything on 127.0.0.1, GOMAXPROCS=1 for both
# gatehouse processes. Prints the ratios against the issue's 0.8 target.
#
# Environment: DURATION [10] seconds per wrk run, ROUNDS [3] (median
# counts), CONNS [50], BULK_MB [512], PORT_BASE [28580], GATEHOUSE (a binary
# instead of building this checkout), BASELINE (an earlier build: its own
# edge and agent, on the next ports, measured as "baseline" through its
# tunnel in the same rounds). Needs nginx wrk curl openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin:/usr/local/go/bin" LC_ALL=C
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
BULK_MB=${BULK_MB:-512}
PORT_BASE=${PORT_BASE:-28580}
GATEHOUSE=${GATEHOUSE:-}
BASELINE=${BASELINE:-}
die() { echo "agents.sh: $*" >&2; exit 1; }
for cmd in nginx wrk curl openssl; do command -v "$cmd" >/dev/null || die "$cmd not found"; done

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] && cp -r "$work" "$KEEP"; rm -rf "$work"; }
trap cleanup EXIT
if [ -z "$GATEHOUSE" ]; then
	go build -o "$work/gatehouse" ./cmd/gatehouse
	GATEHOUSE=$work/gatehouse
fi
TARGET=$PORT_BASE
mkdir -p "$work/www"
chmod 755 "$work" "$work/www" # nginx workers run as an unprivileged user
head -c "$((BULK_MB << 20))" /dev/zero >"$work/www/big"
chmod 644 "$work/www/big"
sed -e "s#@WORK@#$work#g" -e "s#@TARGET_WORKERS@#1#g" -e "s#@TARGET_PORT@#$TARGET#g" \
	-e "s#@SMALL_BODY@#$(head -c 200 /dev/zero | tr '\0' x)#g" bench/http/target-nginx.conf.tmpl >"$work/target.conf"
nginx -p "$work" -c "$work/target.conf" & pids+=($!)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=edge.bench \
	-keyout "$work/edge.key" -out "$work/edge.crt" 2>/dev/null
# pair BINARY NAME EDGE_PORT AGENTS_PORT: an edge and its agent.
pair() {
	local bin=$1 name=$2 edge=$3 agents=$4 hash
	mkdir -p "$work/$name"
	hash=$(printf 'bench-token\n' | "$bin" hash-password)
	sed -e "s#@WORK@#$work/$name#g" -e "s#@EDGE@#$edge#g" -e "s#@AGENTS@#$agents#g" -e "s#@TARGET@#$TARGET#g" \
		-e "s#@HASH@#$hash#g" -e "s#$work/$name/edge.#$work/edge.#g" bench/agents/edge.yaml.tmpl >"$work/$name/edge.yaml"
	sed -e "s#@AGENTS@#$agents#g" -e "s#@TARGET@#$TARGET#g" \
		-e "s#@PIN@#$("$bin" fingerprint "$work/edge.crt" | awk '{print $1}')#g" bench/agents/agent.yaml.tmpl >"$work/$name/agent.yaml"
	"$bin" check -config "$work/$name/edge.yaml" >/dev/null
	"$bin" check -config "$work/$name/agent.yaml" >/dev/null
	GOMAXPROCS=1 "$bin" run -config "$work/$name/edge.yaml" 2>"$work/$name/edge.log" & pids+=($!)
	sleep 0.5
	GOMAXPROCS=1 "$bin" agent -config "$work/$name/agent.yaml" 2>"$work/$name/agent.log" & pids+=($!)
	for _ in $(seq 100); do grep -q "tunnel up" "$work/$name/agent.log" && break; sleep 0.1; done
	grep -q "tunnel up" "$work/$name/agent.log" || die "$name: no tunnel: $(cat "$work/$name/agent.log")"
}
EDGE=$((PORT_BASE + 1)) BASE_EDGE=$((PORT_BASE + 3))
pair "$GATEHOUSE" this "$EDGE" $((PORT_BASE + 2))
subjects="direct tunnel"
if [ -n "$BASELINE" ]; then
	pair "$BASELINE" baseline "$BASE_EDGE" $((PORT_BASE + 4))
	subjects="direct tunnel baseline"
fi
# target SUBJECT → "edge-port host"
target() {
	case $1 in
	direct) echo "$EDGE bench.example.com" ;;
	tunnel) echo "$EDGE tunnel.example.com" ;;
	baseline) echo "$BASE_EDGE tunnel.example.com" ;;
	esac
}
for s in $subjects; do
	read -r port host < <(target "$s")
	[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $host" "http://127.0.0.1:$port/small")" = 200 ] ||
		die "$s ($host on $port) does not answer"
done

declare -A rps p50 p99 mbs
ka() { # port host → "req/s p50 p99"; non-2xx answers void the run
	wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "Host: $2" "http://127.0.0.1:$1/small" | awk '
		/Requests\/sec/ {r=$2} /^ +50%/ {a=$2} /^ +99%/ {b=$2} /Non-2xx/ {bad=$NF}
		END {if (bad) print "bad:" bad, a, b; else print r, a, b}'
}
bulk() { # port host → MB/s
	curl -s -o /dev/null -H "Host: $2" -w '%{size_download} %{speed_download}' "http://127.0.0.1:$1/big" |
		awk -v want="$((BULK_MB << 20))" '$1 != want {print "short:" $1; exit} {printf "%.1f", $2 / 1048576}'
}
for round in $(seq "$ROUNDS"); do
	for subject in $subjects; do
		read -r port host < <(target "$subject")
		read -r r a b < <(ka "$port" "$host")
		rps[$subject]+="$r " p50[$subject]+="$a " p99[$subject]+="$b "
		mbs[$subject]+="$(bulk "$port" "$host") "
		echo "round $round $subject: $r req/s p50 $a p99 $b, bulk $(awk '{print $NF}' <<<"${mbs[$subject]}") MB/s" >&2
	done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "$("$GATEHOUSE" version), wrk -c$CONNS -d${DURATION}s, $ROUNDS rounds (median), bulk ${BULK_MB} MiB"
printf '%-8s %12s %10s %10s %10s\n' "" "req/s" "" "" "bulk MB/s"
for s in $subjects; do
	# Latencies as wrk prints them (units vary), one per round.
	printf '%-8s %12s %10s %10s %10s   p50s: %s p99s: %s\n' "$s" "$(median <<<"${rps[$s]}")" "" "" "$(median <<<"${mbs[$s]}")" \
		"${p50[$s]}" "${p99[$s]}"
done
awk -v a="$(median <<<"${rps[tunnel]}")" -v b="$(median <<<"${rps[direct]}")" \
	-v c="$(median <<<"${mbs[tunnel]}")" -v d="$(median <<<"${mbs[direct]}")" 'BEGIN {
	printf "keep-alive tunnel/direct %.2f (target >= 0.8: %s)\n", a / b, (a / b >= 0.8 ? "met" : "NOT met")
	printf "bulk       tunnel/direct %.2f (target >= 0.8: %s)\n", c / d, (c / d >= 0.8 ? "met" : "NOT met")
}'
if [ -n "$BASELINE" ]; then
	awk -v a="$(median <<<"${rps[baseline]}")" -v b="$(median <<<"${rps[direct]}")" \
		-v c="$(median <<<"${mbs[baseline]}")" -v d="$(median <<<"${mbs[direct]}")" 'BEGIN {
		printf "keep-alive baseline/direct %.2f\nbulk       baseline/direct %.2f\n", a / b, c / d
	}'
fi
