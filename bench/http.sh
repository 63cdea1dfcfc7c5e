#!/usr/bin/env bash
# HTTP load benchmark: POST /api/v1/users and POST /api/v1/orders through the full
# actor path (bulwark serve), beside two bare axum handlers doing the same durable sled
# write — one with a flush + fsync per request (writes serialized), one with the same group
# commit — and a third bare handler that also does the event pipeline's storage work
# (outbox drain, notification write, confirm) without the runtime. Server pinned to core 0,
# wrk to core 1. Loopback only; bounded in time.
#
# Usage: bench/http.sh [seconds per run, default 10] [connections, default 64]
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-10}
CONNS=${2:-64}
PORT_SHOP=18080
PORT_BARE=18081

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null; fi
fi
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }

cargo build --release -p bulwark --bin bulwark >/dev/null 2>&1 && cargo build --release -p bulwark-http --example bare >/dev/null 2>&1 \
  || { cargo build --release -p bulwark --bin bulwark && cargo build --release -p bulwark-http --example bare; }
BIN=target/release/bulwark
BARE=target/release/examples/bare

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bulwark-bench.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

wait_http() { # url
  for _ in $(seq 1 200); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "server at $1 did not come up" >&2; return 1
}

cat > "$WORK/users.lua" <<'LUA'
local counter = 0
local tid = 0
local run = tostring(os.time())
function setup(thread) thread:set("tid", tid); tid = tid + 1 end
function request()
  counter = counter + 1
  local name = string.format("u%s_%d_%d", run, tid, counter)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
    string.format('{"username":"%s","email":"%s@bench.test"}', name, name))
end
LUA

# run NAME URL LUA -> prints "name rps p99_ms non2xx"
run() {
  local name=$1 url=$2 lua=$3 out
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$lua" "$url")
  local rps p99 bad
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' <<<"$out")
  bad=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
  echo "$name ${rps:-0} ${p99:-0} ${bad:-0}"
}

# Full actor path.
BULWARK_HTTP=127.0.0.1:$PORT_SHOP BULWARK_DATA_DIR=$WORK/shop RUST_LOG=warn \
  taskset -c 0 "$BIN" serve >"$WORK/shop.log" 2>&1 &
PIDS+=($!)
# Bare handlers.
BARE_ADDR=127.0.0.1:$PORT_BARE BARE_DATA_DIR=$WORK/bare taskset -c 0 "$BARE" >"$WORK/bare.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$PORT_SHOP/health"
wait_http "http://127.0.0.1:$PORT_BARE/health"

# An order needs a user and a product with stock for every request.
USER_ID=$(curl -fsS -H 'content-type: application/json' \
  -d '{"username":"buyer","email":"buyer@bench.test"}' "http://127.0.0.1:$PORT_SHOP/api/v1/users" \
  | sed -E 's/.*"id":([0-9]+).*/\1/')
PRODUCT_ID=$(curl -fsS -H 'content-type: application/json' \
  -d '{"name":"bench widget","price":1.00,"quantity":1000000000}' "http://127.0.0.1:$PORT_SHOP/api/v1/products" \
  | sed -E 's/.*"id":([0-9]+).*/\1/')
cat > "$WORK/orders.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"user_id":$USER_ID,"items":[{"product_id":$PRODUCT_ID,"quantity":1,"price":1.00}]}'
LUA

echo "date: $(date -u +%F) machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); ${SECS}s per run, ${CONNS} connections"
RESULTS=()
RESULTS+=("$(run bare_fsync_per_request "http://127.0.0.1:$PORT_BARE/bare/fsync/users" "$WORK/users.lua")")
RESULTS+=("$(run bare_group_commit "http://127.0.0.1:$PORT_BARE/bare/group/users" "$WORK/users.lua")")
RESULTS+=("$(run bare_group_pipeline "http://127.0.0.1:$PORT_BARE/bare/pipeline/users" "$WORK/users.lua")")
# The pipeline must have kept up (else it was flattered), and must be idle before the
# next server runs on the same core.
echo "bare pipeline backlog when its run ended: $(curl -fsS "http://127.0.0.1:$PORT_BARE/bare/pipeline/pending") events"
for _ in $(seq 1 600); do
  [ "$(curl -fsS "http://127.0.0.1:$PORT_BARE/bare/pipeline/pending")" = 0 ] && break; sleep 0.05
done
RESULTS+=("$(run actor_users "http://127.0.0.1:$PORT_SHOP/api/v1/users" "$WORK/users.lua")")
RESULTS+=("$(run actor_orders "http://127.0.0.1:$PORT_SHOP/api/v1/orders" "$WORK/orders.lua")")

printf '| %-24s | %10s | %8s | %8s |\n' path "req/s" "p99 ms" "non-2xx"
printf '|%s|%s|%s|%s|\n' "--------------------------" "------------" "----------" "----------"
for r in "${RESULTS[@]}"; do
  read -r n rps p99 bad <<<"$r"
  printf '| %-24s | %10s | %8s | %8s |\n' "$n" "$rps" "$p99" "$bad"
done
read -r _ fs_rps _ _ <<<"${RESULTS[0]}"
read -r _ gc_rps gc_p99 _ <<<"${RESULTS[1]}"
read -r _ gp_rps gp_p99 _ <<<"${RESULTS[2]}"
read -r _ au_rps au_p99 _ <<<"${RESULTS[3]}"
read -r _ ao_rps ao_p99 _ <<<"${RESULTS[4]}"
awk -v fs="$fs_rps" -v gc="$gc_rps" -v gp="$gc_p99" -v pp="$gp_rps" -v pq="$gp_p99" -v au="$au_rps" -v ap="$au_p99" -v ao="$ao_rps" -v op="$ao_p99" 'BEGIN {
  printf "actor users:  %.2fx bare group commit (goal >= 0.8), %.1fx bare fsync-per-request (goal >= 5), p99 %.2fx bare group commit (goal <= 1.5)\n", au/gc, au/fs, ap/gp;
  printf "event pipeline without the runtime: bare with pipeline %.2fx bare group commit; actor users %.2fx bare with pipeline, p99 %.2fx\n", pp/gc, au/pp, ap/pq;
  printf "actor orders: %.2fx bare group commit, %.1fx bare fsync-per-request, p99 %.2fx bare group commit\n", ao/gc, ao/fs, op/gp }'
