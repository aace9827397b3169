#!/usr/bin/env bash
# Run the keyclaim-harness conformance plan against every variant of server.py.
# Usage: ./try_all.sh [VARIANT ...]     (default: all variants)
# Env:   H=harness binary, PLAN=plan file, OUT=work dir, JOBS=parallel runs (max 2)
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
H="${H:-$HERE/../../../target/debug/keyclaim-harness}"
PLAN="${PLAN:-/work/main/scenarios/conformance.toml}"
OUT="${OUT:-/tmp/pyvar}"
JOBS="${JOBS:-2}"
RUN_TIMEOUT="${RUN_TIMEOUT:-300}"
K1=kc_primary_aaaa1111 K2=kc_second_bbbb2222 K3=kc_rsa_cccc3333
mkdir -p "$OUT/keys" "$OUT/r" "$OUT/logs"
[ -f "$OUT/keys/private.pem" ] || "$H" keygen --out-dir "$OUT/keys" >/dev/null

run_one() {
  local name="$1" kind="$2" log="$OUT/logs/$1" rep="$OUT/r/$1"
  rm -rf "$rep"; mkdir -p "$rep"
  python3 "$HERE/server.py" --listen 127.0.0.1:0 --api-key $K1 --api-key $K2 \
      --rsa-api-key $K3 --public-key "$OUT/keys/public.pem" --variant "$name" \
      >"$log.srv.out" 2>"$log.srv.err" &
  local spid=$! port="" i
  for i in $(seq 1 50); do
    port=$(sed -n 's#^listening on http://127\.0\.0\.1:\([0-9]*\)$#\1#p' "$log.srv.out" | head -1)
    [ -n "$port" ] && break; sleep 0.1
  done
  local rc
  if [ -z "$port" ]; then rc=NOSTART; else
    timeout "$RUN_TIMEOUT" "$H" run "$PLAN" --target "http://127.0.0.1:$port" \
      --api-key $K1 --second-api-key $K2 --rsa-api-key $K3 \
      --private-key "$OUT/keys/private.pem" --report-dir "$rep" --quiet >"$log.h.out" 2>&1
    rc=$?
  fi
  kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null
  local failed
  failed=$(python3 - "$rep/report.json" "$log.detail" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception:
    print("-(no report)"); sys.exit()
names, lines = [], []
for s in r.get("scenarios", []):
    if not s.get("passed", True):
        names.append(s["name"])
        for c in s.get("checks", []):
            if c.get("outcome") == "fail":
                lines.append("%s: %s" % (s["name"], c.get("message", "")))
                ev = c.get("evidence") or {}
                if ev:
                    lines.append("    req:  %s" % str(ev.get("request", ""))[:300])
                    lines.append("    resp: %s" % str(ev.get("response", ""))[:300])
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
print(",".join(names) or "-")
PY
)
  printf '%s\t%s\t%s\t%s\n' "$name" "$kind" "$rc" "$failed" >"$log.row"
}

if [ $# -gt 0 ]; then
  LIST=$(python3 "$HERE/server.py" --list-variants | awk -F'\t' -v want=" $* " 'index(want, " "$1" ")')
else
  LIST=$(python3 "$HERE/server.py" --list-variants)
fi

running=0
while IFS=$'\t' read -r name kind desc; do
  [ -z "$name" ] && continue
  run_one "$name" "$kind" &
  running=$((running+1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running-1)); fi
done <<<"$LIST"
wait

printf 'VARIANT\tKIND\tEXIT\tFAILED_SCENARIOS\tVERDICT\n'
while IFS=$'\t' read -r name kind desc; do
  [ -z "$name" ] && continue
  row=$(cat "$OUT/logs/$name.row" 2>/dev/null || printf '%s\t%s\t?\t-' "$name" "$kind")
  rc=$(printf '%s' "$row" | cut -f3)
  v=ok
  if [ "$kind" = correct ] && [ "$rc" != 0 ]; then v="WRONGLY-FAILED"; fi
  if [ "$kind" = broken ] && [ "$rc" = 0 ]; then v="MISSED"; fi
  printf '%s\t%s\n' "$row" "$v"
done <<<"$LIST"

echo
echo "Failing checks of correct variants:"
while IFS=$'\t' read -r name kind desc; do
  [ "$kind" = correct ] && grep -q . "$OUT/logs/$name.detail" 2>/dev/null && { echo "== $name"; cat "$OUT/logs/$name.detail"; }
done <<<"$LIST"
