# Send your own request id: it comes back in the response and is on every log line of the request
BASE=${BASE:-http://127.0.0.1:8000}
curl -s -o /dev/null -D - -H 'X-Request-ID: checkout-42' "$BASE/health" | grep -i '^x-request-id'
