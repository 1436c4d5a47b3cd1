# The rate-limit state this Redis holds (REDIS_URL as the service has it); SCAN, never KEYS *
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
redis-cli -u "$REDIS_URL" --scan --pattern 'rate_limit:*'
