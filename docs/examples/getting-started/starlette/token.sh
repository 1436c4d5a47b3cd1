TOKEN=$(python -m examples.mint_token ayse)
curl -si "$BASE/me" -H "Authorization: Bearer $TOKEN"
