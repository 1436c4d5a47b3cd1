# A city with a non-ASCII letter (İstanbul) in a search URL
BASE=${BASE:-http://127.0.0.1:8000}
# Wrong: raw UTF-8 in the URL; the HTTP parser refuses it before the service sees it
curl -s -w ' (%{http_code})\n' "$BASE/listings?city=İstanbul&max_price=2000"
# Right: let curl percent-encode the query
curl -s -G "$BASE/listings" --data-urlencode 'city=İstanbul' --data-urlencode 'max_price=2000'
echo
# Also right: percent-encoded by hand (İ is %C4%B0 in UTF-8)
curl -s "$BASE/listings?city=%C4%B0stanbul&max_price=2000"
echo
