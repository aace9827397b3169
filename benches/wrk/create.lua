-- wrk script for benches/serve_vs_nginx.sh: every request is the same
-- KeyClaim create call. nginx ignores the body; serve answers it.
-- No per-response callback, so wrk itself stays cheap.
wrk.method = "POST"
wrk.path = "/api/challenge/create"
wrk.body = '{"key":"kc_bench_key","ttl":30}'
wrk.headers["Content-Type"] = "application/json"
