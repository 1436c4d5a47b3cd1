# Kapı's own metrics, in Prometheus text format (process metrics left out)
BASE=${BASE:-http://127.0.0.1:8000}
curl -s "$BASE/metrics" | grep -E '^kapi_(http_requests_total|redis_circuit_state|cache_events_total|near_cache_events_total)'
