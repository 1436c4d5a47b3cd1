-- Invalidate a cache entry (and any lease on it) and, in the same step, bump its family's generation:
-- every entry cached under the old generation is stale at once (one INCR, no SCAN).
-- KEYS[1]  the cache key
-- KEYS[2]  the generation key
-- ARGV[1]  the generation key's time to live, seconds (renewed with each bump)
-- Returns  the new generation
redis.call('DEL', KEYS[1])
local gen = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return gen
