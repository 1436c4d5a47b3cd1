# Redis's own view (REDIS_URL as the service has it); never KEYS * on a live server, SCAN instead
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
redis-cli -u "$REDIS_URL" info memory | grep -E '^(used_memory_human|maxmemory_human|maxmemory_policy):'
redis-cli -u "$REDIS_URL" info clients | grep '^connected_clients:'
redis-cli -u "$REDIS_URL" --scan --pattern 'listing:*' | head -5
