-- Fill a cache entry, but only while the caller's lease still stands.
-- KEYS[1]  the cache key
-- ARGV[1]  lease token given by cache_get.lua
-- ARGV[2]  the value (JSON)
-- ARGV[3]  time to live, seconds
-- Returns  1 if stored, 0 if the lease was lost (an invalidation deleted it: the loaded value may be stale)
local key = KEYS[1]
local token = ARGV[1]
local value = ARGV[2]
local ttl = ARGV[3]

if redis.call('GET', key) == '!' .. token then
  redis.call('SET', key, value, 'EX', ttl)
  return 1
end
return 0
