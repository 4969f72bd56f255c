#!/usr/bin/env bash
# Measures a service reached through an agent tunnel against the same
# service reached directly by gatehouse, in one run, interleaved: HTTP
# keep-alive requests/s with p50/p99 latency (wrk) and bulk MB/s (curl of a
# large file). One gatehouse edge holds both services (bench.example.com
# direct, tunnel.example.com through the agent); one `gatehouse agent` fronts
# the same nginx target. Everything on 127.0.0.1, GOMAXPROCS=1 for both
# gatehouse processes. Prints the ratios against the issue's 0.8 target:
# of the medians over rounds, and the median of each round's own ratio.
#
# The reference: the same shape built from HAProxy (bench/agents/haproxy-*.cfg.tmpl, one
# thread each): an edge that sends bench.example.com straight to the target
# and tunnel.example.com over HTTP/2 on TLS to a second HAProxy in front of
# the target, measured in the same rounds as haproxy-direct and
# haproxy-tunnel; their ratio says what such a second hop costs a mature
# proxy on this machine.
#
# Environment: DURATION [10] seconds per wrk run, ROUNDS [3] (median
# counts), CONNS [50], BULK_MB [512], PORT_BASE [28580], GATEHOUSE (a binary
# instead of building this checkout), BASELINE (an earlier build: its own
# edge and agent, on the next ports, measured as "baseline" through its
# tunnel in the same rounds), HAPROXY [1 when haproxy is installed] (0:
# leave the reference out), BULK_ONLY [0] (1: only the bulk GETs, the
# subjects' order reversed every other round, so that many short rounds
# compare two builds under the same noise). Needs nginx wrk curl openssl.
#
# IDLE=N measures memory instead: N SIPS registrations held through the
# tunnel (client, edge, agent and target are four processes, so that N=10000
# fits under a descriptor limit of 20000 each), against the same held on a
# fresh edge straight to the target (at most 9000 there: the edge then holds
# two descriptors per client). Prints the RSS growth per connection of edge
# and agent, and the tunnel's cost per stream beyond the direct path.
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
IDLE=${IDLE:-}
SETTLE=${SETTLE:-3}
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
	-addext "subjectAltName=DNS:edge.bench,DNS:bench.example.com,DNS:tunnel.example.com" \
	-keyout "$work/edge.key" -out "$work/edge.crt" 2>/dev/null
# pair BINARY NAME EDGE_PORT AGENTS_PORT: an edge and its agent.
pair() {
	local bin=$1 name=$2 edge=$3 agents=$4 hash
	mkdir -p "$work/$name"
	hash=$(printf 'bench-token\n' | "$bin" hash-password)
	sed -e "s#@WORK@#$work/$name#g" -e "s#@EDGE@#$edge#g" -e "s#@AGENTS@#$agents#g" -e "s#@TARGET@#$TARGET#g" \
		-e "s#@SIPS@#$((edge + 10))#g" -e "s#@SIP_TARGET@#$SIP_TARGET#g" \
		-e "s#@HASH@#$hash#g" -e "s#$work/$name/edge.#$work/edge.#g" bench/agents/edge.yaml.tmpl >"$work/$name/edge.yaml"
	sed -e "s#@AGENTS@#$agents#g" -e "s#@TARGET@#$TARGET#g" -e "s#@SIP_TARGET@#$SIP_TARGET#g" \
		-e "s#@PIN@#$("$bin" fingerprint "$work/edge.crt" | awk '{print $1}')#g" bench/agents/agent.yaml.tmpl >"$work/$name/agent.yaml"
	"$bin" check -config "$work/$name/edge.yaml" >/dev/null
	"$bin" check -config "$work/$name/agent.yaml" >/dev/null
	GOMAXPROCS=1 "$bin" run -config "$work/$name/edge.yaml" 2>"$work/$name/edge.log" & pids+=($!)
	EDGE_PID=$!
	sleep 0.5
	GOMAXPROCS=1 "$bin" agent -config "$work/$name/agent.yaml" 2>"$work/$name/agent.log" & pids+=($!)
	AGENT_PID=$!
	for _ in $(seq 100); do grep -q "tunnel up" "$work/$name/agent.log" && break; sleep 0.1; done
	grep -q "tunnel up" "$work/$name/agent.log" || die "$name: no tunnel: $(cat "$work/$name/agent.log")"
}
SIP_TARGET=$((PORT_BASE + 5))
# idle_mode: IDLE held SIPS registrations, direct and through the tunnel.
idle_mode() {
	local n=$IDLE nd hard
	hard=$(ulimit -Hn)
	ulimit -n "$hard"
	[ "$hard" -ge $((n + 1000)) ] || die "ulimit -Hn $hard is too low for IDLE=$n (need $((n + 1000)) per process)"
	nd=$(((hard - 1000) / 2))
	[ "$nd" -gt "$n" ] && nd=$n
	go build -o "$work/idleclient" ./bench/idleclient
	"$work/idleclient" sip-target -listen "127.0.0.1:$SIP_TARGET" 2>"$work/sip-target.log" & pids+=($!)
	mkfifo "$work/hold.in"
	exec 7<>"$work/hold.in" # keeps the clients' stdin open: they hold until told
	rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
	held() { # port host n → holder pid in HOLDER, once all are held
		local out=$work/hold-$2.out
		"$work/idleclient" hold -addr "127.0.0.1:$1" -proto sips -n "$3" -host "$2" <"$work/hold.in" >"$out" 2>"$out.err" &
		HOLDER=$!
		pids+=("$HOLDER")
		for _ in $(seq 1800); do
			grep -q '^held' "$out" 2>/dev/null && return 0
			kill -0 "$HOLDER" 2>/dev/null || break
			sleep 0.1
		done
		die "the client did not hold $3 on $1 ($2): $(tail -3 "$out.err")"
	}
	warm() { "$work/idleclient" hold -addr "127.0.0.1:$1" -proto sips -n 200 -host "$2" </dev/null >/dev/null || die "warm-up of $2 failed"; }
	stopall() { for p in "$@"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }

	local e=$((PORT_BASE + 1))
	pair "$GATEHOUSE" direct "$e" $((PORT_BASE + 2))
	warm $((e + 10)) bench.example.com
	sleep 1
	local db da
	db=$(rss "$EDGE_PID")
	held $((e + 10)) bench.example.com "$nd"
	sleep "$SETTLE"
	da=$(rss "$EDGE_PID")
	echo "direct: edge RSS $db -> $da KB with $nd held" >&2
	stopall "$HOLDER" "$EDGE_PID" "$AGENT_PID"

	e=$((PORT_BASE + 3))
	pair "$GATEHOUSE" tunnel "$e" $((PORT_BASE + 4))
	warm $((e + 10)) tunnel.example.com
	sleep 1
	local eb ab ea aa
	eb=$(rss "$EDGE_PID") ab=$(rss "$AGENT_PID")
	held $((e + 10)) tunnel.example.com "$n"
	sleep "$SETTLE"
	ea=$(rss "$EDGE_PID") aa=$(rss "$AGENT_PID")
	echo "tunnel: edge RSS $eb -> $ea KB, agent $ab -> $aa KB with $n held" >&2
	stopall "$HOLDER" "$EDGE_PID" "$AGENT_PID"

	echo "$("$GATEHOUSE" version), SIPS registrations held (idleclient hold), GOMAXPROCS=1, one tunnel"
	awk -v n="$n" -v nd="$nd" -v db="$db" -v da="$da" -v eb="$eb" -v ea="$ea" -v ab="$ab" -v aa="$aa" 'BEGIN {
		d = (da - db) / nd; e = (ea - eb) / n; a = (aa - ab) / n
		printf "direct  %6d held: edge   %7.1f KB/connection\n", nd, d
		printf "tunnel  %6d held: edge   %7.1f KB/stream, agent %7.1f KB/stream, together %7.1f\n", n, e, a, e + a
		printf "tunnel beyond direct: %.1f KB per stream (target <= 8 KB: %s)\n", e + a - d, (e + a - d <= 8 ? "met" : "NOT met")
	}'
}
if [ -n "$IDLE" ]; then
	idle_mode
	exit 0
fi
EDGE=$((PORT_BASE + 1)) BASE_EDGE=$((PORT_BASE + 3))
pair "$GATEHOUSE" this "$EDGE" $((PORT_BASE + 2))
subjects="direct tunnel"
if [ -n "$BASELINE" ]; then
	pair "$BASELINE" baseline "$BASE_EDGE" $((PORT_BASE + 4))
	subjects+=" baseline"
fi
HAPROXY=${HAPROXY:-$(command -v haproxy >/dev/null && echo 1 || echo 0)}
HA_EDGE=$((PORT_BASE + 6)) HA_AGENT=$((PORT_BASE + 7))
if [ "$HAPROXY" = 1 ]; then
	cat "$work/edge.crt" "$work/edge.key" >"$work/edge.pem"
	for f in haproxy-edge haproxy-agent; do
		sed -e "s#@WORK@#$work#g" -e "s#@TARGET@#$TARGET#g" -e "s#@HA_EDGE@#$HA_EDGE#g" -e "s#@HA_AGENT@#$HA_AGENT#g" \
			"bench/agents/$f.cfg.tmpl" >"$work/$f.cfg"
		haproxy -c -q -f "$work/$f.cfg" || die "haproxy refused $work/$f.cfg"
		haproxy -db -f "$work/$f.cfg" >"$work/$f.log" 2>&1 & pids+=($!)
	done
	for _ in $(seq 50); do
		(exec 3<>"/dev/tcp/127.0.0.1/$HA_EDGE") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$HA_AGENT") 2>/dev/null && break
		sleep 0.1
	done
	subjects+=" haproxy-direct haproxy-tunnel"
fi
# target SUBJECT → "edge-port host"
target() {
	case $1 in
	direct) echo "$EDGE bench.example.com" ;;
	tunnel) echo "$EDGE tunnel.example.com" ;;
	baseline) echo "$BASE_EDGE tunnel.example.com" ;;
	haproxy-direct) echo "$HA_EDGE bench.example.com" ;;
	haproxy-tunnel) echo "$HA_EDGE tunnel.example.com" ;;
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
BULK_ONLY=${BULK_ONLY:-0}
for round in $(seq "$ROUNDS"); do
	order=$subjects
	[ "$BULK_ONLY" = 1 ] && [ $((round % 2)) = 0 ] && order=$(tr ' ' '\n' <<<"$subjects" | tac | tr '\n' ' ')
	for subject in $order; do
		read -r port host < <(target "$subject")
		if [ "$BULK_ONLY" = 1 ]; then
			r=- a=- b=-
		else
			read -r r a b < <(ka "$port" "$host")
		fi
		rps[$subject]+="$r " p50[$subject]+="$a " p99[$subject]+="$b "
		mbs[$subject]+="$(bulk "$port" "$host") "
		echo "round $round $subject: $r req/s p50 $a p99 $b, bulk $(awk '{print $NF}' <<<"${mbs[$subject]}") MB/s" >&2
	done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
if [ "$BULK_ONLY" = 1 ]; then
	echo "$("$GATEHOUSE" version), bulk only, $ROUNDS rounds (median), ${BULK_MB} MiB"
else
	echo "$("$GATEHOUSE" version), wrk -c$CONNS -d${DURATION}s, $ROUNDS rounds (median), bulk ${BULK_MB} MiB"
fi
printf '%-8s %12s %10s %10s %10s\n' "" "req/s" "" "" "bulk MB/s"
for s in $subjects; do
	# Latencies as wrk prints them (units vary), one per round.
	printf '%-8s %12s %10s %10s %10s   p50s: %s p99s: %s\n' "$s" "$(median <<<"${rps[$s]}")" "" "" "$(median <<<"${mbs[$s]}")" \
		"${p50[$s]}" "${p99[$s]}"
done
# ratios SUBJECT [REF] → the per-round ratios SUBJECT/REF (direct) of
# req/s and of MB/s (each round measures both within seconds, so a change
# in the machine's load between rounds cancels out) and their medians.
ratios() {
	local ref=${2:-direct}
	awk -v a="${rps[$1]}" -v b="${rps[$ref]}" -v c="${mbs[$1]}" -v d="${mbs[$ref]}" -v s="$1" -v r="$ref" '
	function med(v, n,   i, j, t) {
		for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j-1] > v[j]; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
		return n % 2 ? v[(n+1)/2] : (v[n/2] + v[n/2+1]) / 2
	}
	BEGIN {
		n = split(a, ra, " "); split(b, rb, " "); split(c, rc, " "); split(d, rd, " ")
		k = 0; m = 0; ks = ""; ms = ""
		for (i = 1; i <= n; i++) {
			if (ra[i] ~ /^[0-9.]+$/ && rb[i] ~ /^[0-9.]+$/ && rb[i] > 0) { kv[++k] = ra[i] / rb[i]; ks = ks sprintf(" %.2f", kv[k]) }
			if (rc[i] ~ /^[0-9.]+$/ && rd[i] ~ /^[0-9.]+$/ && rd[i] > 0) { mv[++m] = rc[i] / rd[i]; ms = ms sprintf(" %.2f", mv[m]) }
		}
		if (k) printf "keep-alive %s/%s per round:%s, median %.2f\n", s, r, ks, med(kv, k)
		printf "bulk       %s/%s per round:%s, median %.2f\n", s, r, ms, m ? med(mv, m) : 0
	}'
}
awk -v a="$(median <<<"${rps[tunnel]}")" -v b="$(median <<<"${rps[direct]}")" \
	-v c="$(median <<<"${mbs[tunnel]}")" -v d="$(median <<<"${mbs[direct]}")" 'BEGIN {
	if (b > 0) printf "keep-alive tunnel/direct %.2f (target >= 0.8: %s)\n", a / b, (a / b >= 0.8 ? "met" : "NOT met")
	printf "bulk       tunnel/direct %.2f (target >= 0.8: %s)\n", c / d, (c / d >= 0.8 ? "met" : "NOT met")
}'
ratios tunnel
if [ -n "$BASELINE" ]; then
	awk -v a="$(median <<<"${rps[baseline]}")" -v b="$(median <<<"${rps[direct]}")" \
		-v c="$(median <<<"${mbs[baseline]}")" -v d="$(median <<<"${mbs[direct]}")" 'BEGIN {
		if (b > 0) printf "keep-alive baseline/direct %.2f\n", a / b
		printf "bulk       baseline/direct %.2f\n", c / d
	}'
	ratios baseline
	ratios tunnel baseline
fi
if [ "$HAPROXY" = 1 ]; then
	echo "reference, the same shape from HAProxy (edge and agent one thread each, HTTP/2 on TLS between):"
	awk -v a="$(median <<<"${rps[haproxy-tunnel]}")" -v b="$(median <<<"${rps[haproxy-direct]}")" \
		-v c="$(median <<<"${mbs[haproxy-tunnel]}")" -v d="$(median <<<"${mbs[haproxy-direct]}")" \
		-v t="$(median <<<"${rps[tunnel]}")" -v u="$(median <<<"${mbs[tunnel]}")" 'BEGIN {
		if (b > 0) printf "keep-alive haproxy-tunnel/haproxy-direct %.2f\n", a / b
		printf "bulk       haproxy-tunnel/haproxy-direct %.2f\n", c / d
		if (a > 0) printf "keep-alive tunnel/haproxy-tunnel %.2f\n", t / a
		printf "bulk       tunnel/haproxy-tunnel %.2f (gatehouse through its agent against HAProxy through its second hop)\n", u / c
	}'
	ratios haproxy-tunnel haproxy-direct
fi
