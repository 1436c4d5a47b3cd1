BASE=${BASE:-http://127.0.0.1:8000}
curl -s -X POST "$BASE/auth/otp" -H 'content-type: application/json' -d '{"phone": "+905550000001"}'
echo
LOGIN=$(curl -s -X POST "$BASE/auth/login/phone" -H 'content-type: application/json' \
        -d '{"phone": "+905550000001", "code": "123456"}')
TOKEN=$(echo "$LOGIN" | python3 -c 'import sys, json; print(json.load(sys.stdin).get("access_token", ""))')
AUTH="Authorization: Bearer $TOKEN"
if [ -n "$TOKEN" ]; then echo "signed in"; else echo "sign-in failed: $LOGIN"; fi
curl -s "$BASE/auth/session" -H "$AUTH"
echo
