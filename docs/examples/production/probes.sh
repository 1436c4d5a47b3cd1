# The probes a load balancer or an orchestrator uses, and the diagnostics (off in production)
BASE=${BASE:-http://127.0.0.1:8000}
for path in health ready test-redis; do
  curl -s -o /dev/null -w "$path %{http_code}\n" "$BASE/$path"
done
