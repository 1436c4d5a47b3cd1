curl -si -X POST "$BASE/logout" -H "Authorization: Bearer $TOKEN"
curl -si "$BASE/private" -H "Authorization: Bearer $TOKEN"
