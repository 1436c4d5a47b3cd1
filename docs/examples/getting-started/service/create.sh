LISTING=$(curl -s -X POST "$BASE/listings" -H "$AUTH" -H 'content-type: application/json' \
          -d '{"title": "Bisiklet", "description": "Az kullanılmış", "price": "1250.50", "city": "İstanbul"}')
echo "$LISTING"
ID=$(echo "$LISTING" | python3 -c 'import sys, json; print(json.load(sys.stdin)["id"])')
