BASE=${BASE:-http://127.0.0.1:8000}
curl -s "$BASE/items/7/" -w "  (%{http_code})\n"
curl -si "$BASE/orders/"
