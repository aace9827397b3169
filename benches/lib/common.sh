# Shared by the benchmark scripts: logging, stopping what they started, and an nginx
# (one worker, pinned to $SERVER_CPU) answering POST $PATH_CREATE with $NGINX_BODY
# (and, when the script sets them, $PATH_VALIDATE with $NGINX_VALIDATE_BODY).
# The sourcing script calls setup_work and defines, for nginx: NGINX (the binary) and
# SERVER_CPU; for TLS also NGINX_LISTEN_OPTS (e.g. "ssl" or "ssl http2"),
# NGINX_SERVER_EXTRA (ssl_certificate lines) and NGINX_SCHEME=https.

# The create every bench sends, and the fixed create answer its nginx gives: one
# definition, so each bench's nginx answers exactly what the others' does.
PATH_CREATE=/api/challenge/create
NGINX_BODY='{"challenge":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","expires_in":30}'

# A sourcing script may set BENCH_TAG first (default "bench") to prefix its lines.
log() { printf '[%s] %s\n' "${BENCH_TAG:-bench}" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "${BENCH_TAG:-bench}" "$*" >&2; exit 2; }

# setup_work NAME: a private temp dir in $work (mode 0700), an empty $pids, and traps
# that stop everything started and remove $work on any exit (KEEP=1 keeps it).
setup_work() {
    work=$(mktemp -d -t "$1.XXXXXX")
    pids=()
    trap cleanup EXIT
    trap 'log "interrupted"; exit 130' INT
    trap 'log "terminated"; exit 143' TERM
}

cleanup() {
    local pid
    for pid in "${pids[@]}"; do stop_tree "$pid"; done
    pids=()
    if [[ -n ${KEEP:-} ]]; then log "kept $work"; else rm -rf "$work"; fi
}

# apt_install PKG...: installs the Debian packages named (none: nothing to do), with
# sudo unless root.
apt_install() {
    (($#)) || return 0
    log "installing: $*"
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# require_two_cpus: SERVER_CPU and CLIENT_CPU must be two distinct CPUs of this machine,
# or the two sides of a comparison would share a core.
require_two_cpus() {
    local ncpu
    ncpu=$(nproc --all)
    if ((ncpu < 2)) || ((SERVER_CPU >= ncpu)) || ((CLIENT_CPU >= ncpu)) || ((SERVER_CPU == CLIENT_CPU)); then
        die "need two distinct CPUs $CLIENT_CPU and $SERVER_CPU; this machine has $ncpu"
    fi
}

# to_secs DUR: a duration in whole seconds (10s, 2m, 1h, or a bare number); wrk's and
# oha's flags and our timeouts all take it so.
to_secs() {
    local d=$1
    case $d in
        *h) echo $(( ${d%h} * 3600 ));;
        *m) echo $(( ${d%m} * 60 ));;
        *s) echo "${d%s}";;
        *)  echo "$d";;
    esac
}

# build_harness: BIN is $KEYCLAIM_BIN, or a release build of this checkout ($root).
build_harness() {
    if [[ -n ${KEYCLAIM_BIN:-} ]]; then
        BIN=$KEYCLAIM_BIN
    else
        log "cargo build --release"
        (cd "$root" && cargo build --release --quiet) || die "cargo build --release failed"
        BIN=${CARGO_TARGET_DIR:-$root/target}/release/keyclaim-harness
    fi
    [[ -x $BIN ]] || die "no executable at $BIN"
}

# Peak RSS in MB from a `time -v` output file.
rss_mb() { awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$1"; }

# timed NAME TIMEOUT_S CMD... — /usr/bin/time -v ($TIME) around a bounded command
# pinned to $CLIENT_CPU. Leaves $work/NAME.{out,err,time}; returns the command's exit code.
timed() {
    local name=$1 limit=$2 rc=0
    shift 2
    "$TIME" -v -o "$work/$name.time" \
        timeout --kill-after=5 "$limit" taskset -c "$CLIENT_CPU" "$@" \
        >"$work/$name.out" 2>"$work/$name.err" || rc=$?
    return "$rc"
}

# stop_tree PID: TERM the process (nginx master / serve), wait up to 3 s, then KILL
# it and any children it left (nginx's worker).
stop_tree() {
    local pid=$1 kids
    kids=$(pgrep -P "$pid" 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" $kids 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

stop_pid() { # stop one started process and drop it from pids
    local pid=$1 p keep=()
    stop_tree "$pid"
    for p in "${pids[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    pids=("${keep[@]+"${keep[@]}"}")
}

# start_nginx: sets NGINX_PORT and NGINX_PID, retrying on a taken port.
start_nginx() {
    local prefix=$work/nginx port pid
    mkdir -p "$prefix/logs" "$prefix/tmp"
    chmod 755 "$work" "$prefix" "$prefix/tmp"
    for _ in $(seq 1 20); do
        port=$(( 20000 + RANDOM % 40000 ))
        cat >"$prefix/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $prefix/nginx.pid;
error_log $prefix/logs/error.log warn;
$( [[ $(id -u) -eq 0 ]] && echo "user root;" )
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    client_body_temp_path $prefix/tmp/body;
    proxy_temp_path $prefix/tmp/proxy;
    fastcgi_temp_path $prefix/tmp/fastcgi;
    uwsgi_temp_path $prefix/tmp/uwsgi;
    scgi_temp_path $prefix/tmp/scgi;
    server {
        listen 127.0.0.1:$port ${NGINX_LISTEN_OPTS:-};
${NGINX_SERVER_EXTRA:-}
        location = $PATH_CREATE {
            default_type application/json;
            return 200 '$NGINX_BODY';
        }
$( [[ -n ${PATH_VALIDATE:-} ]] && printf '        location = %s {\n            default_type application/json;\n            return 200 %s;\n        }\n' "$PATH_VALIDATE" "'$NGINX_VALIDATE_BODY'" )
        location / { return 404; }
    }
}
EOF
        taskset -c "$SERVER_CPU" "$NGINX" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log" \
            >"$prefix/stdout" 2>&1 &
        pid=$!
        pids+=("$pid")
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            if curl -sk -o /dev/null --max-time 1 "${NGINX_SCHEME:-http}://127.0.0.1:$port/"; then
                NGINX_PORT=$port NGINX_PID=$pid
                return 0
            fi
            sleep 0.1
        done
        stop_pid "$pid"
        if ! grep -q 'Address already in use' "$prefix/logs/error.log" "$prefix/stdout" 2>/dev/null; then
            cat "$prefix/logs/error.log" "$prefix/stdout" >&2 2>/dev/null || true
            die "nginx failed to start"
        fi
        : >"$prefix/logs/error.log"
    done
    die "nginx: no free port found"
}

# ---- CPU accounting (needs CLIENT_CPU, SERVER_CPU, NGINX_PID, QUIET_WAIT) ----------
HZ=$(getconf CLK_TCK)
# "client_busy client_total server_busy server_total nginx_ticks" (ticks; nginx =
# utime+stime of master + worker, so the rest of the server core is someone else).
cpu_snap() {
    local p ticks=0
    for p in "$NGINX_PID" $(pgrep -P "$NGINX_PID" || true); do
        ticks=$((ticks + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    awk -v c="cpu$CLIENT_CPU" -v s="cpu$SERVER_CPU" -v n="$ticks" '
        $1 == c { cb = $2+$3+$4+$7+$8; ct = cb+$5+$6 }
        $1 == s { sb = $2+$3+$4+$7+$8; st = sb+$5+$6 }
        END { print cb, ct, sb, st, n }' /proc/stat
}
# Waits (up to QUIET_WAIT seconds) until both cores are >= 90% idle over 1 s:
# another benchmark on the machine would make every figure meaningless.
wait_quiet() {
    local a b deadline=$((SECONDS + QUIET_WAIT)) said=""
    while :; do
        a=$(cpu_snap); sleep 1; b=$(cpu_snap)
        read -r cb0 ct0 sb0 st0 _ <<<"$a"; read -r cb1 ct1 sb1 st1 _ <<<"$b"
        if (( (cb1 - cb0) * 10 <= (ct1 - ct0) && (sb1 - sb0) * 10 <= (st1 - st0) )); then
            [[ -z $said ]] || log "machine quiet again"
            return 0
        fi
        if ((SECONDS >= deadline)); then
            log "WARNING: CPUs $CLIENT_CPU/$SERVER_CPU still busy after ${QUIET_WAIT}s of waiting; measuring anyway"
            return 0
        fi
        if [[ -z $said ]]; then
            said=1
            log "CPUs $CLIENT_CPU/$SERVER_CPU busy with other work; waiting up to ${QUIET_WAIT}s; busiest:"
            ps -eo pcpu=,psr=,comm= --sort=-pcpu | head -3 | awk '{ printf "[bench]   %s%% (cpu%s) %s\n", $1, $2, $3 }' >&2
        fi
    done
}
