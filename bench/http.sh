#!/usr/bin/env bash
# Measures gatehouse's HTTP proxying against HAProxy and nginx on this
# machine, in one run: keep-alive requests/s with p50/p99 latency, new
# connections/s and bulk throughput, each also straight to the target (the
# limit of client plus target without any proxy); and over TLS (ECDSA
# P-256, both terminating): HTTPS keep-alive requests/s and new TLS
# connections/s, gatehouse against HAProxy in http mode with ssl. Every
# proxy runs on THREADS threads (gatehouse GOMAXPROCS, HAProxy nbthread,
# nginx workers; default 1) in front of the same nginx target, all on
# 127.0.0.1. Prints a table per metric with ratios, and which of the
# issue's targets are met.
#
# Environment (defaults in brackets):
#   DURATION        seconds per wrk run [10]
#   ROUNDS          runs of every measurement, interleaved; the median counts [3]
#   CONNS           wrk connections [50]
#   TARGET_WORKERS  nginx target worker processes [1]
#   THREADS         threads of every proxy: GOMAXPROCS, nbthread, workers [1]
#   TLS             0: leave out the HTTPS measurements [1]
#   BULK_MB         size of the large file in MiB [1024]
#   BULK_GETS       fetches of it per bulk measurement, on one connection [3]
#   PORT_BASE       first of the five ports used [18480]
#   GATEHOUSE       a gatehouse binary to use instead of building this checkout
#   BASELINE        another gatehouse binary (an earlier build, say) measured as
#                   the subject "baseline" in the same run, interleaved with the
#                   others: a change's effect as the ratio gatehouse / baseline
#   PROFILE         1: afterwards, perf-record gatehouse under keep-alive load
#                   and print the hottest functions [0]
#   PERF_DATA       with PROFILE=1, keep perf.data at this path
#   SYSCALLS        1: afterwards, count the system calls per kept-alive request
#                   of gatehouse, HAProxy (and the baseline) with perf stat [0]
#
# Needs: nginx haproxy wrk curl (and linux-perf for PROFILE=1), and Go unless
# GATEHOUSE is given. Runs as root or not; starts nothing as a service.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin:/usr/local/go/bin" LC_ALL=C

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
TARGET_WORKERS=${TARGET_WORKERS:-1}
BULK_MB=${BULK_MB:-1024}
BULK_GETS=${BULK_GETS:-3}
PORT_BASE=${PORT_BASE:-18480}
GATEHOUSE=${GATEHOUSE:-}
PROFILE=${PROFILE:-0}
PERF_DATA=${PERF_DATA:-}
SYSCALLS=${SYSCALLS:-0}
BASELINE=${BASELINE:-}
THREADS=${THREADS:-1}
TLS=${TLS:-1}

HOST=bench.example.com
TMPL=bench/http
SUBJECTS=(direct gatehouse haproxy-http haproxy-tcp nginx)
TLS_SUBJECTS=(gatehouse-tls haproxy-https) # the HTTPS measurements

die() { echo "http.sh: $*" >&2; exit 1; }
say() { echo "$*" >&2; }

for cmd in nginx haproxy wrk curl; do
	command -v "$cmd" >/dev/null ||
		die "$cmd not found; install: DEBIAN_FRONTEND=noninteractive apt-get install -y nginx haproxy wrk curl"
done
if [ "$PROFILE" = 1 ] || [ "$SYSCALLS" = 1 ]; then
	command -v perf >/dev/null || die "perf not found; install: apt-get install -y linux-perf"
fi
[ -n "$GATEHOUSE" ] || command -v go >/dev/null || die "go not found: install Go or set GATEHOUSE to a binary"

TARGET_PORT=$PORT_BASE
declare -A PORT=(
	[direct]=$TARGET_PORT
	[gatehouse]=$((PORT_BASE + 1))
	[haproxy-http]=$((PORT_BASE + 2))
	[haproxy-tcp]=$((PORT_BASE + 3))
	[nginx]=$((PORT_BASE + 4))
	[baseline]=$((PORT_BASE + 5))
	[gatehouse-tls]=$((PORT_BASE + 6))
	[haproxy-https]=$((PORT_BASE + 7))
	[baseline-tls]=$((PORT_BASE + 8))
)
if [ -n "$BASELINE" ]; then
	[ -x "$BASELINE" ] || die "BASELINE=$BASELINE is not an executable"
	SUBJECTS+=(baseline)
	TLS_SUBJECTS+=(baseline-tls)
fi
[ "$TLS" = 1 ] || TLS_SUBJECTS=()
for s in "${SUBJECTS[@]}" "${TLS_SUBJECTS[@]}"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/${PORT[$s]}") 2>/dev/null; then
		die "127.0.0.1:${PORT[$s]} is in use: set PORT_BASE to a free range of nine ports"
	fi
done

# Everything lives in one temp dir; every process started here is stopped
# on exit, however the script ends.
work=$(mktemp -d)
chmod 755 "$work" # nginx workers run as nobody when started by root
STARTED=()
cleanup() {
	local p
	for p in "${STARTED[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${STARTED[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

SMALL_BODY=$(head -c 200 /dev/zero | tr '\0' x)
mkdir -p "$work/www"
truncate -s "${BULK_MB}M" "$work/www/big" # sparse: no disk I/O
chmod 644 "$work/www/big"

render() { # template → file in $work
	sed -e "s#@WORK@#$work#g" -e "s#@HOST@#$HOST#g" -e "s#@SMALL_BODY@#$SMALL_BODY#g" \
		-e "s#@TARGET_WORKERS@#$TARGET_WORKERS#g" -e "s#@TARGET_PORT@#$TARGET_PORT#g" \
		-e "s#@GATEHOUSE_PORT@#${PORT[gatehouse]}#g" -e "s#@NGINX_PORT@#${PORT[nginx]}#g" \
		-e "s#@HAPROXY_HTTP_PORT@#${PORT[haproxy-http]}#g" \
		-e "s#@HAPROXY_TCP_PORT@#${PORT[haproxy-tcp]}#g" \
		-e "s#@GATEHOUSE_TLS_PORT@#${PORT[gatehouse-tls]}#g" -e "s#@HAPROXY_HTTPS_PORT@#${PORT[haproxy-https]}#g" \
		-e "s#@THREADS@#$THREADS#g" \
		"$TMPL/$1.tmpl" >"$work/$1"
}

declare -A PID # subject → the process whose CPU time is its cost
start() {      # name command... (in the background, output to $work/name.log)
	local name=$1
	shift
	"$@" >"$work/$name.log" 2>&1 &
	STARTED+=($!)
	PID[$name]=$!
}

wait_port() { # name port
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
		kill -0 "${PID[$1]}" 2>/dev/null || break
		sleep 0.1
	done
	cat "$work/$1.log" >&2 || true
	die "$1 did not start listening on 127.0.0.1:$2"
}

if [ -z "$GATEHOUSE" ]; then
	say "building gatehouse (symbols kept for perf)"
	GATEHOUSE=$work/gatehouse
	rev=$(git rev-parse --short HEAD 2>/dev/null || echo dev)
	CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$rev+worktree" -o "$GATEHOUSE" ./cmd/gatehouse
fi

# One throwaway ECDSA P-256 certificate for both TLS terminators.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
	-subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST" \
	-keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null || die "openssl could not make a certificate"
cat "$work/cert.pem" "$work/key.pem" >"$work/haproxy.pem"
for f in target-nginx.conf proxy-nginx.conf haproxy.cfg gatehouse.yaml; do render "$f"; done
start direct nginx -e "$work/target.err" -p "$work" -c "$work/target-nginx.conf"
wait_port direct "$TARGET_PORT"
"$GATEHOUSE" check -config "$work/gatehouse.yaml" >/dev/null || die "$GATEHOUSE check refused $work/gatehouse.yaml"
start gatehouse env GOMAXPROCS="$THREADS" "$GATEHOUSE" run -config "$work/gatehouse.yaml"
if [ -n "$BASELINE" ]; then
	sed -e "s#127.0.0.1:${PORT[gatehouse]}\"#127.0.0.1:${PORT[baseline]}\"#" -e "s#state.json#state-baseline.json#" \
		-e "s#127.0.0.1:${PORT[gatehouse-tls]}\"#127.0.0.1:${PORT[baseline-tls]}\"#" \
		"$work/gatehouse.yaml" >"$work/baseline.yaml"
	"$BASELINE" check -config "$work/baseline.yaml" >/dev/null || die "$BASELINE check refused $work/baseline.yaml"
	start baseline env GOMAXPROCS="$THREADS" "$BASELINE" run -config "$work/baseline.yaml"
	wait_port baseline "${PORT[baseline]}"
fi
start haproxy haproxy -db -f "$work/haproxy.cfg"
PID[haproxy-http]=${PID[haproxy]}
PID[haproxy-tcp]=${PID[haproxy]}
PID[haproxy-https]=${PID[haproxy]}
PID[gatehouse-tls]=${PID[gatehouse]}
[ -z "$BASELINE" ] || PID[baseline-tls]=${PID[baseline]}
start nginx nginx -e "$work/proxy-nginx.err" -p "$work" -c "$work/proxy-nginx.conf"
wait_port gatehouse "${PORT[gatehouse]}"
wait_port haproxy "${PORT[haproxy-http]}"
wait_port haproxy "${PORT[haproxy-tcp]}"
wait_port nginx "${PORT[nginx]}"

url() {
	case $1 in
	*-tls | haproxy-https) echo "https://127.0.0.1:${PORT[$1]}$2" ;;
	*) echo "http://127.0.0.1:${PORT[$1]}$2" ;;
	esac
}

# Every subject must answer right before its speed means anything, and the
# HTTP proxies must all do the same header work.
for s in "${SUBJECTS[@]}" "${TLS_SUBJECTS[@]}"; do
	body=$(curl -ksS --fail -H "Host: $HOST" "$(url "$s" /small)") || die "$s: GET /small failed"
	[ "$body" = "$SMALL_BODY" ] || die "$s: GET /small answered ${#body} wrong bytes"
	body=$(curl -ksS --fail -H "Host: $HOST" -H 'Connection: close' "$(url "$s" /small)") ||
		die "$s: GET /small with Connection: close failed"
	[ "$body" = "$SMALL_BODY" ] || die "$s: GET /small with Connection: close answered ${#body} wrong bytes"
	want="xff= proto= host=$HOST"
	case $s in gatehouse | baseline | haproxy-http | nginx) want="xff=127.0.0.1 proto=http host=$HOST" ;; esac
	case $s in *-tls | haproxy-https) want="xff=127.0.0.1 proto=https host=$HOST" ;; esac
	got=$(curl -ksS --fail -H "Host: $HOST" "$(url "$s" /headers)") || die "$s: GET /headers failed"
	[ "$got" = "$want" ] || die "$s: the target saw \"$got\", want \"$want\""
done

if [ "${1:-}" = serve ]; then
	for s in "${SUBJECTS[@]}" "${TLS_SUBJECTS[@]}"; do say "$s: $(url "$s" /small) (Host: $HOST)"; done
	say "gatehouse pid ${PID[gatehouse]}, config $work/gatehouse.yaml; Ctrl-C stops everything"
	wait
	exit 0
fi

# CPU time in clock ticks: of a process and its children (nginx workers),
# and of this shell's finished children (the client, wrk or curl).
TICK=$(getconf CLK_TCK)
ticks() {
	local p sum=0 t
	for p in "$1" $(ps -o pid= --ppid "$1"); do
		t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || continue
		sum=$((sum + ${t:-0}))
	done
	echo "$sum"
}
client_ticks() { sed 's/^.*) //' "/proc/$$/stat" | awk '{print $14 + $15}'; }
now() { date +%s.%N; }
pct() { awk -v n="$1" -v hz="$TICK" -v el="$2" 'BEGIN {printf "%.0f", 100 * n / hz / el}'; } # ticks seconds

declare -A R # metric:subject → values of every round, space separated
add() { R[$1:$2]+="$3 "; }
median() { # values... → median
	printf '%s\n' "$@" | sort -g | awk 'NF {a[++n] = $1} END {
		if (n == 0) print "nan"; else if (n % 2) print a[(n + 1) / 2]; else print (a[n / 2] + a[n / 2 + 1]) / 2 }'
}
span() { # metric subject → "min-max" over the rounds
	# shellcheck disable=SC2086 # split the value list
	printf '%s\n' ${R[$1:$2]:-} | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.0f-%.0f\n", lo, hi}'
}
med() { # metric subject
	# shellcheck disable=SC2086 # split the value list
	median ${R[$1:$2]:-}
}
medi() { med "$@" | awk '{ if ($1 == "nan") print "-"; else printf "%.0f\n", $1 }'; } # rounded

# machine → "busy idle" clock ticks of all CPUs together, from /proc/stat:
# busy is user, nice, system, irq and softirq (the kernel's TCP work
# included, wherever it ran), idle is idle and iowait; steal is neither.
machine() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5 + $6; exit}' /proc/stat; }

# measure metric subject command...: runs the command and records the CPU
# each party used meanwhile, as % of one core, and the machine's busy
# core-seconds and idle share.
measure() {
	local metric=$1 s=$2 t0 tt0 tp0 tc0 t1 out mb0 mi0 mb1 mi1
	shift 2
	tt0=$(ticks "${PID[direct]}") tp0=0
	[ "$s" = direct ] || tp0=$(ticks "${PID[$s]}")
	read -r mb0 mi0 < <(machine)
	tc0=$(client_ticks) t0=$(now)
	out=$("$@") || die "$metric $s: measurement failed"
	t1=$(now)
	read -r mb1 mi1 < <(machine)
	add "$metric.busy" "$s" "$(awk -v b=$((mb1 - mb0)) -v hz="$TICK" 'BEGIN {printf "%.3f", b / hz}')"
	add "$metric.idle" "$s" "$(awk -v b=$((mb1 - mb0)) -v i=$((mi1 - mi0)) 'BEGIN {printf "%.0f", b + i ? 100 * i / (b + i) : 0}')"
	local el tt tp tc
	tc=$(($(client_ticks) - tc0)) # before ticks, whose ps and awk are children too
	el=$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')
	tt=$(($(ticks "${PID[direct]}") - tt0))
	tp=0
	[ "$s" = direct ] || tp=$(($(ticks "${PID[$s]}") - tp0))
	add "$metric.cpu_target" "$s" "$(pct "$tt" "$el")"
	add "$metric.cpu_proxy" "$s" "$(pct "$tp" "$el")"
	add "$metric.cpu_client" "$s" "$(pct "$tc" "$el")"
	MEASURED=$out
}

# wrk_run url [wrk args] → "req/s p99-ms socket-errors p50-ms"; a non-2xx answer is fatal.
wrk_run() {
	local url=$1 out
	shift
	out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "Host: $HOST" "$@" "$url") || return 1
	if grep -q 'Non-2xx' <<<"$out"; then
		echo "$out" >&2
		echo "http.sh: $url answered non-2xx responses" >&2
		return 1
	fi
	awk '
		function ms(v) {
			if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
			if (v ~ /ms$/) { sub(/ms$/, "", v); return v }
			if (v ~ /s$/) { sub(/s$/, "", v); return v * 1000 }
			return v
		}
		/^Requests\/sec:/ { rps = $2 }
		$1 == "50%" { p50 = ms($2) }
		$1 == "99%" { p99 = ms($2) }
		/Socket errors:/ { gsub(/,/, ""); err = $4 + $6 + $8 + $10 }
		END { printf "%s %s %d %s\n", rps, p99, err, p50 }' <<<"$out"
}

# bulk_run url → MB/s (10^6 bytes) over BULK_GETS fetches on one connection.
bulk_run() {
	local url=$1 args=() i out
	for ((i = 0; i < BULK_GETS; i++)); do args+=(-o /dev/null "$url"); done
	out=$(curl -sS --fail -H "Host: $HOST" -w '%{size_download} %{time_total}\n' "${args[@]}") || return 1
	awk -v want=$((BULK_MB * 1048576)) '
		$1 != want { print "http.sh: short transfer: " $1 " bytes" > "/dev/stderr"; bad = 1 }
		{ b += $1; t += $2 }
		END { if (bad || t == 0) exit 1; printf "%.0f\n", b / t / 1e6 }' <<<"$out"
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
say "measuring: $ROUNDS round(s) of $DURATION s runs; progress:"
for ((round = 1; round <= ROUNDS; round++)); do
	for s in "${SUBJECTS[@]}"; do
		measure ka "$s" wrk_run "$(url "$s" /small)"
		read -r rps p99 err p50 <<<"$MEASURED"
		add ka "$s" "$rps"
		add p99 "$s" "$p99"
		add p50 "$s" "$p50"
		add ka.err "$s" "$err"
		say "  round $round keep-alive   $s: $rps req/s, p99 $p99 ms, socket errors $err"
	done
	for s in "${SUBJECTS[@]}"; do
		measure nc "$s" wrk_run "$(url "$s" /small)" -H 'Connection: close'
		read -r rps p99 err <<<"$MEASURED"
		add nc "$s" "$rps"
		add nc.err "$s" "$err"
		say "  round $round new conns    $s: $rps conn/s, socket errors $err"
	done
	for s in "${SUBJECTS[@]}"; do
		measure bulk "$s" bulk_run "$(url "$s" /big)"
		add bulk "$s" "$MEASURED"
		say "  round $round bulk         $s: $MEASURED MB/s"
	done
	for s in "${TLS_SUBJECTS[@]}"; do
		measure tka "$s" wrk_run "$(url "$s" /small)"
		read -r rps p99 err p50 <<<"$MEASURED"
		add tka "$s" "$rps"
		add tp99 "$s" "$p99"
		add tp50 "$s" "$p50"
		add tka.err "$s" "$err"
		say "  round $round https k-a    $s: $rps req/s, p99 $p99 ms, socket errors $err"
	done
	for s in "${TLS_SUBJECTS[@]}"; do
		measure tnc "$s" wrk_run "$(url "$s" /small)" -H 'Connection: close'
		read -r rps p99 err p50 <<<"$MEASURED"
		add tnc "$s" "$rps"
		add tnc.err "$s" "$err"
		say "  round $round new TLS      $s: $rps conn/s, socket errors $err"
	done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
per_unit() { awk -v p="$1" -v r="$2" 'BEGIN { if (p + 0 == 0 || r + 0 == 0) print "-"; else printf "%.1f", p * 1e4 / r }'; } # CPU % and rate → µs

table() { # metric title unit
	local m=$1 s v
	echo
	echo "== $2 =="
	printf '%-14s %10s %8s %19s %9s %7s %7s %7s %9s\n' subject "$3" ×direct "rounds min-max" \
		"CPU proxy" target client errors "proxy µs"
	for s in "${SUBJECTS[@]}"; do
		v=$(med "$m" "$s")
		printf '%-14s %10.0f %8s %19s %8s%% %6s%% %6s%% %7s %9s\n' "$s" "$v" "$(ratio "$v" "$(med "$m" direct)")" \
			"$(span "$m" "$s")" \
			"$(medi "$m.cpu_proxy" "$s")" "$(medi "$m.cpu_target" "$s")" "$(medi "$m.cpu_client" "$s")" \
			"$(medi "$m.err" "$s")" "$(per_unit "$(med "$m.cpu_proxy" "$s")" "$v")"
	done
	echo "(proxy µs: the proxy's CPU per request, connection or MB, from its CPU share and the rate)"
	printf 'gatehouse / haproxy-http %s   / haproxy-tcp %s   / nginx %s\n' \
		"$(ratio "$(med "$m" gatehouse)" "$(med "$m" haproxy-http)")" \
		"$(ratio "$(med "$m" gatehouse)" "$(med "$m" haproxy-tcp)")" \
		"$(ratio "$(med "$m" gatehouse)" "$(med "$m" nginx)")"
	if [ -n "$BASELINE" ]; then
		printf 'gatehouse / baseline %s (baseline / haproxy-http %s   / haproxy-tcp %s)\n' \
			"$(ratio "$(med "$m" gatehouse)" "$(med "$m" baseline)")" \
			"$(ratio "$(med "$m" baseline)" "$(med "$m" haproxy-http)")" \
			"$(ratio "$(med "$m" baseline)" "$(med "$m" haproxy-tcp)")"
	fi
}

echo "gatehouse HTTP benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), kernel $(uname -r)"
echo "$("$GATEHOUSE" version), $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(haproxy -v | head -1 | awk '{print "HAProxy " $3}'), $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), $(curl -V | head -1 | awk '{print $1, $2}')"
echo "proxies on $THREADS thread(s) each; target nginx with $TARGET_WORKERS worker(s); client, proxy and target share the CPUs"
echo "load average at start: $LOAD0; at end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)"
echo "DURATION=$DURATION ROUNDS=$ROUNDS CONNS=$CONNS BULK_MB=$BULK_MB BULK_GETS=$BULK_GETS (figures are medians over rounds; CPU in % of one core)"
table ka "keep-alive: wrk -t1 -c$CONNS -d${DURATION}s, GET /small (200-byte body)" req/s
table nc "new connections: the same with Connection: close, one request per connection" conn/s
table bulk "bulk: curl, GET /big ($BULK_MB MiB) x$BULK_GETS on one connection" MB/s
# What moving a GB costs the whole machine (client, proxy, target and the
# kernel's TCP work together): when no subject keeps the CPUs busy, the
# rate a path can reach is about the machine's busy share over this.
printf 'machine CPU per GB moved (core-s, medians; idle share of the CPUs meanwhile):'
for s in "${SUBJECTS[@]}"; do
	printf ' %s %s (%s%%)' "$s" "$(awk -v c="$(med bulk.busy "$s")" -v gb="$(awk -v m="$BULK_MB" -v g="$BULK_GETS" 'BEGIN {print m * g * 1048576 / 1e9}')" \
		'BEGIN {printf "%.2f", c / gb}')" "$(medi bulk.idle "$s")"
done
echo
# The HTTPS tables: gatehouse against HAProxy, both terminating TLS.
tls_table() { # metric title unit
	local m=$1 s v
	echo
	echo "== $2 =="
	printf '%-14s %10s %19s %9s %7s %7s %7s\n' subject "$3" "rounds min-max" "CPU proxy" target client errors
	for s in "${TLS_SUBJECTS[@]}"; do
		v=$(med "$m" "$s")
		printf '%-14s %10.0f %19s %8s%% %6s%% %6s%% %7s\n' "$s" "$v" "$(span "$m" "$s")" \
			"$(medi "$m.cpu_proxy" "$s")" "$(medi "$m.cpu_target" "$s")" "$(medi "$m.cpu_client" "$s")" \
			"$(medi "$m.err" "$s")"
	done
	printf 'gatehouse / haproxy-https %s\n' "$(ratio "$(med "$m" gatehouse-tls)" "$(med "$m" haproxy-https)")"
	[ -z "$BASELINE" ] || printf 'gatehouse / baseline %s\n' "$(ratio "$(med "$m" gatehouse-tls)" "$(med "$m" baseline-tls)")"
}
if [ "$TLS" = 1 ]; then
	tls_table tka "HTTPS keep-alive: wrk -t1 -c$CONNS -d${DURATION}s over TLS 1.3 (ECDSA P-256), GET /small" req/s
	tls_table tnc "new TLS connections: the same with Connection: close, a full handshake and one request each" conn/s
fi

echo
echo "== latency of the keep-alive runs, p50 / p99 (lower is better) =="
for s in "${SUBJECTS[@]}"; do printf '%-14s %9.2f ms %9.2f ms\n' "$s" "$(med p50 "$s")" "$(med p99 "$s")"; done
for s in "${TLS_SUBJECTS[@]}"; do printf '%-14s %9.2f ms %9.2f ms\n' "$s" "$(med tp50 "$s")" "$(med tp99 "$s")"; done
printf 'gatehouse / haproxy-http %s   / haproxy-tcp %s   / nginx %s\n' \
	"$(ratio "$(med p99 gatehouse)" "$(med p99 haproxy-http)")" \
	"$(ratio "$(med p99 gatehouse)" "$(med p99 haproxy-tcp)")" \
	"$(ratio "$(med p99 gatehouse)" "$(med p99 nginx)")"
[ "$TLS" = 1 ] && printf 'p99 gatehouse-tls / haproxy-https %s\n' "$(ratio "$(med tp99 gatehouse-tls)" "$(med tp99 haproxy-https)")"

echo
echo "== targets from the issue =="
target() { # label metric subject other minimum
	local r
	r=$(ratio "$(med "$2" "$3")" "$(med "$2" "$4")")
	printf '%-48s %5s  %s\n' "$1 ≥ $5× $4:" "$r" \
		"$(awk -v r="$r" -v min="$5" 'BEGIN { print (r != "-" && r + 0 >= min) ? "met" : "NOT MET" }')"
}
target "keep-alive req/s" ka gatehouse haproxy-http 1.0
target "new connections/s" nc gatehouse haproxy-tcp 1.2
target "bulk MB/s" bulk gatehouse direct 0.9
r=$(ratio "$(med p99 gatehouse)" "$(med p99 haproxy-http)")
printf '%-48s %5s  %s\n' "keep-alive p99 ≤ 1.5× haproxy-http:" "$r" \
	"$(awk -v r="$r" 'BEGIN { print (r != "-" && r + 0 <= 1.5) ? "met" : "NOT MET" }')"
if [ "$TLS" = 1 ]; then
	target "HTTPS keep-alive req/s" tka gatehouse-tls haproxy-https 1.0
	target "new TLS connections/s" tnc gatehouse-tls haproxy-https 1.2
fi

# A saturated target caps every subject alike, and then the ratio only
# says that the proxy kept up.
for m in ka nc bulk tka tnc; do
	for s in "${SUBJECTS[@]}" "${TLS_SUBJECTS[@]}"; do
		[ -n "${R[$m:$s]:-}" ] || continue
		c=$(medi "$m.cpu_target" "$s")
		if awk -v c="$c" -v w="$TARGET_WORKERS" 'BEGIN { exit !(c >= 90 * w) }'; then
			echo "note: the target used ${c}% CPU in $m/$s: that figure is bounded by the target, not the proxy"
		fi
	done
done

if [ "$PROFILE" = 1 ]; then
	echo
	echo "== perf profile of gatehouse under keep-alive load (wrk -c$CONNS, ${DURATION}s) =="
	perf record -q -F 999 -g -p "${PID[gatehouse]}" -o "$work/perf.data" -- sleep "$DURATION" 2>/dev/null &
	perf_pid=$!
	STARTED+=("$perf_pid")
	wrk_run "$(url gatehouse /small)" >/dev/null
	wait "$perf_pid" || die "perf record failed (perf_event_paranoid? run as root)"
	echo "-- self time by function (top 40) --"
	# awk reads to the end: a head here would kill perf with SIGPIPE.
	perf report -i "$work/perf.data" --stdio --no-children --sort symbol -g none --percent-limit 0.5 2>/dev/null |
		awk '!/^#/ && NF && n++ < 40 {print $1, $2, $3}'
	echo "-- including callees (top 60) --"
	perf report -i "$work/perf.data" --stdio --children --sort symbol -g none --percent-limit 2 2>/dev/null |
		awk '!/^#/ && NF && n++ < 60 {print $1, $2, $3, $4}'
	[ -z "$PERF_DATA" ] || cp "$work/perf.data" "$PERF_DATA"
fi

if [ "$SYSCALLS" = 1 ]; then
	echo
	echo "== system calls per kept-alive request (perf stat during wrk -c$CONNS -d${DURATION}s), CPU per request =="
	printf '%-14s %8s %8s %9s %8s %8s %8s %8s %9s %8s\n' subject read EAGAIN recvfrom EAGAIN write sendto epoll "CPU µs" req/s
	subjects=(gatehouse haproxy-http)
	[ -z "$BASELINE" ] || subjects+=(baseline)
	for s in "${subjects[@]}"; do
		p0=$(ticks "${PID[$s]}")
		perf stat -x, -o "$work/syscalls.$s" -p "${PID[$s]}" \
			-e syscalls:sys_enter_read -e syscalls:sys_exit_read --filter 'ret == -11' \
			-e syscalls:sys_enter_recvfrom -e syscalls:sys_exit_recvfrom --filter 'ret == -11' \
			-e syscalls:sys_enter_write -e syscalls:sys_enter_sendto \
			-e syscalls:sys_enter_epoll_pwait -e syscalls:sys_enter_epoll_wait -- sleep "$DURATION" 2>/dev/null &
		stat_pid=$!
		STARTED+=("$stat_pid")
		out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "Host: $HOST" "$(url "$s" /small)") || die "syscalls $s: wrk failed"
		wait "$stat_pid" || die "perf stat failed (perf_event_paranoid, tracefs? run as root)"
		p1=$(ticks "${PID[$s]}")
		n=$(awk '/requests in/ {print $1}' <<<"$out")
		rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
		awk -F, -v n="$n" -v s="$s" -v cpu=$((p1 - p0)) -v hz="$TICK" -v rps="$rps" '
			$3 ~ /^syscalls:/ { c[$3] += $1 }
			END {
				r = n + 0; if (r == 0) r = 1
				printf "%-14s %8.2f %8.2f %9.2f %8.2f %8.2f %8.2f %8.2f %9.1f %8s\n", s,
					c["syscalls:sys_enter_read"] / r, c["syscalls:sys_exit_read"] / r,
					c["syscalls:sys_enter_recvfrom"] / r, c["syscalls:sys_exit_recvfrom"] / r,
					c["syscalls:sys_enter_write"] / r, c["syscalls:sys_enter_sendto"] / r,
					(c["syscalls:sys_enter_epoll_pwait"] + c["syscalls:sys_enter_epoll_wait"]) / r,
					1e6 * cpu / hz / r, rps
			}' "$work/syscalls.$s"
	done
	echo "(EAGAIN: the reads that found nothing; epoll: epoll_wait and epoll_pwait; CPU: the proxy's utime+stime over wrk's requests)"
fi
