# Development only, on a Redis of your own: forget the limits counted for the anonymous client 127.0.0.1
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
redis-cli -u "$REDIS_URL" --scan --pattern 'rate_limit:ip:127.0.0.1:*' | while IFS= read -r key; do
  redis-cli -u "$REDIS_URL" del "$key" > /dev/null && echo "deleted $key"
done
