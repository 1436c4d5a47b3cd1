# Does the Redis that holds revocations keep them? (REDIS_URL as the service has it)
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
redis-cli -u "$REDIS_URL" config get maxmemory-policy
redis-cli -u "$REDIS_URL" config get appendonly
