LAPTOP=$(python -m examples.mint_token ayse)
PHONE=$(python -m examples.mint_token ayse)
curl -s "$BASE/items/7/" -H "Authorization: Bearer $PHONE" -w "  (%{http_code})\n"
curl -s -X POST "$BASE/logout/all/" -H "Authorization: Bearer $LAPTOP" -w "(%{http_code})\n"
curl -s "$BASE/items/7/" -H "Authorization: Bearer $PHONE" -w "  (%{http_code})\n"
