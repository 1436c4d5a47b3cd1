curl -si -X POST "$BASE/logout/" -H "Authorization: Bearer $TOKEN"
curl -si "$BASE/orders/" -H "Authorization: Bearer $TOKEN"
