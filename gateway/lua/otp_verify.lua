-- Check a one-time code; a right one is consumed, wrong ones are counted.
-- KEYS[1] otp:{phone}   (hash: 'hash' = HMAC of the code, 'tries' = wrong answers so far)
-- ARGV[1] HMAC of the presented code   ARGV[2] wrong answers allowed
-- Returns {code, tries_left}: 0 right, 1 no code (expired or never sent), 2 wrong, 3 wrong and now locked out.
local key = KEYS[1]
local max_tries = tonumber(ARGV[2])
local stored = redis.call('HGET', key, 'hash')
if not stored then
  return {1, 0}
end
if stored == ARGV[1] then
  redis.call('DEL', key)
  return {0, 0}
end
local tries = redis.call('HINCRBY', key, 'tries', 1)
if tries >= max_tries then
  redis.call('DEL', key)
  return {3, 0}
end
return {2, max_tries - tries}
