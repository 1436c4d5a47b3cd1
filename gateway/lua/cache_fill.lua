-- Fill a cache entry, but only while the caller's lease still stands (and its family's generation has
-- not moved since the caller read it).
-- KEYS[1]  the cache key
-- KEYS[2]  (optional) the generation key of the entry's family
-- ARGV[1]  lease token given by cache_get.lua
-- ARGV[2]  the value (JSON)
-- ARGV[3]  time to live, seconds
-- ARGV[4]  the generation cache_get.lua read (with KEYS[2])
-- Returns  1 if stored, 0 if the lease was lost or the generation moved (a write happened: the loaded
--          value may be stale)
local key = KEYS[1]
if redis.call('GET', key) ~= '!' .. ARGV[1] then
  return 0
end
if KEYS[2] then
  local gen = redis.call('GET', KEYS[2]) or '0'
  if gen ~= ARGV[4] then
    redis.call('DEL', key)
    return 0
  end
  redis.call('SET', key, gen .. '|' .. ARGV[2], 'EX', ARGV[3])
  return 1
end
redis.call('SET', key, ARGV[2], 'EX', ARGV[3])
return 1
