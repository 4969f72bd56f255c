#!/usr/bin/env bash
# What a held, idle TLS connection costs gatehouse and HAProxy in memory:
# the figure that decides how many phones one appliance holds. For each of
# HTTPS keep-alive (one GET sent and answered, the connection kept), SIPS
# registrations (a REGISTER sent over TLS and answered 200, the
# connection kept) and H.323-TLS registrations (a GRQ and RRQ tunnelled in
# a Facility, answered by an RCF, the connection kept), every subject is started afresh, warmed up with a few
# connections, and then N connections spread over many 127.0.0.x source
# addresses are opened and held; the proxy's RSS growth divided by N is
# the cost of one. gatehouse runs with GOMAXPROCS=THREADS, HAProxy with
# nbthread THREADS in tcp mode with TLS termination and payload inspection
# (HTTP / "REGISTER " / a TPKT header before a target is chosen), both
# with the same ECDSA P-256 certificate in front of the same targets: nginx
# for HTTP, bench/idleclient's registrar for SIP and its gatekeeper for
# H.323.
#
# Environment (defaults in brackets):
#   N          connections held per measurement [10000]
#   SOURCES    last octets of the client addresses 127.0.0.x, FIRST-LAST [2-201]
#   THREADS    GOMAXPROCS of gatehouse and nbthread of HAProxy [1]
#   SETTLE     seconds to wait after the last connection before reading RSS [3]
#   PROTOS     what to measure [https sips h323s]
#   PORT_BASE  first of nine ports used [18580]
#   GATEHOUSE  a gatehouse binary to use instead of building this checkout
#   BASELINE   another gatehouse binary (an earlier build) measured in the
#              same run as the subject "baseline"
#
# Needs: haproxy nginx openssl, Go; root or a hard file limit above 4×N
# (the script raises ulimit -n).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin:/usr/local/go/bin" LC_ALL=C

N=${N:-10000}
SOURCES=${SOURCES:-2-201}
THREADS=${THREADS:-1}
SETTLE=${SETTLE:-3}
PROTOS=${PROTOS:-https sips h323s}
PORT_BASE=${PORT_BASE:-18580}
GATEHOUSE=${GATEHOUSE:-}
BASELINE=${BASELINE:-}
HOST=bench.example.com
TMPL=bench/idle

die() { echo "idle.sh: $*" >&2; exit 1; }
say() { echo "$*" >&2; }
for cmd in nginx haproxy openssl go; do
	command -v "$cmd" >/dev/null || die "$cmd not found"
done
# Every process here holds up to 2N descriptors (a proxy: client and
# target ends) under the shell's limit, raised as far as it goes.
want_fds=$((2 * N + 1000))
ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge "$want_fds" ] ||
	die "ulimit -n $(ulimit -n) (hard $(ulimit -Hn)) is too low for N=$N: need $want_fds; raise the hard limit or set N=$((($(ulimit -n) - 1000) / 2))"

HTTP_TARGET=$PORT_BASE SIP_TARGET=$((PORT_BASE + 1))
GH_HTTPS=$((PORT_BASE + 2)) GH_SIPS=$((PORT_BASE + 3))
HA_HTTPS=$((PORT_BASE + 4)) HA_SIPS=$((PORT_BASE + 5))
H323_TARGET=$((PORT_BASE + 6)) GH_H323S=$((PORT_BASE + 7)) HA_H323S=$((PORT_BASE + 8))
for p in $(seq "$PORT_BASE" $((PORT_BASE + 8))); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "127.0.0.1:$p is in use: set PORT_BASE"; fi
done

work=$(mktemp -d)
chmod 755 "$work"
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
render() { # template name → $work/name
	sed -e "s#@WORK@#$work#g" -e "s#@HOST@#$HOST#g" -e "s#@SMALL_BODY@#$SMALL_BODY#g" \
		-e "s#@HTTP_TARGET@#$HTTP_TARGET#g" -e "s#@SIP_TARGET@#$SIP_TARGET#g" \
		-e "s#@GH_HTTPS@#$GH_HTTPS#g" -e "s#@GH_SIPS@#$GH_SIPS#g" \
		-e "s#@HA_HTTPS@#$HA_HTTPS#g" -e "s#@HA_SIPS@#$HA_SIPS#g" \
		-e "s#@H323_TARGET@#$H323_TARGET#g" -e "s#@GH_H323S@#$GH_H323S#g" -e "s#@HA_H323S@#$HA_H323S#g" \
		-e "s#@NBTHREAD@#$THREADS#g" -e "s#@MAXCONN@#$((N + 300))#g" -e "s#@NAME@#$2#g" "$TMPL/$1.tmpl" >"$work/$2"
}
start() { # name command... → pid in $LAST
	local name=$1
	shift
	"$@" >"$work/$name.log" 2>&1 &
	LAST=$!
	STARTED+=("$LAST")
}
stop() { # pid
	kill "$1" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
wait_port() { # name pid port
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$3") 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || break
		sleep 0.1
	done
	cat "$work/$1.log" >&2 || true
	die "$1 did not start listening on 127.0.0.1:$3"
}

say "building"
if [ -z "$GATEHOUSE" ]; then
	GATEHOUSE=$work/gatehouse
	rev=$(git rev-parse --short HEAD 2>/dev/null || echo dev)
	CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$rev+worktree" -o "$GATEHOUSE" ./cmd/gatehouse
fi
go build -o "$work/idleclient" ./bench/idleclient
SUBJECTS=(gatehouse haproxy)
declare -A BIN=([gatehouse]=$GATEHOUSE)
if [ -n "$BASELINE" ]; then
	[ -x "$BASELINE" ] || die "BASELINE=$BASELINE is not an executable"
	SUBJECTS+=(baseline)
	BIN[baseline]=$BASELINE
fi

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
	-subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST" \
	-keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" >"$work/haproxy.pem"

render target-nginx.conf target-nginx.conf
start target nginx -e "$work/target.err" -p "$work" -c "$work/target-nginx.conf"
wait_port target "$LAST" "$HTTP_TARGET"
start sip-target "$work/idleclient" sip-target -listen "127.0.0.1:$SIP_TARGET"
wait_port sip-target "$LAST" "$SIP_TARGET"
start h323-target "$work/idleclient" h323-target -listen "127.0.0.1:$H323_TARGET"
wait_port h323-target "$LAST" "$H323_TARGET"
render haproxy.cfg haproxy.cfg

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# hold proto port n subject → pid of a client holding n connections (once it said so)
mkfifo "$work/hold.in"
exec 7<>"$work/hold.in" # keeps the clients' stdin open: they hold until told
hold() {
	local out=$work/hold-$1-$4.out
	rm -f "$out"
	"$work/idleclient" hold -addr "127.0.0.1:$2" -proto "$1" -n "$3" -sources "$SOURCES" -host "$HOST" \
		<"$work/hold.in" >"$out" 2>"$out.err" &
	HOLDER=$!
	STARTED+=("$HOLDER")
	for _ in $(seq 1200); do
		grep -q '^held' "$out" 2>/dev/null && return 0
		kill -0 "$HOLDER" 2>/dev/null || break
		sleep 0.1
	done
	cat "$out.err" >&2
	die "the client did not hold $3 $1 connections on 127.0.0.1:$2"
}

declare -A RES # proto:subject → "before-KB held-KB"
for proto in $PROTOS; do
	for s in "${SUBJECTS[@]}"; do
		case $s in
		haproxy)
			start haproxy haproxy -db -f "$work/haproxy.cfg"
			pid=$LAST
			port=$HA_HTTPS
			[ "$proto" = sips ] && port=$HA_SIPS
			[ "$proto" = h323s ] && port=$HA_H323S
			;;
		*)
			render gatehouse.yaml "$s.yaml"
			"${BIN[$s]}" check -config "$work/$s.yaml" >/dev/null || die "$s check refused $work/$s.yaml"
			start "$s" env GOMAXPROCS="$THREADS" "${BIN[$s]}" run -config "$work/$s.yaml"
			pid=$LAST
			port=$GH_HTTPS
			[ "$proto" = sips ] && port=$GH_SIPS
			[ "$proto" = h323s ] && port=$GH_H323S
			;;
		esac
		wait_port "$s" "$pid" "$port"
		# Warm-up: the first connections size pools, caches and the heap.
		"$work/idleclient" hold -addr "127.0.0.1:$port" -proto "$proto" -n 200 -sources "$SOURCES" \
			-host "$HOST" </dev/null >/dev/null || die "$s: warm-up $proto failed"
		sleep 1
		before=$(rss_kb "$pid")
		t0=$(date +%s.%N)
		hold "$proto" "$port" "$N" "$s"
		t1=$(date +%s.%N)
		sleep "$SETTLE"
		after=$(rss_kb "$pid")
		RES[$proto:$s]="$before $after"
		say "  $proto $s: RSS ${before} KB → ${after} KB with $N held ($(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s to open)"
		stop "$HOLDER"
		stop "$pid"
	done
done

per() { awk -v b="$1" -v a="$2" -v n="$N" 'BEGIN {printf "%.1f", (a - b) / n}'; }
echo "gatehouse idle-connection benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, kernel $(uname -r)"
echo "$("$GATEHOUSE" version), $(haproxy -v | head -1 | awk '{print "HAProxy " $3}'), $(nginx -v 2>&1 | sed 's/^nginx version: //')"
echo "N=$N held connections from 127.0.0.$SOURCES, gatehouse GOMAXPROCS=$THREADS, HAProxy nbthread $THREADS; TLS 1.3, ECDSA P-256"
for proto in $PROTOS; do
	echo
	case $proto in
	https) echo "== HTTPS keep-alive: GET /small answered, connection held ==" ;;
	sips) echo "== SIPS registration: REGISTER answered 200, connection held ==" ;;
	h323s) echo "== H.323-TLS registration: GRQ+RRQ in a Facility answered by an RCF, connection held ==" ;;
	esac
	printf '%-10s %12s %12s %14s\n' subject "RSS before" "RSS held" "KB/connection"
	for s in "${SUBJECTS[@]}"; do
		read -r b a <<<"${RES[$proto:$s]}"
		printf '%-10s %9d KB %9d KB %14s\n' "$s" "$b" "$a" "$(per "$b" "$a")"
	done
	read -r gb ga <<<"${RES[$proto:gatehouse]}"
	read -r hb ha <<<"${RES[$proto:haproxy]}"
	r=$(awk -v g="$(per "$gb" "$ga")" -v h="$(per "$hb" "$ha")" 'BEGIN {printf "%.2f", g / h}')
	printf 'gatehouse / haproxy %s  (goal ≤ 1.00: %s)\n' "$r" "$(awk -v r="$r" 'BEGIN {print r <= 1 ? "met" : "NOT MET"}')"
	if [ -n "$BASELINE" ]; then
		read -r bb ba <<<"${RES[$proto:baseline]}"
		printf 'gatehouse / baseline %s\n' "$(awk -v g="$(per "$gb" "$ga")" -v h="$(per "$bb" "$ba")" 'BEGIN {printf "%.2f", g / h}')"
	fi
done
