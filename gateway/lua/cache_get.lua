-- Read a cache entry, or take the lease to fill it (a "lease" as in "Scaling Memcache at Facebook").
-- KEYS[1]  the cache key
-- KEYS[2]  (optional) the generation key of the entry's family: an entry stored at another generation
--          is stale (a write bumped it), and counts as a miss
-- ARGV[1]  lease token (unique per loader; a loader that takes over from a cancelled one reuses its token)
-- ARGV[2]  lease lifetime, milliseconds
-- Returns  {0, value}  hit
--          {1, gen}    miss, the caller holds the lease and should load and fill (gen: the generation read)
--          {2}         miss, another loader holds the lease; wait for its value
-- A lease is stored in the key itself as "!" .. token, so one key (one cluster slot) holds all state;
-- an entry of a generation-scoped family is stored as gen .. "|" .. value.
local key = KEYS[1]
local lease = '!' .. ARGV[1]
local lease_ms = ARGV[2]
local gen = '0'
if KEYS[2] then
  gen = redis.call('GET', KEYS[2]) or '0'
end

local value = redis.call('GET', key)
if value then
  if value == lease then
    redis.call('PEXPIRE', key, lease_ms)
    return {1, gen}
  end
  if string.byte(value, 1) == 33 then
    return {2}
  end
  if not KEYS[2] then
    return {0, value}
  end
  local prefix = gen .. '|'
  if string.sub(value, 1, #prefix) == prefix then
    return {0, string.sub(value, #prefix + 1)}
  end
end
redis.call('SET', key, lease, 'PX', lease_ms)
return {1, gen}
