# Sign in with a test number and its fixed code; prints the answer, then the status
BASE=${BASE:-http://127.0.0.1:8000}
PHONE=${PHONE:-+905550000001}
CODE=${CODE:-123456}
curl -s -o /dev/null -XPOST "$BASE/auth/otp" -H 'content-type: application/json' -d "{\"phone\": \"$PHONE\"}"
curl -s -w '\n%{http_code}\n' -XPOST "$BASE/auth/login/phone" -H 'content-type: application/json' \
     -d "{\"phone\": \"$PHONE\", \"code\": \"$CODE\"}"
