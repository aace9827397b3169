#!/usr/bin/env bash
# serve_vs_nginx.sh — throughput and CPU cost of `keyclaim-harness serve` beside nginx,
# on both endpoints.
#
# What it measures, each server pinned to CPU $SERVER_CPU (default 0), the client to
# CPU $CLIENT_CPU (default 1), one after the other:
#   create:   requests/s of `wrk -t1 -c50` POSTing a KeyClaim create
#             ({"key":"kc_bench_key","ttl":30} to /api/challenge/create) at
#               1. nginx (1 worker, access_log off) answering a fixed create-shaped
#                  JSON body, and
#               2. `keyclaim-harness serve --threads 1 --rate-limit 0`, started fresh
#                  (an empty store) and measured from its first request: no warm-up.
#             Target (issue 14): serve >= $TARGET_RATIO x nginx, with zero non-2xx.
#   floors:   the same wrk run against examples/serve_floor.rs, which answers every
#             request with the same fixed body: `hyper` (what serve runs under its
#             handlers: tokio current-thread, hyper HTTP/1.1) and `raw` (no HTTP
#             library: httparse and Content-Length only). serve's distance from the
#             hyper floor is its own work per request; the hyper floor's from nginx is
#             what the HTTP stack costs. Informational.
#   validate: create+validate pairs, 50 closed-model users of `keyclaim-harness run
#             scenarios/load.toml --scenario create-validate` (the HMAC computed by
#             the client) against nginx (a fixed verdict on /api/challenge/validate)
#             and a fresh serve: pairs/s and requests/s of each, informational (the
#             client is heavier than wrk and may bound both figures; see its core's
#             busy % in the log).
# For every run the server's CPU-us per request (its utime+stime over the requests
# answered) is printed: the figure to quote, since it depends less on a busy machine.
#
# Run:   benches/serve_vs_nginx.sh
# Env:   DURATION=10s            measured run length per target (wrk -d syntax)
#        WARMUP=0s               warm-up length per target before the create run
#                                (the issue's figure has none; 2s was the old default)
#        VALIDATE=1              also run the validate comparison (0: skip it)
#        FLOORS=1                also run the two floor servers (0: skip them)
#        KEYCLAIM_BIN=path       use this binary instead of `cargo build --release`
#        SERVER_CPU=0 CLIENT_CPU=1   cores for the servers / for the client
#        TARGET_RATIO=0.9
#        OTHER_LIMIT=10          warn when other processes/interrupts take more than
#                                this % of the server core during a measured run
#        Run it on a quiet machine: it reports how CPU 0 was shared and warns
#        when other load distorted a figure.
# Needs: taskset, cargo, jq; installs wrk, nginx, curl, jq with apt-get (as root or via
#        sudo) when they are missing.
# Exit:  0 if serve/nginx >= TARGET_RATIO on create, 1 if below, 2 if the run is
#        invalid (serve answered non-2xx, socket errors, a server failed to start, ...).
# All traffic stays on 127.0.0.1; everything started here is killed on exit.

set -euo pipefail

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-0s}
VALIDATE=${VALIDATE:-1}
FLOORS=${FLOORS:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
TARGET_RATIO=${TARGET_RATIO:-0.9}
OTHER_LIMIT=${OTHER_LIMIT:-10}   # % of the server core others may take before we warn
API_KEY=kc_bench_key
PATH_VALIDATE=/api/challenge/validate
# A create-shaped answer: 64 hex chars of challenge, like serve's.
# A verdict-shaped answer, like serve's for a business key.
NGINX_VALIDATE_BODY='{"valid":true,"signature":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","quota":{"used":1,"remaining":-1,"quota":"unlimited"}}'

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

. "$here/lib/common.sh"

setup_work serve_vs_nginx


# ---- tools -----------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
command -v taskset >/dev/null || missing+=(util-linux)
apt_install "${missing[@]}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

require_two_cpus

build_harness
if ((FLOORS)); then
    log "cargo build --release --example serve_floor"
    (cd "$root" && cargo build --release --quiet --example serve_floor) \
        || die "cargo build --release --example serve_floor failed"
    FLOOR_BIN=${CARGO_TARGET_DIR:-$root/target}/release/examples/serve_floor
fi

dur_s=$(to_secs "$DURATION")
warm_s=$(to_secs "$WARMUP")

LUA=$here/wrk/create.lua
if [[ ! -f $LUA ]]; then
    LUA=$work/create.lua
    cat >"$LUA" <<EOF
wrk.method = "POST"
wrk.path = "$PATH_CREATE"
wrk.body = '{"key":"$API_KEY","ttl":30}'
wrk.headers["Content-Type"] = "application/json"
EOF
fi

# run_wrk URL SECONDS OUTFILE — pinned, bounded in time
run_wrk() {
    local url=$1 secs=$2 out=$3
    timeout --foreground --kill-after=5 $((secs + 30)) \
        taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d"${secs}s" --latency -s "$LUA" "$url" >"$out" 2>&1 \
        || { cat "$out" >&2; die "wrk failed against $url"; }
}
rps_of() { awk '/^Requests\/sec:/ {print $2}' "$1"; }
# "bad" if wrk saw non-2xx/3xx answers or socket errors
errors_of() { grep -E '^[[:space:]]*(Non-2xx or 3xx responses|Socket errors):' "$1" || true; }

# CPU accounting, to tell whether a run was fair. snap prints: server core
# idle ticks, total ticks; client core idle ticks, total ticks; server ticks
# (utime+stime of the pinned server and its children, all threads; a task's stime
# includes the irq/softirq time spent while it was running).
snap() {
    local pid=$1 p ticks=0
    awk -v c="cpu$SERVER_CPU" '$1 == c { printf "%d %d ", $5+$6, $2+$3+$4+$5+$6+$7+$8+$9 }' /proc/stat
    awk -v c="cpu$CLIENT_CPU" '$1 == c { printf "%d %d ", $5+$6, $2+$3+$4+$5+$6+$7+$8+$9 }' /proc/stat
    for p in "$pid" $(pgrep -P "$pid" || true); do   # nginx: master + worker
        ticks=$((ticks + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$ticks"
}
# cpu_report NAME "SNAP_BEFORE" "SNAP_AFTER" REQUESTS: how the server core was spent
# (the server, idle, everything else = other processes + interrupts outside the
# server) and how busy the client core was, on stderr; on stdout "US OTHER": the
# server's CPU microseconds per request, and the "other" percentage.
cpu_report() {
    local name=$1 reqs=$4 i0 t0 ci0 ct0 p0 i1 t1 ci1 ct1 p1
    read -r i0 t0 ci0 ct0 p0 <<<"$2"
    read -r i1 t1 ci1 ct1 p1 <<<"$3"
    awk -v n="$name" -v i=$((i1 - i0)) -v t=$((t1 - t0)) -v ci=$((ci1 - ci0)) -v ct=$((ct1 - ct0)) \
        -v p=$((p1 - p0)) -v r="$reqs" -v hz="$(getconf CLK_TCK)" -v sc="$SERVER_CPU" -v cc="$CLIENT_CPU" \
        -v lim="$OTHER_LIMIT" 'BEGIN {
        if (t <= 0 || ct <= 0 || r <= 0) { print "0 0"; exit }
        srv = 100 * p / t; idle = 100 * i / t; other = 100 - srv - idle; if (other < 0) other = 0
        cbusy = 100 - 100 * ci / ct; us = 1e6 * p / hz / r
        printf "[bench] cpu during %s run: CPU %s: %s %.0f%%, idle %.0f%%, other %.0f%%; CPU %s (wrk) busy %.0f%%; %s used %.2f CPU-us/request\n", \
            n, sc, n, srv, idle, other, cc, cbusy, n, us > "/dev/stderr"
        if (other > lim) printf "[bench] WARNING: %.0f%% of CPU %s went to other processes/interrupts during the %s run (limit %s%%); the machine is not quiet, the requests/s figure is unreliable\n", other, sc, n, lim > "/dev/stderr"
        else if (cbusy > 97) printf "[bench] note: CPU %s (wrk) was saturated during the %s run; that figure is client-bound\n", cc, n > "/dev/stderr"
        printf "%.3f %.0f\n", us, other
    }'
}

# preflight URL NAME — one request, must answer 200 with a challenge
preflight() {
    local url=$1 name=$2 code
    code=$(curl -sS -o "$work/$name.preflight" -w '%{http_code}' --max-time 5 \
        -H 'Content-Type: application/json' --data "{\"key\":\"$API_KEY\",\"ttl\":30}" "$url") \
        || die "$name did not answer the preflight request"
    [[ $code == 200 ]] || die "$name answered $code to create: $(head -c 300 "$work/$name.preflight")"
    grep -q '"challenge"' "$work/$name.preflight" || die "$name answer has no challenge: $(head -c 300 "$work/$name.preflight")"
    log "$name preflight: 200 $(head -c 120 "$work/$name.preflight")"
}

# bench URL NAME PID — warm-up then measured run; sets RPS_<NAME>
bench() {
    local url=$1 name=$2 pid=$3 before after
    preflight "$url" "$name"
    : >"$work/$name.warm"
    if ((warm_s > 0)); then
        log "$name: warm-up ${warm_s}s"
        run_wrk "$url" "$warm_s" "$work/$name.warm"
    fi
    log "$name: measuring ${dur_s}s"
    before=$(snap "$pid")
    run_wrk "$url" "$dur_s" "$work/$name.wrk"
    after=$(snap "$pid")
    echo "----- wrk vs $name -----"
    cat "$work/$name.wrk"
    local rps errs reqs cpu
    rps=$(rps_of "$work/$name.wrk")
    [[ -n $rps ]] || die "no Requests/sec in wrk output for $name"
    printf -v "RPS_${name}" '%s' "$rps"
    reqs=$(awk '/ requests in / {print $1}' "$work/$name.wrk")
    cpu=$(cpu_report "$name" "$before" "$after" "${reqs:-0}")
    printf -v "US_${name}" '%s' "${cpu% *}"
    printf -v "OTHER_${name}" '%s' "${cpu#* }"
    errs=$(errors_of "$work/$name.wrk")$(errors_of "$work/$name.warm")
    if [[ -n $errs ]]; then
        if [[ $name == serve ]]; then
            printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
            printf '!!! INVALID RUN: wrk saw errors from serve; the ratio means nothing:\n%s\n' "$errs" >&2
            printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
            exit 2
        fi
        log "WARNING: wrk saw errors from $name: $errs"
    fi
}

# ---- nginx -------------------------------------------------------------------

# ---- serve -------------------------------------------------------------------
start_serve() {
    taskset -c "$SERVER_CPU" "$BIN" serve --listen 127.0.0.1:0 --threads 1 --rate-limit 0 \
        --api-key "$API_KEY" >"$work/serve.out" 2>"$work/serve.err" &
    await_listening serve $!
    SERVE_PORT=$LISTENING_PORT SERVE_PID=$LISTENING_PID
}

# start_floor hyper|raw: the floor server (examples/serve_floor.rs) on $SERVER_CPU;
# sets FLOOR_PORT, FLOOR_PID
start_floor() {
    taskset -c "$SERVER_CPU" "$FLOOR_BIN" "$1" >"$work/floor_$1.out" 2>"$work/floor_$1.err" &
    await_listening "floor_$1" $!
    FLOOR_PORT=$LISTENING_PORT FLOOR_PID=$LISTENING_PID
}

# await_listening NAME PID: waits for the first line "listening on http://127.0.0.1:PORT"
# in $work/NAME.out; sets LISTENING_PORT and LISTENING_PID
await_listening() {
    local name=$1 pid=$2 out=$work/$1.out line=""
    pids+=("$pid")
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { cat "$work/$name.err" >&2; die "$name exited at start"; }
        IFS= read -r line <"$out" || true
        [[ $line == "listening on http://"* ]] && break
        sleep 0.1
    done
    [[ $line =~ ^listening\ on\ http://127\.0\.0\.1:([0-9]+)$ ]] \
        || { cat "$work/$name.err" >&2; die "$name's first line was not 'listening on http://127.0.0.1:PORT': '$line'"; }
    LISTENING_PORT=${BASH_REMATCH[1]} LISTENING_PID=$pid
}

# bench_pairs BASE_URL NAME PID — create+validate pairs from the harness (50 users,
# closed model) for $dur_s; sets PAIRS_<NAME>, VRPS_<NAME>, VUS_<NAME>, VOTHER_<NAME>
bench_pairs() {
    local base=$1 name=$2 pid=$3 before after rc=0 report failed iterations requests cpu
    log "$name: create+validate pairs, measuring ${dur_s}s"
    before=$(snap "$pid")
    timeout --foreground --kill-after=5 $((dur_s + 60)) \
        taskset -c "$CLIENT_CPU" env RUST_LOG=warn "$BIN" run "$root/scenarios/load.toml" \
        --scenario create-validate --users 50 --duration "${dur_s}s" --quiet \
        --target "$base" --api-key "$API_KEY" --report-dir "$work/$name.pairs" \
        >"$work/$name.pairs.out" 2>&1 || rc=$?
    after=$(snap "$pid")
    report=$work/$name.pairs/report.json
    # Exit 1 = a threshold of the plan (p99, error rate) was crossed: judged here instead.
    if ((rc != 0 && rc != 1)) || [[ ! -s $report ]]; then
        cat "$work/$name.pairs.out" >&2
        die "harness against $name exited $rc without a report"
    fi
    failed=$(jq -r '.scenarios[0].load.failed_requests // "missing"' "$report")
    iterations=$(jq -r '.scenarios[0].load.iterations // .scenarios[0].iterations // 0' "$report")
    requests=$(jq -r '.scenarios[0].requests // 0' "$report")
    [[ $failed == 0 ]] || die "harness against $name: failed_requests=$failed; see $report (KEEP=1 keeps it)"
    ((requests > 0)) || die "harness against $name: no requests"
    printf -v "VRPS_${name}" '%s' "$(awk -v r="$requests" -v d="$dur_s" 'BEGIN { printf "%.0f", r / d }')"
    printf -v "PAIRS_${name}" '%s' "$(awk -v r="$requests" -v d="$dur_s" 'BEGIN { printf "%.0f", r / 2 / d }')"
    cpu=$(cpu_report "$name (pairs)" "$before" "$after" "$requests")
    printf -v "VUS_${name}" '%s' "${cpu% *}"
    printf -v "VOTHER_${name}" '%s' "${cpu#* }"
    : "$iterations"
}

log "servers on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU; wrk -t1 -c50, warm-up ${warm_s}s (serve starts with an empty store), run ${dur_s}s"

start_nginx
log "nginx (pid $NGINX_PID) on 127.0.0.1:$NGINX_PORT"
bench "http://127.0.0.1:$NGINX_PORT$PATH_CREATE" nginx "$NGINX_PID"
stop_pid "$NGINX_PID"

start_serve
log "serve (pid $SERVE_PID) on 127.0.0.1:$SERVE_PORT, empty store"
bench "http://127.0.0.1:$SERVE_PORT$PATH_CREATE" serve "$SERVE_PID"
stop_pid "$SERVE_PID"

if ((FLOORS)); then
    for stack in hyper raw; do
        start_floor "$stack"
        log "floor $stack (pid $FLOOR_PID) on 127.0.0.1:$FLOOR_PORT"
        bench "http://127.0.0.1:$FLOOR_PORT$PATH_CREATE" "floor_$stack" "$FLOOR_PID"
        stop_pid "$FLOOR_PID"
    done
fi

if ((VALIDATE)); then
    start_nginx
    bench_pairs "http://127.0.0.1:$NGINX_PORT" nginx "$NGINX_PID"
    stop_pid "$NGINX_PID"
    start_serve
    bench_pairs "http://127.0.0.1:$SERVE_PORT" serve "$SERVE_PID"
    stop_pid "$SERVE_PID"
fi

ratio=$(awk -v s="$RPS_serve" -v n="$RPS_nginx" 'BEGIN { printf "%.2f", s / n }')
pass=$(awk -v r="$ratio" -v t="$TARGET_RATIO" 'BEGIN { print (r + 0 >= t + 0) ? 1 : 0 }')

cpu_ratio=$(awk -v s="$US_serve" -v n="$US_nginx" 'BEGIN { if (s > 0) printf "%.2f", n / s; else print "n/a" }')

echo
echo "===== serve vs nginx (wrk -t1 -c50 -d${dur_s}s, servers on CPU $SERVER_CPU) ====="
printf 'nginx  requests/s: %s\n' "$RPS_nginx"
printf 'serve  requests/s: %s\n' "$RPS_serve"
printf 'ratio serve/nginx: %s (target >= %s)\n' "$ratio" "$TARGET_RATIO"
printf 'CPU-us/request: nginx %s, serve %s; CPU-efficiency ratio nginx/serve: %s (informational:\n' "$US_nginx" "$US_serve" "$cpu_ratio"
printf '    the ratio a dedicated, saturated core would give; less sensitive to a busy machine)\n'
if ((FLOORS)); then
    printf 'floors (a fixed answer, no KeyClaim work; informational):\n'
    for stack in hyper raw; do
        rps_var=RPS_floor_$stack us_var=US_floor_$stack
        printf '  %-5s floor requests/s: %s, %s CPU-us/request; serve/floor %s, floor/nginx %s\n' \
            "$stack" "${!rps_var}" "${!us_var}" \
            "$(awk -v s="$RPS_serve" -v f="${!rps_var}" 'BEGIN { printf "%.2f", s / f }')" \
            "$(awk -v f="${!rps_var}" -v n="$RPS_nginx" 'BEGIN { printf "%.2f", f / n }')"
    done
fi
if ((VALIDATE)); then
    vratio=$(awk -v s="$PAIRS_serve" -v n="$PAIRS_nginx" 'BEGIN { printf "%.2f", s / n }')
    printf 'validate (create+validate pairs, harness run --users 50, %ss):\n' "$dur_s"
    printf '  nginx  pairs/s: %s (%s requests/s), %s CPU-us/request\n' "$PAIRS_nginx" "$VRPS_nginx" "$VUS_nginx"
    printf '  serve  pairs/s: %s (%s requests/s), %s CPU-us/request\n' "$PAIRS_serve" "$VRPS_serve" "$VUS_serve"
    printf '  ratio serve/nginx: %s (informational: the client may bound both)\n' "$vratio"
fi
unreliable=""
if awk -v a="$OTHER_nginx" -v b="$OTHER_serve" -v l="$OTHER_LIMIT" 'BEGIN { exit !(a > l || b > l) }'; then
    echo "WARNING: other load on CPU $SERVER_CPU during the runs (nginx ${OTHER_nginx}%, serve ${OTHER_serve}%); rerun on a quiet machine"
    unreliable=" [UNRELIABLE: machine busy]"
fi
if ((pass)); then
    echo "PASS: serve reaches ${ratio}x nginx's requests/s (>= $TARGET_RATIO)$unreliable"
    exit 0
else
    echo "FAIL: serve reaches only ${ratio}x nginx's requests/s (< $TARGET_RATIO)$unreliable"
    exit 1
fi
