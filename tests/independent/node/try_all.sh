#!/usr/bin/env bash
# Run the conformance suite against every variant of server.js (or the ones named).
#   tests/independent/node/try_all.sh [VARIANT ...]
# Env: H (harness binary), PLAN (plan file), OUT (work dir), JOBS (parallel runs, max 2),
#      EXTRA (extra harness args, e.g. "--strict").
# Prints: variant, correct|broken, harness exit code, verdict, failed scenarios.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
H="${H:-$HERE/../../../target/debug/keyclaim-harness}"
# Default plan: the one in the tree the harness binary was built from (binary and plan
# must match), else the repository's.
HTREE="$(cd "$(dirname "$H")/../.." 2>/dev/null && pwd)"
if [ -z "${PLAN:-}" ]; then
  if [ -f "$HTREE/scenarios/conformance.toml" ]; then PLAN="$HTREE/scenarios/conformance.toml"
  else PLAN="$HERE/../../../scenarios/conformance.toml"; fi
fi
OUT="${OUT:-/tmp/nodevar}"
JOBS="${JOBS:-2}"
EXTRA="${EXTRA:-}"
[ "$JOBS" -gt 2 ] && JOBS=2
P=kc_primary_aaaa1111
S=kc_second_bbbb2222
R=kc_rsa_cccc3333

mkdir -p "$OUT/keys" "$OUT/r" "$OUT/logs"
[ -f "$OUT/keys/private.pem" ] || "$H" keygen --out-dir "$OUT/keys" >/dev/null || exit 2

run_one() { # name kind
  local name="$1" kind="$2" port pid rc failed verdict log="$OUT/logs/$1"
  rm -rf "$OUT/r/$name" "$log".*
  node "$HERE/server.js" --listen 127.0.0.1:0 --api-key "$P" --api-key "$S" \
    --rsa-api-key "$R" --public-key "$OUT/keys/public.pem" --variant "$name" \
    >"$log.stdout" 2>"$log.stderr" &
  pid=$!
  port=""
  for _ in $(seq 1 100); do
    port=$(sed -n '1s#^listening on http://127\.0\.0\.1:\([0-9]*\)$#\1#p' "$log.stdout" 2>/dev/null)
    [ -n "$port" ] && break
    sleep 0.05
  done
  if [ -z "$port" ]; then
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$kind" "-" "SERVER-DID-NOT-START" "-"
    return
  fi
  timeout 600 "$H" run "$PLAN" --target "http://127.0.0.1:$port" \
    --api-key "$P" --second-api-key "$S" --rsa-api-key "$R" \
    --private-key "$OUT/keys/private.pem" --report-dir "$OUT/r/$name" --quiet $EXTRA \
    >"$log.harness" 2>&1
  rc=$?
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  failed=$(node -e '
    const fs = require("fs");
    let r; try { r = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch (e) { console.log("(no report)"); process.exit(0); }
    const bad = (r.scenarios || []).filter((s) => !s.passed && !s.skipped);
    const lines = [];
    for (const s of bad) for (const c of s.checks || []) if (c.outcome !== "pass") lines.push(`${s.name}: [${c.outcome}] ${c.name}: ${c.message}`);
    fs.writeFileSync(process.argv[2], lines.join("\n") + "\n");
    console.log(bad.length ? bad.map((s) => s.name).join(",") : "-");
  ' "$OUT/r/$name/report.json" "$log.failures")
  if [ "$kind" = correct ]; then
    [ "$rc" = 0 ] && verdict="ok(passed)" || verdict="HARNESS-REJECTS-CORRECT"
  else
    [ "$rc" = 0 ] && verdict="MISS(passed)" || verdict="ok(caught)"
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$kind" "$rc" "$verdict" "$failed"
}

if [ $# -gt 0 ]; then
  want=" $* "
else
  want=""
fi
list=$(node "$HERE/server.js" --list-variants)
echo "# plan: $PLAN" >&2
printf 'variant\tkind\texit\tverdict\tfailed scenarios\n'
running=0
while IFS=$'\t' read -r name kind _desc; do
  if [ -n "$want" ] && [[ "$want" != *" $name "* ]]; then continue; fi
  run_one "$name" "$kind" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done <<<"$list"
wait
