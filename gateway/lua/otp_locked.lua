-- Is this phone locked out for wrong codes? (Checked before a new code is sent.)
-- KEYS[1] otp_failures:{phone}
-- ARGV[1] wrong answers allowed per phone per window
-- Returns seconds until the lock lifts, or 0 when the phone is not locked.
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
if failures >= tonumber(ARGV[1]) then
  return math.max(redis.call('TTL', KEYS[1]), 1)
end
return 0
