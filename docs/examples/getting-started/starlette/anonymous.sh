BASE=${BASE:-http://127.0.0.1:8000}
curl -si "$BASE/me"
