-- Bump a generation: every entry cached under the old one is stale at once.
-- KEYS[1]  the generation key
-- ARGV[1]  its time to live, seconds (renewed with each bump)
-- Returns  the new generation
local gen = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return gen
