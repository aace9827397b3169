#!/usr/bin/env bash
# soak.sh — a long run at a steady arrival rate: does any request fail, and does the
# server's (or the harness's) memory grow once the run is in its steady state?
#
# What it does: starts `keyclaim-harness serve` on 127.0.0.1 (a free port, a generated
# key, `--retain-expired $RETAIN`), then `keyclaim-harness run scenarios/soak.toml`
# against it at $RATE iterations/s for $MINUTES (each iteration: create + validate,
# and one create left to expire, TTL 5 s: 3 requests). Every $SAMPLE_S seconds it
# writes VmRSS of both processes to $OUT/rss.csv (time_s,server_rss_kb,harness_rss_kb).
# The plan's thresholds (error_rate <= 0, dropped_rate <= 0, p99 < 500ms) are judged by
# the harness itself; its reports go to $OUT/report/.
#
# Steady state: a challenge is forgotten TTL (5 s) + RETAIN (default 10 s) after it is
# issued, so the store stops growing after ~15 s; the server's RSS still creeps up for a
# few minutes after that (the store's hash shards keep the largest capacity they have
# needed and never shrink, and the allocator settles, as we read it), then stays flat. WARMUP_S (default: a third of
# the run, 200 s for 10 minutes) leaves room for that.
# "RSS at warm-up" is the mean of the samples in [WARMUP_S, WARMUP_S + 15 s); "end" the
# mean of the last 15 s of samples while the harness ran. Growth = end / warm-up - 1.
#
# Run:   benches/soak.sh [MINUTES]            (not part of CI: it takes MINUTES)
# Env:   MINUTES=10          how long the load runs (whole minutes)
#        RATE=500            iterations per second (x3 requests/s); keep it well below
#                            capacity: a soak looks for leaks and errors, not limits
#        WARMUP_S=MINUTES*20 see above
#        RETAIN=10s          serve --retain-expired (default of serve: 60s)
#        SAMPLE_S=5          RSS sampling interval
#        TOLERANCE_PCT=10    fail when the server's RSS grew more than this after warm-up
#        HARNESS_TOLERANCE_PCT=25   the same for the harness (its per-second timeline
#                            grows with the run by design: ~600 entries for 10 minutes)
#        OUT=reports/soak    CSV, logs and the harness's reports
#        KEYCLAIM_BIN=path   use this binary instead of `cargo build --release`
#                            (CARGO_TARGET_DIR is honoured for the build)
# Exit:  0 no failed request and RSS within tolerance; 1 a request failed, a threshold
#        was crossed, or RSS grew too much; 2 the soak could not run.
# All traffic stays on 127.0.0.1; the run is bounded (MINUTES + 2 minutes at most);
# everything started here is stopped on exit. The API key is never printed.

set -euo pipefail

MINUTES=${1:-${MINUTES:-10}}
RATE=${RATE:-500}
RETAIN=${RETAIN:-10s}
SAMPLE_S=${SAMPLE_S:-5}
TOLERANCE_PCT=${TOLERANCE_PCT:-10}
HARNESS_TOLERANCE_PCT=${HARNESS_TOLERANCE_PCT:-25}
WINDOW_S=15   # the averaging window for "at warm-up" and "at the end"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
OUT=${OUT:-$root/reports/soak}

BENCH_TAG=soak
. "$here/lib/common.sh"
# Keys look like kc_<letters/digits>; logs shown on failure pass through this.
redact() { sed -E 's/kc_[A-Za-z0-9_-]+/kc_[redacted]/g'; }

[[ $MINUTES =~ ^[0-9]+$ ]] && ((MINUTES > 0)) || die "MINUTES must be a whole number above 0 (got $MINUTES)"
[[ $RATE =~ ^[0-9]+([.][0-9]+)?$ ]] || die "RATE must be a number (got $RATE)"
[[ $SAMPLE_S =~ ^[0-9]+$ ]] && ((SAMPLE_S > 0)) || die "SAMPLE_S must be whole seconds above 0"
run_s=$((MINUTES * 60))
WARMUP_S=${WARMUP_S:-$(( run_s / 3 ))}
[[ $WARMUP_S =~ ^[0-9]+$ ]] || die "WARMUP_S must be whole seconds"
((WARMUP_S + WINDOW_S <= run_s - WINDOW_S)) || die "the run is too short for WARMUP_S=$WARMUP_S"
command -v jq >/dev/null || die "needs jq"

setup_work soak   # 0700: the server's stderr holds the key

# ---- build -------------------------------------------------------------------
build_harness
# The binary may be rebuilt under us by other work; run a private copy.
cp "$BIN" "$work/keyclaim-harness"
BIN=$work/keyclaim-harness

# ---- the server ----------------------------------------------------------------
"$BIN" serve --listen 127.0.0.1:0 --rate-limit 0 --retain-expired "$RETAIN" \
    >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
pids+=("$server_pid")
url=""
for _ in $(seq 1 100); do
    url=$(sed -n 's/^listening on \(http:\/\/127\.0\.0\.1:[0-9]*\)$/\1/p' "$work/serve.out")
    [[ -n $url ]] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
[[ -n $url ]] || { redact <"$work/serve.err" >&2; die "serve did not start"; }
key=$(sed -n 's/^no keys given; generated API key: \(kc_[A-Za-z0-9_-]*\)$/\1/p' "$work/serve.err")
[[ -n $key ]] || { redact <"$work/serve.err" >&2; die "serve printed no generated key"; }

# ---- the load, and the samples -------------------------------------------------
mkdir -p "$OUT"
rm -rf "$OUT/report"
csv=$OUT/rss.csv
echo "time_s,server_rss_kb,harness_rss_kb" >"$csv"
log "serve (pid $server_pid) at $url, --retain-expired $RETAIN"
log "run scenarios/soak.toml: $RATE iterations/s (3 requests each) for ${MINUTES}m; warm-up ${WARMUP_S}s; RSS every ${SAMPLE_S}s -> $csv"

# The key travels in the environment only (not argv, which `ps` shows).
KEYCLAIM_API_KEY=$key RUST_LOG=${RUST_LOG:-warn} "$BIN" run "$root/scenarios/soak.toml" \
    --scenario soak --target "$url" --rate "$RATE" --duration "${MINUTES}m" \
    --quiet --report-dir "$OUT/report" >"$work/run.out" 2>"$work/run.err" &
harness_pid=$!
pids+=("$harness_pid")
unset key

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

start=$EPOCHREALTIME
deadline=$((run_s + 120))   # the run's own end plus room to drain and write reports
next=0
server_died=0
while kill -0 "$harness_pid" 2>/dev/null; do
    now=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    if awk -v n="$now" -v t="$next" 'BEGIN { exit !(n >= t) }'; then
        s=$(rss_kb "$server_pid") h=$(rss_kb "$harness_pid")
        [[ -n $s ]] || { server_died=1; break; }
        # The harness may have just exited: no sample rather than a half one.
        [[ -n $h ]] && echo "$now,$s,$h" >>"$csv"
        next=$((next + SAMPLE_S))
    fi
    if awk -v n="$now" -v d="$deadline" 'BEGIN { exit !(n >= d) }'; then
        log "the harness is still running ${deadline}s after it started: stopping it"
        kill -TERM "$harness_pid" 2>/dev/null || true
        break
    fi
    sleep 0.5
done
rc=0
wait "$harness_pid" || rc=$?
server_alive=1
kill -0 "$server_pid" 2>/dev/null || server_alive=0
((server_died == 0 && server_alive == 1)) || { redact <"$work/serve.err" >&2; die "the server died during the soak"; }
# The server after the load, for the record (not judged: nothing is left to free).
after=$(rss_kb "$server_pid")

report=$OUT/report/report.json
if [[ ! -s $report ]]; then
    redact <"$work/run.err" >&2
    die "the harness exited $rc without a report"
fi
redact <"$work/run.out" >"$OUT/run.out"

# ---- summary -------------------------------------------------------------------
# column 2 = server, 3 = harness. "warm" and "end" average a WINDOW_S window.
figures() {
    awk -F, -v c="$1" -v w="$WARMUP_S" -v win="$WINDOW_S" '
        NR == 1 { next }
        { t[++n] = $1; v[n] = $c; if ($c > max) max = $c; if (n == 1) first = $c }
        END {
            last_t = t[n]
            for (i = 1; i <= n; i++) {
                if (t[i] >= w && t[i] < w + win) { ws += v[i]; wn++ }
                if (t[i] > last_t - win) { es += v[i]; en++ }
                if (t[i] >= w && v[i] > wmax) wmax = v[i]
            }
            warm = wn ? ws / wn : 0; end = en ? es / en : 0
            growth = warm ? 100 * (end / warm - 1) : 0
            printf "%d %.0f %.0f %d %d %.1f %d\n", first, warm, end, max, wmax, growth, n
        }' "$csv"
}
read -r s_first s_warm s_end s_max s_wmax s_growth samples <<<"$(figures 2)"
read -r h_first h_warm h_end h_max h_wmax h_growth _ <<<"$(figures 3)"
((samples * SAMPLE_S >= WARMUP_S + 2 * WINDOW_S)) || die "only $samples samples in $csv"

jq -r '.scenarios[0] as $s | $s.load as $l |
    "requests \($s.requests), failed \($l.failed_requests), achieved \($l.achieved_rate | floor) iterations/s of \($l.target_rate // "?"), dropped \($l.dropped), late \($l.late), in flight at end \($l.in_flight_at_end)",
    "latency p50 \($s.latency_us.p50)us p99 \($s.latency_us.p99)us p99.9 \($s.latency_us.p999)us max \($s.latency_us.max)us",
    "thresholds: \([$s.checks[] | "\(.name) \(.outcome)"] | join(", "))"' "$report" >"$work/summary"
failed=$(jq -r '.scenarios[0].load.failed_requests // "missing"' "$report")
requests=$(jq -r '.scenarios[0].requests // 0' "$report")

mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
echo
echo "===== soak: ${MINUTES}m at $RATE iterations/s (3 requests each), serve --retain-expired $RETAIN ====="
cat "$work/summary"
printf '%-8s %9s %9s %9s %9s %16s %8s\n' "RSS MB" start warm-up end max "max after warm" growth
printf '%-8s %9s %9s %9s %9s %16s %7s%%\n' server "$(mb "$s_first")" "$(mb "$s_warm")" "$(mb "$s_end")" \
    "$(mb "$s_max")" "$(mb "$s_wmax")" "$s_growth"
printf '%-8s %9s %9s %9s %9s %16s %7s%%\n' harness "$(mb "$h_first")" "$(mb "$h_warm")" "$(mb "$h_end")" \
    "$(mb "$h_max")" "$(mb "$h_wmax")" "$h_growth"
[[ -n $after ]] && echo "server RSS after the load stopped: $(mb "$after") MB"
echo "($samples samples every ${SAMPLE_S}s in $csv; the harness's reports in $OUT/report)"

status=0
if [[ $failed != 0 ]]; then
    echo "FAIL: $failed of $requests requests failed (see $OUT/report/report.json)"
    status=1
elif ((rc != 0)); then
    echo "FAIL: the harness exited $rc (a threshold was crossed, or it was stopped; see $OUT/run.out)"
    status=1
else
    echo "PASS: $requests requests, none failed"
fi
if awk -v g="$s_growth" -v t="$TOLERANCE_PCT" 'BEGIN { exit !(g > t) }'; then
    echo "FAIL: the server's RSS grew ${s_growth}% after warm-up (tolerance ${TOLERANCE_PCT}%)"
    status=1
else
    echo "PASS: the server's RSS grew ${s_growth}% after warm-up (tolerance ${TOLERANCE_PCT}%)"
fi
if awk -v g="$h_growth" -v t="$HARNESS_TOLERANCE_PCT" 'BEGIN { exit !(g > t) }'; then
    echo "FAIL: the harness's RSS grew ${h_growth}% after warm-up (tolerance ${HARNESS_TOLERANCE_PCT}%)"
    status=1
else
    echo "PASS: the harness's RSS grew ${h_growth}% after warm-up (tolerance ${HARNESS_TOLERANCE_PCT}%)"
fi
exit "$status"
