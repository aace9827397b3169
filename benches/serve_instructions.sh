#!/usr/bin/env bash
# serve_instructions.sh — CPU instructions per create and per validate of
# `keyclaim-harness serve --threads 1`, beside nginx answering the same requests with a
# fixed body: a figure that does not depend on how busy the machine is (unlike
# requests/s), for developing and for checking a change.
#
# How: each server runs under `valgrind --tool=callgrind` (instructions of all its
# threads, kernel time not included) three times, from a fresh start each time, while
# benches/lib/keyclaim_load.py sends over $CONNECTIONS keep-alive connections
#   run 1: $BASE creates
#   run 2: $BASE + $N creates
#   run 3: $BASE + $N creates, then $N validations of challenges from them
# per create   = (run 2 - run 1) / N     (start-up, shutdown and connects cancel out)
# per validate = (run 3 - run 2) / N
# serve starts with an empty store each time and has no warm-up beyond $BASE creates.
#
# Run:   benches/serve_instructions.sh
# Env:   N=2000 BASE=200 CONNECTIONS=8
#        KEYCLAIM_BIN=path    use this binary instead of `cargo build --release`
#        NGINX=0              skip nginx
#        KEEP=1               keep the callgrind files (callgrind_annotate them)
# Needs: valgrind, python3, curl; installs valgrind and nginx with apt-get when missing.
# Exit:  0 when measured, 2 when a run failed.
# All traffic stays on 127.0.0.1; everything started here is stopped on exit.

set -euo pipefail

N=${N:-2000}
BASE=${BASE:-200}
CONNECTIONS=${CONNECTIONS:-8}
API_KEY=kc_bench_key
PATH_VALIDATE=/api/challenge/validate
SERVER_CPU=${SERVER_CPU:-0}
NGINX_VALIDATE_BODY='{"valid":true,"signature":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","quota":{"used":1,"remaining":-1,"quota":"unlimited"}}'
BENCH_TAG=instructions

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
. "$here/lib/common.sh"
setup_work serve_instructions

missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v curl >/dev/null || missing+=(curl)
if [[ ${NGINX:-1} != 0 ]]; then
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
fi
apt_install "${missing[@]}"
command -v python3 >/dev/null || die "python3 is needed for the load client"
build_harness

# instructions FILE: the total instruction count callgrind wrote.
instructions() { awk '/^(summary|totals):/ { print $2; exit }' "$1"; }

# wait_port PORT PID NAME: until PORT answers (valgrind starts slowly), at most 60 s.
wait_port() {
    local port=$1 pid=$2 name=$3
    for _ in $(seq 1 600); do
        kill -0 "$pid" 2>/dev/null || die "$name exited at start; see $work"
        curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/" && return 0
        sleep 0.1
    done
    die "$name did not answer within 60 s"
}

# measure NAME CREATES VALIDATES: one fresh run of NAME (serve|nginx); sets MEASURED to
# its instruction total.
measure() {
    local name=$1 creates=$2 validates=$3 out pid port line=""
    out=$work/$name.$creates.$validates.callgrind
    case $name in
    serve)
        valgrind --tool=callgrind --callgrind-out-file="$out" -q \
            "$BIN" serve --listen 127.0.0.1:0 --threads 1 --rate-limit 0 --api-key "$API_KEY" \
            >"$work/serve.out" 2>"$work/serve.err" &
        pid=$!
        pids+=("$pid")
        for _ in $(seq 1 600); do
            kill -0 "$pid" 2>/dev/null || { cat "$work/serve.err" >&2; die "serve exited at start"; }
            IFS= read -r line <"$work/serve.out" || true
            [[ $line == "listening on http://"* ]] && break
            sleep 0.1
        done
        [[ $line =~ :([0-9]+)$ ]] || die "serve did not say where it listens: '$line'"
        port=${BASH_REMATCH[1]}
        ;;
    nginx)
        port=$(( 20000 + RANDOM % 40000 ))
        mkdir -p "$work/nginx/logs" "$work/nginx/tmp"
        cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
$( [[ $(id -u) -eq 0 ]] && echo "user root;" )
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path $work/nginx/tmp/body;
    proxy_temp_path $work/nginx/tmp/proxy;
    fastcgi_temp_path $work/nginx/tmp/fastcgi;
    uwsgi_temp_path $work/nginx/tmp/uwsgi;
    scgi_temp_path $work/nginx/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        location = $PATH_CREATE { default_type application/json; return 200 '$NGINX_BODY'; }
        location = $PATH_VALIDATE { default_type application/json; return 200 '$NGINX_VALIDATE_BODY'; }
        location / { return 404; }
    }
}
EOF
        valgrind --tool=callgrind --callgrind-out-file="$out" -q \
            "$NGINX_BIN" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/logs/error.log" \
            >"$work/nginx.out" 2>&1 &
        pid=$!
        pids+=("$pid")
        ;;
    esac
    wait_port "$port" "$pid" "$name"
    timeout 600 python3 "$here/lib/keyclaim_load.py" "$port" "$API_KEY" "$creates" "$validates" "$CONNECTIONS" \
        || die "the load client failed against $name"
    # TERM: serve and nginx both shut down cleanly, and callgrind writes its file then.
    kill -TERM "$pid"
    for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    stop_pid "$pid"
    [[ -s $out ]] || die "callgrind wrote nothing for $name"
    MEASURED=$(instructions "$out")
    [[ -n $MEASURED ]] || die "no instruction total in $out"
}

# per_request NAME: sets PER_CREATE_<NAME> and PER_VALIDATE_<NAME>.
per_request() {
    local name=$1 base created validated
    log "$name: $BASE, $((BASE + N)) creates, then $N validations (each run fresh, under callgrind)"
    measure "$name" "$BASE" 0
    base=$MEASURED
    measure "$name" $((BASE + N)) 0
    created=$MEASURED
    measure "$name" $((BASE + N)) "$N"
    validated=$MEASURED
    printf -v "PER_CREATE_${name}" '%s' "$(awk -v a="$base" -v b="$created" -v n="$N" 'BEGIN { printf "%.0f", (b - a) / n }')"
    printf -v "PER_VALIDATE_${name}" '%s' "$(awk -v a="$created" -v b="$validated" -v n="$N" 'BEGIN { printf "%.0f", (b - a) / n }')"
}

per_request serve
if [[ ${NGINX:-1} != 0 ]]; then
    NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
    per_request nginx
fi

echo
echo "===== instructions per request (callgrind; $N requests over $CONNECTIONS connections) ====="
printf 'serve  create: %s   validate: %s\n' "$PER_CREATE_serve" "$PER_VALIDATE_serve"
if [[ ${NGINX:-1} != 0 ]]; then
    printf 'nginx  create: %s   validate: %s   (a fixed body)\n' "$PER_CREATE_nginx" "$PER_VALIDATE_nginx"
    awk -v s="$PER_CREATE_serve" -v n="$PER_CREATE_nginx" -v sv="$PER_VALIDATE_serve" -v nv="$PER_VALIDATE_nginx" \
        'BEGIN { printf "ratio serve/nginx instructions: create %.2f, validate %.2f (user space only: the kernel'"'"'s share, the socket work, is not counted)\n", s / n, sv / nv }'
fi
