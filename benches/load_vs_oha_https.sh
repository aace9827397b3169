#!/usr/bin/env bash
# load_vs_oha_https.sh — the load generator (`keyclaim-harness run`) against oha over
# HTTPS, with HTTP/1.1 and then with HTTP/2 (the plain-HTTP comparison is
# load_vs_oha.sh).
#
# What it measures: one nginx (1 worker, access_log off, TLS with a certificate from a
# private CA made here with openssl) pinned to CPU $SERVER_CPU (default 1) answers POST
# /api/challenge/create with a fixed 200 create body. Then, back to back, each pinned
# to CPU $CLIENT_CPU (default 0), with $USERS connections:
#   1. keyclaim-harness run scenarios/load.toml --scenario create --users 50 --cacert CA
#   2. oha -c 50 --cacert CA (POST, same body)
# each first for $WARMUP (not counted), then for $DURATION; then the same with
# `--http2` for both (nginx `listen ... ssl http2`; oha one stream per connection, as
# the harness's users). Prints requests/s, p99 and peak RSS of each, and
# `ratio harness/oha: X` per protocol (target >= $TARGET_RATIO, aim 1.3).
#
# Run:   benches/load_vs_oha_https.sh
# Env:   DURATION=10s WARMUP=2s USERS=50 CLIENT_CPU=0 SERVER_CPU=1 TARGET_RATIO=1.00
#        RSS_LIMIT_MB=64 KEYCLAIM_BIN=path (instead of `cargo build --release`) KEEP=1
#        QUIET_WAIT=120 (before each measured run, wait up to this long for both cores
#        to be >= 90% idle: another benchmark running?)
# Needs: nginx, openssl, GNU time, jq, curl; oha on PATH or in ~/.cargo/bin.
# Exit:  0 every ratio and RSS target met; 1 one missed; 2 the run is invalid.
# All traffic stays on 127.0.0.1; every run is bounded by `timeout`.

set -euo pipefail

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
USERS=${USERS:-50}
CLIENT_CPU=${CLIENT_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
TARGET_RATIO=${TARGET_RATIO:-1.00}
RSS_LIMIT_MB=${RSS_LIMIT_MB:-64}
QUIET_WAIT=${QUIET_WAIT:-120}
API_KEY=kc_bench
REQUEST_BODY="{\"key\":\"$API_KEY\",\"ttl\":30}"
BENCH_TAG=https

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

. "$here/lib/common.sh"

setup_work load_vs_oha_https

missing=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v openssl >/dev/null || missing+=(openssl)
[[ -x /usr/bin/time ]] || missing+=(time)
command -v jq >/dev/null || missing+=(jq)
command -v curl >/dev/null || missing+=(curl)
apt_install "${missing[@]}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
TIME=/usr/bin/time
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
OHA=$(command -v oha) || die "oha not found (cargo install oha --locked)"

require_two_cpus
build_harness
dur_s=$(to_secs "$DURATION")
warm_s=$(to_secs "$WARMUP")

# ---- a private CA and nginx's certificate for 127.0.0.1 ---------------------------
pki=$work/pki
mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bench CA" -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$pki/server.key" -out "$pki/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$pki/ext"
openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 2 -extfile "$pki/ext" -out "$pki/server.pem" 2>/dev/null
chmod 644 "$pki"/*
NGINX_SCHEME=https
NGINX_SERVER_EXTRA="        ssl_certificate $pki/server.pem;
        ssl_certificate_key $pki/server.key;
        ssl_session_cache shared:SSL:1m;"

# ---- one protocol: nginx, then harness and oha back to back -----------------------
run_harness() { # run_harness NAME SECONDS EXTRA...
    local name=$1 secs=$2 rc=0
    shift 2
    rm -rf "$work/$name"
    timed "$name" $((secs + 60)) env RUST_LOG="${RUST_LOG:-warn}" \
        "$BIN" run "$root/scenarios/load.toml" --scenario create \
        --users "$USERS" --duration "${secs}s" --quiet --cacert "$pki/ca.pem" "$@" \
        --target "https://127.0.0.1:$NGINX_PORT" --api-key "$API_KEY" \
        --report-dir "$work/$name" || rc=$?
    # Exit 1 = a threshold (p99 < 50ms) was crossed: the figures still count.
    if ((rc != 0 && rc != 1)) || [[ ! -s $work/$name/report.json ]]; then
        cat "$work/$name.out" "$work/$name.err" >&2
        die "harness ($name) exited $rc without a report"
    fi
    local failed
    failed=$(jq -r '.scenarios[0].load.failed_requests' "$work/$name/report.json")
    [[ $failed == 0 ]] || die "harness ($name): failed_requests=$failed; see $work/$name/report.json"
}

run_oha() { # run_oha NAME SECONDS EXTRA...
    local name=$1 secs=$2 rc=0
    shift 2
    timed "$name" $((secs + 60)) "$OHA" -c "$USERS" -z "${secs}s" --no-tui \
        --wait-ongoing-requests-after-deadline --cacert "$pki/ca.pem" "$@" \
        -m POST -H 'content-type: application/json' -d "$REQUEST_BODY" \
        --output-format json "https://127.0.0.1:$NGINX_PORT$PATH_CREATE" || rc=$?
    if ((rc != 0)) || ! jq -e '.summary.requestsPerSec' "$work/$name.out" >/dev/null 2>&1; then
        cat "$work/$name.out" "$work/$name.err" >&2
        die "oha ($name) exited $rc without a JSON summary"
    fi
}

FAILED=0
bench() { # bench LABEL NGINX_LISTEN_OPTS FLAG...
    local label=$1 h o h_p99 o_p99 h_rss o_rss ratio
    NGINX_LISTEN_OPTS=$2
    shift 2
    start_nginx
    log "$label: nginx (pid $NGINX_PID) on https://127.0.0.1:$NGINX_PORT, CPU $SERVER_CPU; generators on CPU $CLIENT_CPU"
    curl -sS --cacert "$pki/ca.pem" -o /dev/null --max-time 5 -H 'Content-Type: application/json' \
        --data "$REQUEST_BODY" "https://127.0.0.1:$NGINX_PORT$PATH_CREATE" || die "nginx preflight failed"
    if ((warm_s > 0)); then
        run_harness "harness-$label.warm" "$warm_s" "$@"
        run_oha "oha-$label.warm" "$warm_s" "$@"
    fi
    wait_quiet
    run_harness "harness-$label" "$dur_s" "$@"
    wait_quiet
    run_oha "oha-$label" "$dur_s" "$@"
    stop_pid "$NGINX_PID"
    h=$(jq -r '.scenarios[0].rps' "$work/harness-$label/report.json")
    o=$(jq -r '.summary.requestsPerSec' "$work/oha-$label.out")
    h_p99=$(jq -r '.scenarios[0].latency_us.p99 / 1000' "$work/harness-$label/report.json")
    o_p99=$(jq -r '.latencyPercentiles.p99 * 1000' "$work/oha-$label.out")
    h_rss=$(rss_mb "$work/harness-$label.time")
    o_rss=$(rss_mb "$work/oha-$label.time")
    ratio=$(awk -v h="$h" -v o="$o" 'BEGIN { printf "%.2f", h / o }')
    echo
    echo "===== HTTPS $label: $USERS connections, ${dur_s}s each, protocol $(jq -r '.scenarios[0].load.protocol' "$work/harness-$label/report.json") ====="
    printf '%-8s %12s %10s %12s\n' tool requests/s "p99 ms" "peak RSS MB"
    printf '%-8s %12.0f %10.2f %12s\n' harness "$h" "$h_p99" "$h_rss"
    printf '%-8s %12.0f %10.2f %12s\n' oha "$o" "$o_p99" "$o_rss"
    echo "ratio harness/oha: $ratio (target >= $TARGET_RATIO, aim 1.3)"
    awk -v h="$h" -v o="$o" -v t="$TARGET_RATIO" -v m="$h_rss" -v l="$RSS_LIMIT_MB" \
        'BEGIN { exit !(h / o >= t + 0 && m + 0 < l + 0) }' || FAILED=1
}

bench http1.1 "ssl"
bench h2 "ssl http2" --http2
exit "$FAILED"
