curl -s -G "$BASE/listings" --data-urlencode 'city=istanbul' --data-urlencode 'q=bisik' \
     --data-urlencode 'max_price=2000' --data-urlencode 'limit=10'
echo
