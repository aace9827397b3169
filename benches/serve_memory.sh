#!/usr/bin/env bash
# serve_memory.sh — peak memory of `keyclaim-harness serve --max-memory` under every kind
# of client at once.
#
# What it measures: one `serve --max-memory $MAX_MEMORY --rate-limit 0 --threads 1` with
# $KEYS keys in a --keys file, pinned to CPU $SERVER_CPU (default 0). From CPU
# $CLIENT_CPU (default 1), all at full speed and all at once for $DURATION:
#   1. wrk -c20 creating with ttl 1, round-robin over every key (create-only, short);
#   2. wrk -c20 creating with ttl 3600, round-robin over every key (outstanding fill);
#   3. `keyclaim-harness run` with 20 closed-model users doing create + validate with
#      ttl 3600 on one key (every used challenge is retained for an hour).
# Serve's resident set is sampled every 0.2 s (/proc/PID/status VmRSS; VmHWM at the
# end). Printed: RSS at start (the baseline), peak RSS, peak minus the baseline against
# the budget, and answers by status (5xx must be 0; 429 rate_limited is the budget
# refusing once only outstanding challenges are left). That a forgotten used challenge
# is never validated again is pinned by the store's tests, not measured here.
# Target (issue 14): peak RSS <= budget + $BASELINE_MB MB, zero 5xx.
#
# Run:   benches/serve_memory.sh
# Env:   MAX_MEMORY=64MiB    serve's --max-memory
#        DURATION=20s        how long all three clients run (whole seconds)
#        KEYS=100            keys in the --keys file
#        BASELINE_MB=48      allowed above the budget: binary, runtime, connections
#        KEYCLAIM_BIN=path   use this binary instead of `cargo build --release`
#        SERVER_CPU=0 CLIENT_CPU=1
#        KEEP=1              keep the work directory
# Needs: taskset, cargo, jq, wrk, curl (apt-get installs wrk, curl and jq as root or
#        via sudo when missing).
# Exit:  0 target met; 1 peak over the target; 2 invalid run (5xx answers, a client or
#        serve failed, ...).
# All traffic stays on 127.0.0.1; every client is bounded by `timeout`; everything
# started here is stopped on exit.

set -euo pipefail

MAX_MEMORY=${MAX_MEMORY:-64MiB}
DURATION=${DURATION:-20s}
KEYS=${KEYS:-100}
BASELINE_MB=${BASELINE_MB:-48}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BENCH_TAG=memory

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

. "$here/lib/common.sh"

setup_work serve_memory

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
command -v taskset >/dev/null || missing+=(util-linux)
apt_install "${missing[@]}"

require_two_cpus
build_harness
dur_s=$(to_secs "$DURATION")

# ---- keys and client scripts -------------------------------------------------
keys_file=$work/keys.toml
for i in $(seq 1 "$KEYS"); do
    printf '[[key]]\nid = "kc_memory_bench_%04d"\n\n' "$i"
done >"$keys_file"
FLOW_KEY=kc_memory_bench_0001

# create_lua TTL: round-robin creates over every key; counts answers by status class.
create_lua() {
    cat <<EOF
local keys, i = $KEYS, 0
counts = {}
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init() counts = { ["2xx"] = 0, ["429"] = 0, ["5xx"] = 0, ["other"] = 0 } end
function request()
    i = i % keys + 1
    return wrk.format("POST", "/api/challenge/create",
        { ["Content-Type"] = "application/json" },
        string.format('{"key":"kc_memory_bench_%04d","ttl":$1}', i))
end
function response(status)
    local class = (status >= 200 and status < 300) and "2xx"
        or (status == 429 and "429") or (status >= 500 and "5xx") or "other"
    counts[class] = counts[class] + 1
end
function done()
    local total = { ["2xx"] = 0, ["429"] = 0, ["5xx"] = 0, ["other"] = 0 }
    for _, t in ipairs(threads) do
        local c = t:get("counts")
        for k, v in pairs(c) do total[k] = total[k] + v end
    end
    io.write(string.format("statuses 2xx=%d 429=%d 5xx=%d other=%d\n",
        total["2xx"], total["429"], total["5xx"], total["other"]))
end
EOF
}
create_lua 1 >"$work/short.lua"
create_lua 3600 >"$work/long.lua"

# The harness's create-validate flow with an hour's TTL.
sed -e 's/create = { ttl = 30, save = "c" }/create = { ttl = 3600, save = "c" }/' \
    "$root/scenarios/load.toml" >"$work/load-3600.toml"
grep -q 'ttl = 3600' "$work/load-3600.toml" || die "could not make the ttl-3600 plan"

# ---- serve -------------------------------------------------------------------
out=$work/serve.out
: >"$out"
taskset -c "$SERVER_CPU" "$BIN" serve --listen 127.0.0.1:0 --threads 1 --rate-limit 0 \
    --keys "$keys_file" --max-memory "$MAX_MEMORY" >"$out" 2>"$work/serve.err" &
SERVE_PID=$!
pids+=("$SERVE_PID")
line=""
for _ in $(seq 1 100); do
    kill -0 "$SERVE_PID" 2>/dev/null || { cat "$work/serve.err" >&2; die "serve exited at start"; }
    IFS= read -r line <"$out" || true
    [[ $line == "listening on http://"* ]] && break
    sleep 0.1
done
[[ $line =~ ^listening\ on\ (http://127\.0\.0\.1:[0-9]+)$ ]] \
    || { cat "$work/serve.err" >&2; die "serve's first line was not 'listening on http://127.0.0.1:PORT': '$line'"; }
base=${BASH_REMATCH[1]}
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 -H 'Content-Type: application/json' \
    --data "{\"key\":\"$FLOW_KEY\",\"ttl\":30}" "$base/api/challenge/create") || die "serve did not answer"
[[ $code == 200 ]] || die "serve answered $code to a create"

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVE_PID/status"; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$SERVE_PID/status"; }
start_kb=$(rss_kb)
log "serve (pid $SERVE_PID) at $base, --max-memory $MAX_MEMORY, $KEYS keys; RSS at start $((start_kb / 1024)) MB"

# ---- the clients, all at once ------------------------------------------------
log "running three clients for ${dur_s}s: create ttl 1, create ttl 3600 (both over $KEYS keys), create+validate ttl 3600"
client_pids=()
timeout --kill-after=5 $((dur_s + 30)) taskset -c "$CLIENT_CPU" \
    wrk -t1 -c20 -d"${dur_s}s" -s "$work/short.lua" "$base" >"$work/short.out" 2>&1 &
client_pids+=($!)
timeout --kill-after=5 $((dur_s + 30)) taskset -c "$CLIENT_CPU" \
    wrk -t1 -c20 -d"${dur_s}s" -s "$work/long.lua" "$base" >"$work/long.out" 2>&1 &
client_pids+=($!)
timeout --kill-after=5 $((dur_s + 60)) taskset -c "$CLIENT_CPU" env RUST_LOG=warn \
    "$BIN" run "$work/load-3600.toml" --scenario create-validate --users 20 \
    --duration "${dur_s}s" --quiet --target "$base" --api-key "$FLOW_KEY" \
    --report-dir "$work/flow" >"$work/flow.out" 2>&1 &
client_pids+=($!)
pids+=("${client_pids[@]}")

peak_kb=$start_kb
samples=0
while :; do
    running=0
    for p in "${client_pids[@]}"; do kill -0 "$p" 2>/dev/null && running=1; done
    ((running)) || break
    kill -0 "$SERVE_PID" 2>/dev/null || die "serve died under load; see $work/serve.err (KEEP=1)"
    now_kb=$(rss_kb)
    ((now_kb > peak_kb)) && peak_kb=$now_kb
    samples=$((samples + 1))
    ((samples % 25 == 0)) && log "$((samples / 5))s: RSS $((now_kb / 1024)) MB (peak $((peak_kb / 1024)) MB)"
    sleep 0.2
done
flow_rc=0
for p in "${client_pids[@]}"; do wait "$p" || { rc=$?; [[ $p == "${client_pids[2]}" ]] && flow_rc=$rc; }; done
hwm=$(hwm_kb)
((hwm > peak_kb)) && peak_kb=$hwm
stop_pid "$SERVE_PID"

# ---- what the clients saw ------------------------------------------------------
statuses() { grep -E '^statuses ' "$1" || { cat "$1" >&2; die "no status counts from wrk ($1)"; }; }
short=$(statuses "$work/short.out")
long=$(statuses "$work/long.out")
fivexx=$(printf '%s\n%s\n' "$short" "$long" | sed -E 's/.*5xx=([0-9]+).*/\1/' | awk '{ s += $1 } END { print s + 0 }')
report=$work/flow/report.json
if ((flow_rc != 0 && flow_rc != 1)) || [[ ! -s $report ]]; then
    cat "$work/flow.out" >&2
    die "the create+validate client exited $flow_rc without a report"
fi
flow_requests=$(jq -r '.scenarios[0].requests // 0' "$report")
flow_failed=$(jq -r '.scenarios[0].load.failed_requests // "missing"' "$report")

budget_mb=$(awk -v b="$MAX_MEMORY" 'BEGIN {
    n = b + 0; u = b; sub(/^[0-9.]+ */, "", u); u = tolower(u)
    f = (u ~ /^gi/) ? 1024 : (u ~ /^mi/) ? 1 : (u ~ /^ki/) ? 1 / 1024 : (u ~ /^g/) ? 1e9 / 1048576 : (u ~ /^m/) ? 1e6 / 1048576 : (u ~ /^k/) ? 1e3 / 1048576 : 1 / 1048576
    printf "%.1f", n * f }')
start_mb=$(awk -v k="$start_kb" 'BEGIN { printf "%.1f", k / 1024 }')
peak_mb=$(awk -v k="$peak_kb" 'BEGIN { printf "%.1f", k / 1024 }')
limit_mb=$(awk -v b="$budget_mb" -v l="$BASELINE_MB" 'BEGIN { printf "%.1f", b + l }')

echo
echo "===== serve --max-memory $MAX_MEMORY under three clients at once (${dur_s}s, $KEYS keys) ====="
printf 'RSS at start (baseline): %s MB\n' "$start_mb"
printf 'peak RSS:                %s MB (budget %s MB + allowed baseline %s MB = %s MB)\n' \
    "$peak_mb" "$budget_mb" "$BASELINE_MB" "$limit_mb"
printf 'peak RSS - start:        %s MB\n' "$(awk -v p="$peak_mb" -v s="$start_mb" 'BEGIN { printf "%.1f", p - s }')"
printf 'create ttl 1:            %s\n' "$short"
printf 'create ttl 3600:         %s\n' "$long"
printf 'create+validate ttl 3600: %s requests, failed_requests=%s (creates refused 429 once the\n' \
    "$flow_requests" "$flow_failed"
printf '                          budget holds only outstanding challenges count here)\n'

if ((fivexx > 0)); then
    echo "INVALID: serve answered $fivexx 5xx"
    exit 2
fi
if awk -v p="$peak_mb" -v l="$limit_mb" 'BEGIN { exit !(p > l) }'; then
    echo "FAIL: peak RSS $peak_mb MB is over $limit_mb MB"
    exit 1
fi
echo "PASS: peak RSS $peak_mb MB within $limit_mb MB, no 5xx"
