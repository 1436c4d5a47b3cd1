curl -s -X POST "$BASE/auth/logout" -H "$AUTH" -w '%{http_code}\n'
curl -s "$BASE/auth/session" -H "$AUTH" -w '  (%{http_code})\n'
