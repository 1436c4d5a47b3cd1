TOKEN=$(python -m examples.mint_token ayse)
curl -si "$BASE/private" -H "Authorization: Bearer $TOKEN"
