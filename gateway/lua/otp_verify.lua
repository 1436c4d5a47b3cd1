-- Check a one-time code; a right one is consumed, wrong ones are counted, per code and per phone per day.
-- KEYS[1] otp:{phone}   (hash: 'hash' = HMAC of the code, 'tries' = wrong answers to this code)
-- KEYS[2] otp_failures:{phone}   (wrong answers to any code of this phone in the current day window)
-- ARGV[1] HMAC of the presented code   ARGV[2] wrong answers allowed per code
-- ARGV[3] wrong answers allowed per phone per window   ARGV[4] the window, seconds
-- Returns {code, n}: 0 right; 1 no code (expired or never sent); 2 wrong, n tries left for this code;
-- 3 wrong and this code is now locked out; 4 the phone is locked out, n seconds until it is not.
-- A locked-out phone is refused even with the right code, and a resent code does not reset the day.
local key, failures_key = KEYS[1], KEYS[2]
local max_tries, max_failures, window = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local failures = tonumber(redis.call('GET', failures_key) or '0')
if failures >= max_failures then
  return {4, math.max(redis.call('TTL', failures_key), 1)}
end
local stored = redis.call('HGET', key, 'hash')
if not stored then
  return {1, 0}
end
if stored == ARGV[1] then
  redis.call('DEL', key)
  return {0, 0}
end
failures = redis.call('INCR', failures_key)
if failures == 1 then
  redis.call('EXPIRE', failures_key, window)
end
local tries = redis.call('HINCRBY', key, 'tries', 1)
if tries >= max_tries or failures >= max_failures then
  redis.call('DEL', key)
  return {3, 0}
end
return {2, max_tries - tries}
