TOKEN=$(python -m examples.mint_token ayse)
curl -s "$BASE/items/7/" -H "Authorization: Bearer $TOKEN" -w "  (%{http_code})\n"
curl -si "$BASE/orders/" -H "Authorization: Bearer $TOKEN"
