#!/usr/bin/env bash
# Writes the kustomize overlay of one scaled-out run over the base beside this script,
# and prints its directory: `kubectl apply -k "$DIR"` starts the run.
#
# Every name gets the run ID as a suffix (one run, one name: a second run never meets
# the first one's Jobs), the Secret and the ConfigMap are generated with a content hash
# (nothing that exists is overwritten), and the image is pinned by digest.
#
#   KEYCLAIM_API_KEY=kc_... deploy/kubernetes/new-run.sh \
#       --image registry.example/keyclaim-harness@sha256:<64 hex> \
#       --plan scenarios/load.toml --target https://keyclaim.example.internal --workers 4
#
# Options: --image REF@sha256:DIGEST (required), --plan FILE (default: the base's
# plan.toml), --target URL, --workers N (default 4), --register-timeout DUR (10m),
# --on-missing fail|start (fail), --generator-pool (workers only on nodes labelled
# keyclaim.dev/pool=load-generators), --metrics (workers serve live figures on :9464
# with Prometheus scrape annotations), --run-id ID (default: UTC date-time), --out DIR
# (default: $TMPDIR/keyclaim-runs/ID).
#
# The API key comes from KEYCLAIM_API_KEY, never a flag (flags show in `ps` and shell
# history). It is written to DIR/keys.env (mode 0600) for kustomize's secretGenerator:
# delete that file once the run is applied.
#
# Exit codes: 0 written; 2 invalid arguments (the message says which and what to do).
set -euo pipefail

base="$(cd "$(dirname "$0")" && pwd)"
usage() {
    echo "error: $1" >&2
    echo "usage: KEYCLAIM_API_KEY=... $0 --image REF@sha256:DIGEST [--plan FILE] [--target URL] [--workers N] [--register-timeout DUR] [--on-missing fail|start] [--generator-pool] [--metrics] [--run-id ID] [--out DIR]" >&2
    exit 2
}

image="" plan="$base/plan.toml" target="https://keyclaim.example.internal" workers=4
register_timeout=10m on_missing=fail pool=false metrics=false run_id="" out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --image) image="${2-}"; shift 2 ;;
        --plan) plan="${2-}"; shift 2 ;;
        --target) target="${2-}"; shift 2 ;;
        --workers) workers="${2-}"; shift 2 ;;
        --register-timeout) register_timeout="${2-}"; shift 2 ;;
        --on-missing) on_missing="${2-}"; shift 2 ;;
        --generator-pool) pool=true; shift ;;
        --metrics) metrics=true; shift ;;
        --run-id) run_id="${2-}"; shift 2 ;;
        --out) out="${2-}"; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) usage "unknown option $1" ;;
    esac
done

[[ "$image" =~ ^([^@[:space:]]+)@(sha256:[0-9a-f]{64})$ ]] \
    || usage "--image must name the image by digest, REPOSITORY@sha256:<64 hex> (after docker push: docker buildx imagetools inspect REPOSITORY:TAG shows it)"
image_name="${BASH_REMATCH[1]}" image_digest="${BASH_REMATCH[2]}"
[ -f "$plan" ] || usage "--plan $plan: no such file"
[[ "$target" =~ ^https?://[^[:space:]]+$ ]] || usage "--target $target: give the base URL, http(s)://HOST[:PORT]"
[[ "$workers" =~ ^[1-9][0-9]*$ ]] || usage "--workers $workers: a whole number of at least 1"
[[ "$register_timeout" =~ ^[0-9]+(ms|s|m|h)$ ]] || usage "--register-timeout $register_timeout: a duration such as 90s or 10m"
[[ "$on_missing" =~ ^(fail|start)$ ]] || usage "--on-missing $on_missing: fail or start"
run_id="${run_id:-$(date -u +%Y%m%d-%H%M%S)}"
# The suffix goes into DNS names (Service, pods): lower case, digits and dashes.
[[ "$run_id" =~ ^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$ ]] \
    || usage "--run-id $run_id: 1 to 20 lower-case letters, digits and dashes, not starting or ending with a dash"
key="${KEYCLAIM_API_KEY-}"
[ -n "$key" ] || usage "KEYCLAIM_API_KEY is not set: export the API key the workers test with"
[[ "$key" != *$'\n'* ]] || usage "KEYCLAIM_API_KEY holds a line break"

out="${out:-${TMPDIR:-/tmp}/keyclaim-runs/$run_id}"
[ ! -e "$out/kustomization.yaml" ] || usage "$out already holds a run; give another --run-id or --out"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
relative_base="$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$base" "$out")"

cp "$plan" "$out/plan.toml"
(umask 077 && printf 'api-key=%s\n' "$key" > "$out/keys.env")
components=""
if [ "$pool" = true ]; then
    components="$components
  - $relative_base/components/generator-pool"
fi
if [ "$metrics" = true ]; then
    components="$components
  - $relative_base/components/metrics"
fi
if [ -n "$components" ]; then
    components="components:$components"
fi
cat > "$out/kustomization.yaml" <<EOF
# Run $run_id, written by deploy/kubernetes/new-run.sh.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $relative_base
nameSuffix: -$run_id
labels:
  - pairs:
      keyclaim.dev/run: "$run_id"
    includeSelectors: true
images:
  - name: keyclaim-harness
    newName: $image_name
    digest: $image_digest
configMapGenerator:
  - name: keyclaim-run
    behavior: replace
    files:
      - plan.toml
    literals:
      - target=$target
      - workers=$workers
      - rendezvous=http://keyclaim-rendezvous-$run_id:7450
      - register-timeout=$register_timeout
      - on-missing=$on_missing
secretGenerator:
  - name: keyclaim-keys
    envs:
      - keys.env
patches:
  - target:
      kind: Job
      name: keyclaim-workers
    patch: |-
      - op: replace
        path: /spec/completions
        value: $workers
      - op: replace
        path: /spec/parallelism
        value: $workers
      - op: replace
        path: /spec/maxFailedIndexes
        value: $((workers - 1))
$components
EOF
echo "$out"
