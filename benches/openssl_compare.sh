#!/usr/bin/env bash
# Sets `keyclaim-harness crypto-bench` beside `openssl speed` on this machine, in one run,
# and prints our figure / OpenSSL's for each path, with the targets from issue 5:
#   (a) HMAC-SHA256 of a 64-byte challenge, pre-keyed: within 1.5x of the SHA-256
#       compression limit (3 compressions per HMAC; per-block cost from
#       `openssl speed -evp sha256` at 16 KB), and >= 1.0x OpenSSL's own HMAC at 64 bytes;
#   (b) RSA-2048 OAEP decrypt per core on the default backend >= 0.9x `openssl speed
#       rsa2048` private-key (sign) ops/s, with the pure-Rust backend beside it;
#   (c) 2-thread scaling >= 1.8x for HMAC and RSA.
# OpenSSL's RSA figures are raw sign/verify (PKCS#1 v1.5), the same private/public
# modular exponentiation as OAEP decrypt/encrypt without the OAEP padding work.
#
# Usage: bash benches/openssl_compare.sh        (BENCH_SECONDS=N per measurement, default 2)
# Needs: cargo, openssl (1.1 or 3.x), jq. Takes about two minutes after the build.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${BENCH_SECONDS:-2}
for tool in cargo openssl jq awk; do
    command -v "$tool" >/dev/null || { echo "openssl_compare.sh: needs $tool" >&2; exit 2; }
done

echo "== building keyclaim-harness (release)" >&2
cargo build --release --quiet --bin keyclaim-harness
target_dir=$(cargo metadata --no-deps --format-version 1 | jq -r .target_directory)
bin="$target_dir/release/keyclaim-harness"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# How busy the CPUs are without us (percent, over one second), to flag a noisy run.
busy_percent() {
    [ -r /proc/stat ] || { echo 0; return; }
    local a b
    a=$(awk '/^cpu / { print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8 }' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / { print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8 }' /proc/stat)
    echo "$a $b" | awk '{ d = $4 - $2; printf "%d", (d > 0 ? 100 * ($3 - $1) / d : 0) }'
}
busy_before=$(busy_percent)

echo "== keyclaim-harness crypto-bench (${secs}s per measurement, 1..2 threads)" >&2
"$bin" crypto-bench --format json --seconds "$secs" --threads 2 > "$work/ours.json"

echo "== openssl speed (${secs}s per measurement)" >&2
# -mr: machine-readable lines, `+F:n:name:bytes/s` and `+F2:n:bits:sign/s:verify/s`.
openssl speed -mr -seconds "$secs" -evp sha256 -bytes 16384 2>/dev/null > "$work/sha256.txt"
# OpenSSL 3 has `-mac HMAC -macopt digest:SHA256`; 1.1 and 3.0 have `-hmac sha256`.
if openssl speed -help 2>&1 | grep -q -- '^ *-mac '; then
    openssl speed -mr -seconds "$secs" -mac HMAC -macopt digest:SHA256 -bytes 64 2>/dev/null > "$work/hmac.txt"
else
    openssl speed -mr -seconds "$secs" -hmac sha256 -bytes 64 2>/dev/null > "$work/hmac.txt"
fi
openssl speed -mr -seconds "$secs" rsa2048 rsa3072 rsa4096 2>/dev/null > "$work/rsa.txt"

# ours PATH BACKEND THREADS -> ops/s
ours() {
    jq -r --arg p "$1" --arg b "$2" --argjson t "$3" \
        '.[] | select(.path == $p and .backend == $b and .threads == $t) | .ops_per_sec' \
        "$work/ours.json"
}
scaling() {
    jq -r --arg p "$1" --arg b "$2" \
        '.[] | select(.path == $p and .backend == $b and .threads == 2) | .scaling' \
        "$work/ours.json"
}
bytes_per_sec() { awk -F: '/^\+F:/ { print $NF; exit }' "$1"; }
# rsa_speed BITS sign|verify -> ops/s
rsa_speed() {
    awk -F: -v bits="$1" -v col="$2" \
        '/^\+F2:/ && $3 == bits { print (col == "sign" ? $4 : $5); exit }' "$work/rsa.txt"
}
# verdict VALUE OP TARGET -> PASS/MISS
verdict() { awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { ok = (op == ">=" ? v >= t : v <= t); print (ok ? "PASS" : "MISS") }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
num() { awk -v v="$1" 'BEGIN { printf "%.0f", v }'; }

default_backend=$(jq -r '[.[] | select(.path | startswith("rsa")) | .backend][0]' "$work/ours.json")
sha256_bps=$(bytes_per_sec "$work/sha256.txt")
hmac_bps=$(bytes_per_sec "$work/hmac.txt")
compression_limit=$(awk -v b="$sha256_bps" 'BEGIN { print b / 64 / 3 }')
openssl_hmac=$(awk -v b="$hmac_bps" 'BEGIN { print b / 64 }')
hmac1=$(ours hmac-sha256 rustcrypto 1)

echo
echo "keyclaim-harness crypto-bench vs $(openssl version | cut -d' ' -f1-2), $(nproc) cores," \
    "CPUs ${busy_before}% busy before the run, ${secs}s per measurement"
if [ "${busy_before:-0}" -gt 10 ]; then
    echo "note: other processes kept the CPUs ${busy_before}% busy just before the run; figures,"
    echo "      and 2-thread scaling most of all, may read low. Rerun on an idle machine."
fi
echo
echo "(a) HMAC-SHA256, 64-byte challenge, pre-keyed, 1 thread"
printf '  %-44s %14s ops/s\n' "ours (hmac-sha256, with hex)" "$(num "$hmac1")"
printf '  %-44s %14s ops/s  ours/limit %s (target >= 0.67, i.e. within 1.5x) %s\n' \
    "SHA-256 compression limit (3 blocks/HMAC)" "$(num "$compression_limit")" \
    "$(ratio "$hmac1" "$compression_limit")" \
    "$(verdict "$(ratio "$hmac1" "$compression_limit")" ">=" 0.667)"
printf '  %-44s %14s ops/s  ours/openssl %s (target >= 1.0) %s\n' \
    "OpenSSL HMAC(SHA256), 64-byte input" "$(num "$openssl_hmac")" \
    "$(ratio "$hmac1" "$openssl_hmac")" "$(verdict "$(ratio "$hmac1" "$openssl_hmac")" ">=" 1.0)"
echo
echo "(b) RSA-OAEP-SHA256 per core (1 thread) vs openssl speed raw RSA (decrypt~sign, encrypt~verify)"
printf '  %-22s %-11s %12s %14s %8s\n' path backend "ours ops/s" "openssl ops/s" ratio
for bits in 2048 3072 4096; do
    for op in decrypt encrypt; do
        col=$([ "$op" = decrypt ] && echo sign || echo verify)
        theirs=$(rsa_speed "$bits" "$col")
        for backend in $(jq -r '[.[] | .backend] | unique | .[]' "$work/ours.json"); do
            value=$(ours "rsa$bits-oaep-$op" "$backend" 1)
            [ -n "$value" ] || continue
            note=""
            if [ "$bits" = 2048 ] && [ "$op" = decrypt ] && [ "$backend" = "$default_backend" ]; then
                note="  (target >= 0.9) $(verdict "$(ratio "$value" "$theirs")" ">=" 0.9)"
            fi
            printf '  %-22s %-11s %12s %14s %7sx%s\n' "rsa$bits-oaep-$op" "$backend" \
                "$(num "$value")" "$(num "$theirs")" "$(ratio "$value" "$theirs")" "$note"
        done
    done
done
echo
echo "(c) 2-thread scaling (ops/s at 2 threads / ops/s at 1 thread; target >= 1.8x)"
while read -r path backend; do
    s=$(scaling "$path" "$backend")
    [ -n "$s" ] || continue
    printf '  %-22s %-11s %6.2fx %s\n' "$path" "$backend" "$s" "$(verdict "$s" ">=" 1.8)"
done < <(jq -r '.[] | select(.threads == 2) | "\(.path) \(.backend)"' "$work/ours.json")
