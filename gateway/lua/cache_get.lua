-- Read a cache entry, or take the lease to fill it (a "lease" as in "Scaling Memcache at Facebook").
-- KEYS[1]  the cache key
-- ARGV[1]  lease token (unique per loader; a loader that takes over from a cancelled one reuses its token)
-- ARGV[2]  lease lifetime, milliseconds
-- Returns  {0, value}  hit
--          {1}         miss, the caller holds the lease and should load and fill
--          {2}         miss, another loader holds the lease; wait for its value
-- A lease is stored in the key itself as "!" .. token, so one key (one cluster slot) holds all state.
local key = KEYS[1]
local lease = '!' .. ARGV[1]
local lease_ms = ARGV[2]

local value = redis.call('GET', key)
if value then
  if value == lease then
    redis.call('PEXPIRE', key, lease_ms)
    return {1}
  end
  if string.byte(value, 1) == 33 then
    return {2}
  end
  return {0, value}
end
redis.call('SET', key, lease, 'PX', lease_ms)
return {1}
