curl -si -X POST "$BASE/logout" -H "Authorization: Bearer $TOKEN"
curl -si "$BASE/me" -H "Authorization: Bearer $TOKEN"
