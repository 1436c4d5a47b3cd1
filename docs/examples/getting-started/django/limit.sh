for i in 1 2; do
  curl -s "$BASE/orders/" -H "Authorization: Bearer $TOKEN" -w "  (%{http_code})\n"
done
curl -si "$BASE/orders/" -H "Authorization: Bearer $TOKEN"
