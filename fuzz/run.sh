#!/usr/bin/env bash
# run.sh — runs every cargo-fuzz target here for a bounded time each.
#
# Run:   fuzz/run.sh [SECONDS]          (default 60 per target; not part of CI)
# Env:   FUZZ_TOOLCHAIN=nightly   the toolchain cargo-fuzz builds with
#        SANITIZER=address        cargo fuzz -s: address (needs nightly) or none
#                                 (works on stable too, with FUZZ_TOOLCHAIN=stable)
#        TARGETS="a b"            only these targets (default: `cargo fuzz list`)
#        FUZZ_TARGET_DIR=dir      build there instead of fuzz/target (e.g. to keep a
#                                 stable and a nightly build apart)
# Needs: cargo-fuzz (`cargo install cargo-fuzz --locked`), the toolchain above.
# Exit:  0 no target crashed; 1 a target found a crash (the input is saved under
#        fuzz/artifacts/TARGET/, and libFuzzer's output is printed); 2 a build failed
#        or a target did not stop in time.
# Each target is built first (not counted), then its binary is fuzzed for SECONDS
# (libFuzzer's -max_total_time, and a hard `timeout` 60 s above it). The binary runs
# directly, with the arguments `cargo fuzz run` gives it, because `cargo fuzz run`
# rebuilds first when a source file changed since the build, and that rebuild would
# eat the time. One input taking over 10 s counts as a crash (a hang). New
# interesting inputs go to fuzz/corpus/TARGET/, which git ignores except seed-* files.

set -euo pipefail

SECONDS_EACH=${1:-60}
FUZZ_TOOLCHAIN=${FUZZ_TOOLCHAIN:-nightly}
SANITIZER=${SANITIZER:-address}
[[ $SECONDS_EACH =~ ^[0-9]+$ ]] && ((SECONDS_EACH > 0)) || {
    echo "usage: fuzz/run.sh [SECONDS]" >&2
    exit 2
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
fuzz=(cargo "+$FUZZ_TOOLCHAIN" fuzz)
opts=(--fuzz-dir "$here" -s "$SANITIZER")
[[ -z ${FUZZ_TARGET_DIR:-} ]] || opts+=(--target-dir "$FUZZ_TARGET_DIR")
# Where cargo fuzz puts the binaries: TARGET_DIR/HOST_TRIPLE/release/NAME.
host=$(rustc "+$FUZZ_TOOLCHAIN" -vV | sed -n 's/^host: //p')
bin_dir=${FUZZ_TARGET_DIR:-$here/target}/$host/release
log() { printf '[fuzz] %s\n' "$*" >&2; }

if [[ -n ${TARGETS:-} ]]; then
    read -r -a targets <<<"$TARGETS"
else
    mapfile -t targets < <("${fuzz[@]}" list --fuzz-dir "$here")
fi
((${#targets[@]})) || { log "no fuzz targets found"; exit 2; }

out=$(mktemp -d -t fuzz-run.XXXXXX)
trap 'rm -rf "$out"' EXIT

status=0
summary=()
for target in "${targets[@]}"; do
    log "building $target ($FUZZ_TOOLCHAIN, sanitizer $SANITIZER)"
    timeout 1800 "${fuzz[@]}" build "${opts[@]}" "$target" \
        || { log "build of $target failed"; exit 2; }
    [[ -x $bin_dir/$target ]] || { log "no fuzz binary at $bin_dir/$target"; exit 2; }
    mkdir -p "$here/corpus/$target" "$here/artifacts/$target"
    log "fuzzing $target for ${SECONDS_EACH}s"
    rc=0
    timeout --kill-after=10 $((SECONDS_EACH + 60)) \
        "$bin_dir/$target" -artifact_prefix="$here/artifacts/$target/" \
        -max_total_time="$SECONDS_EACH" -timeout=10 -print_final_stats=1 \
        "$here/corpus/$target" >"$out/$target.log" 2>&1 || rc=$?
    # libFuzzer's last "#N DONE cov: ..." line and its run count.
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$out/$target.log" | tail -1 || true)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$target.log" | tail -1)
    if ((rc == 0)); then
        summary+=("$target: ok, ${runs:-?} runs in ${SECONDS_EACH}s; ${done_line:-no DONE line}")
    elif ((rc == 124 || rc == 137)); then
        ((status == 1)) || status=2
        summary+=("$target: did not stop within $((SECONDS_EACH + 60))s (${runs:-?} runs); no crash saved")
    else
        status=1
        cat "$out/$target.log" >&2
        summary+=("$target: FAILED (exit $rc) after ${runs:-?} runs; see fuzz/artifacts/$target/")
    fi
done

printf '%s\n' "${summary[@]}"
exit "$status"
