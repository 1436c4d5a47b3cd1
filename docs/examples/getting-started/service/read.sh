curl -si "$BASE/listings/$ID" | grep -i -e '^HTTP' -e '^x-cache' -e '^etag'
curl -si "$BASE/listings/$ID" | grep -i '^x-cache'
curl -si "$BASE/listings/$ID" | grep -i '^x-cache'
