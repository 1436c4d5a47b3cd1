# Ask for a code, then sign in with a test number's fixed code; prints the login's answer and status
BASE=${BASE:-http://127.0.0.1:8000}
PHONE=${PHONE:-+905550000001}
CODE=${CODE:-123456}
curl -s -o /dev/null -XPOST "$BASE/auth/otp" -H 'content-type: application/json' -d "{\"phone\": \"$PHONE\"}"
curl -s -w '\n%{http_code}\n' -XPOST "$BASE/auth/login/phone" -H 'content-type: application/json' \
     -d "{\"phone\": \"$PHONE\", \"code\": \"$CODE\"}"
