BASE=${BASE:-http://127.0.0.1:8000}
curl -s "$BASE/public" -w "  (%{http_code})\n"
curl -si "$BASE/private"
