#!/usr/bin/env bash
# Feeds N distinct client addresses into a cluster of three gatehouse nodes
# (embedded NATS, routes under mutual TLS, on 127.0.0.2-4) and reports what
# issue 14 part 6 asks: the size of the buckets, each node's memory against
# blacklist.max_tracked, the extra memory cluster mode costs a node, and the
# rate of block propagation sustained under that load.
#
# bench/clusterload feeds the addresses (127.16.0.0 upwards, one forbidden
# request each, round-robin over the nodes, RATE a second); every
# BLOCK_EVERY'th address is blocked on its node and probed on the next one
# until refused. Then the same feed goes to one gatehouse without a cluster
# section, for the baseline memory. RSS (VmRSS) and its peak (VmHWM) are read
# from /proc at the end of each feed; bucket sizes from /api/cluster.
#
# Environment: N [1000000], RATE [5000] addresses/s (the issue's "a few
# thousand per second"), MAX_TRACKED [100000], BLOCK_EVERY [100],
# WORKERS [64], PORT_BASE [28700], GATEHOUSE (a binary instead of building
# this checkout), BASELINE [1] (0: skip the single-node run). Needs openssl
# and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin:/usr/local/go/bin" LC_ALL=C
N=${N:-1000000}
RATE=${RATE:-5000}
MAX_TRACKED=${MAX_TRACKED:-100000}
BLOCK_EVERY=${BLOCK_EVERY:-100}
WORKERS=${WORKERS:-64}
PORT_BASE=${PORT_BASE:-28700}
BASELINE=${BASELINE:-1}
GATEHOUSE=${GATEHOUSE:-}
die() { echo "cluster.sh: $*" >&2; exit 1; }
for cmd in openssl curl; do command -v "$cmd" >/dev/null || die "$cmd not found"; done

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
if [ -z "$GATEHOUSE" ]; then
	go build -o "$work/gatehouse" ./cmd/gatehouse
	GATEHOUSE=$work/gatehouse
fi
go build -o "$work/clusterload" ./bench/clusterload
TARGET=$PORT_BASE HTTP=$((PORT_BASE + 1)) ADMIN=$((PORT_BASE + 2)) ROUTES=$((PORT_BASE + 3))
"$work/clusterload" target -listen "127.0.0.1:$TARGET" & pids+=($!)

# The cluster CA and one certificate per node (server and client use: both
# ends of a route).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-cluster-ca \
	-keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
for i in 2 3 4; do
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=node$i" \
		-keyout "$work/node$i.key" -out "$work/node$i.csr" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$i" >"$work/node$i.ext"
	openssl x509 -req -in "$work/node$i.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial -days 2 \
		-extfile "$work/node$i.ext" -out "$work/node$i.crt" 2>/dev/null
done
hash=$(echo bench | "$GATEHOUSE" hash-password)

# config NAME IP CLUSTER: a node's configuration (CLUSTER 1: with the cluster section).
config() {
	local name=$1 ip=$2 clustered=$3
	cat <<YAML
listen:
  http: "$ip:$HTTP"
services:
  - name: hq.example.com
    target: 127.0.0.1
    ports: {http: $TARGET}
    allow:
      urls: [/PBX0/]
blacklist:
  threshold: 3
  expiration: 10m
  max_tracked: $MAX_TRACKED
limits:
  max_conns_per_ip: 0
  max_conns: 0
  max_conns_per_range: 100%
admin:
  listen: "$ip:$ADMIN"
  state_dir: $work/$name-admin
  users:
    - {name: bench, password_hash: "$hash"}
log: {level: ${LOG_LEVEL:-warn}}
YAML
	if [ "$clustered" = 1 ]; then
		local peers=()
		for j in 2 3 4; do [ "127.0.0.$j" = "$ip" ] || peers+=("\"127.0.0.$j:$ROUTES\""); done
		cat <<YAML
cluster:
  node: $name
  listen: "$ip:$ROUTES"
  peers: [$(IFS=,; echo "${peers[*]}")]
  tls: {cert: $work/$name.crt, key: $work/$name.key, ca: $work/ca.crt}
  store_dir: $work/$name-nats
YAML
	fi
}

# mem PID: "RSS peak" in MiB.
mem() { awk '/^VmRSS/{r=$2} /^VmHWM/{h=$2} END{printf "%.0f MiB (peak %.0f MiB)", r/1024, h/1024}' "/proc/$1/status"; }
waitport() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done; die "nothing listens on $1"; }

echo "== cluster of 3: N=$N RATE=$RATE/s MAX_TRACKED=$MAX_TRACKED BLOCK_EVERY=$BLOCK_EVERY"
declare -A node_pid
for i in 2 3 4; do
	config "node$i" "127.0.0.$i" 1 >"$work/node$i.yaml"
	"$GATEHOUSE" run -config "$work/node$i.yaml" >"$work/node$i.log" 2>&1 & pids+=($!)
	node_pid[$i]=$!
done
for i in 2 3 4; do waitport "127.0.0.$i:$HTTP"; done
for _ in $(seq 600); do
	curl -sk -u bench:bench "https://127.0.0.2:$ADMIN/api/cluster" | grep -q '"ready": true' && break
	sleep 0.1
done
sleep 6 # a heartbeat from every node
for i in 2 3 4; do echo "node$i idle: $(mem "${node_pid[$i]}")"; done
# RSS of each node every 30 s while the feed runs: bounded means it levels off.
(
	while sleep 30; do
		line="rss:"
		for i in 2 3 4; do line="$line node$i $(mem "${node_pid[$i]}");"; done
		echo "$line"
	done
) & sampler=$!
"$work/clusterload" feed -nodes "127.0.0.2:$HTTP,127.0.0.3:$HTTP,127.0.0.4:$HTTP" -n "$N" -rate "$RATE" \
	-workers "$WORKERS" -block-every "$BLOCK_EVERY" | tee "$work/feed.txt"
kill $sampler 2>/dev/null || true
# What each node holds for the addresses the feeder could not account for.
for ip in $(sed -n 's/^suspects: //p' "$work/feed.txt"); do
	for i in 2 3 4; do # the address's entry, and its /24's (the filter matches text)
		for q in "$ip" "${ip%.*}.0/24"; do
			echo "suspect $q on node$i: $(curl -sk -u bench:bench "https://127.0.0.$i:$ADMIN/api/blacklist?address=$q" | tr -d '\n' | tr -s ' ' | cut -c1-600)"
		done
	done
done
sleep 6 # the heartbeat that measures the buckets
for i in 2 3 4; do
	st=$(curl -sk -u bench:bench "https://127.0.0.$i:$ADMIN/api/status")
	tracked=$(echo "$st" | grep -o '"tracked": [0-9]*' | head -1 || true)
	untracked=$(echo "$st" | grep -o '"untracked": [0-9]*' | head -1 || true)
	echo "node$i after the feed: $(mem "${node_pid[$i]}"), ${tracked:-tracked ?}, ${untracked:-untracked ?}"
done
echo "buckets: $(curl -sk -u bench:bench "https://127.0.0.2:$ADMIN/api/cluster" | tr -d '\n ' | grep -o '"buckets":{[^}]*}')"
for i in 2 3 4; do kill "${node_pid[$i]}"; done
wait "${node_pid[@]}" 2>/dev/null || true

if [ "$BASELINE" = 1 ]; then
	echo "== one gatehouse without a cluster section, the same feed"
	config single 127.0.0.2 0 >"$work/single.yaml"
	"$GATEHOUSE" run -config "$work/single.yaml" >"$work/single.log" 2>&1 & pids+=($!)
	single=$!
	waitport "127.0.0.2:$HTTP"
	echo "single idle: $(mem $single)"
	"$work/clusterload" feed -nodes "127.0.0.2:$HTTP" -n "$N" -rate "$RATE" -workers "$WORKERS" -block-every "$BLOCK_EVERY"
	tracked=$(curl -sk -u bench:bench "https://127.0.0.2:$ADMIN/api/status" | grep -o '"tracked": [0-9]*' | head -1 || true)
	echo "single after the feed: $(mem $single), ${tracked:-tracked ?}"
fi
