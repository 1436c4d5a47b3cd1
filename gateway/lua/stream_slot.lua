-- Count one long-lived connection of a user against the cap, or refuse it (gateway/streams.py).
-- KEYS[1] streams:{user_id}: a sorted set, member = connection id, score = when its lease ends (ms)
-- ARGV[1] connection id   ARGV[2] the cap   ARGV[3] lease, ms (the holder renews it while open)
-- ARGV[4] 'take' (a new connection) or 'renew' (only a lease still held: a released one stays released)
-- Returns 1 when the connection holds a slot (taken or renewed), 0 when the cap is reached or the lease is gone.
--!include session
local now_ms = server_ms()
local lease_ms = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ARGV[4] == 'renew' and not held then
  return 0
end
if not held and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now_ms + lease_ms, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease_ms)
return 1
