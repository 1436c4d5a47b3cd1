# What the service itself sees of Redis (a diagnostic endpoint: on in development, DIAGNOSTICS=true in production)
BASE=${BASE:-http://127.0.0.1:8000}
curl -s "$BASE/test-redis"
echo
curl -s "$BASE/ready"
echo
