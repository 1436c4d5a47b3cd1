for i in 1 2; do
  curl -s -X POST "$BASE/upload" -H "Authorization: Bearer $TOKEN" -w "  (%{http_code})\n"
done
curl -si -X POST "$BASE/upload" -H "Authorization: Bearer $TOKEN"
