-- Revoke one token until it would have expired anyway.
-- KEYS[1] blacklist:{jti}
-- ARGV[1] the token's exp (Unix seconds)   ARGV[2] longest TTL to keep, seconds
-- Returns the TTL set, or 0 when the token had already expired (nothing to store).
local exp = tonumber(ARGV[1])
local max_ttl = tonumber(ARGV[2])
local now = tonumber(redis.call('TIME')[1])
local ttl = math.min(exp - now, max_ttl)
if ttl <= 0 then
  return 0
end
redis.call('SET', KEYS[1], '1', 'EX', ttl)
return ttl
