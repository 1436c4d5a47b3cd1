-- Invalidate cache entries and, in the same step, bump their family's generation (every entry cached
-- under the old generation is stale at once: one INCR, no SCAN) and/or add an event to a stream (the
-- write's notice, in the order the writes invalidated).
-- KEYS[1..n]  the cache keys to delete (n = ARGV[1]; 0 on a cluster, where they are deleted apart)
-- KEYS[n+1]   the generation key, when ARGV[2] is not ''
-- KEYS[last]  the stream, when ARGV[3] is not ''
-- ARGV[1]  n
-- ARGV[2]  the generation key's time to live, seconds (renewed with each bump), or '' for none
-- ARGV[3]  the stream's approximate maximum length (XADD MAXLEN ~), or '' for no event
-- ARGV[4]  the stream's time to live, seconds (renewed with each event)
-- ARGV[5..] the event's field, value pairs
-- Returns  {the new generation or false, the event's entry id or false}
local deletes = tonumber(ARGV[1])
local gen_ttl, max_len, stream_ttl = ARGV[2], ARGV[3], ARGV[4]
for i = 1, deletes do
    redis.call('DEL', KEYS[i])
end
local next_key = deletes + 1
local gen = false
if gen_ttl ~= '' then
    gen = redis.call('INCR', KEYS[next_key])
    redis.call('EXPIRE', KEYS[next_key], gen_ttl)
    next_key = next_key + 1
end
local id = false
if max_len ~= '' then
    id = redis.call('XADD', KEYS[next_key], 'MAXLEN', '~', max_len, '*', unpack(ARGV, 5))
    redis.call('EXPIRE', KEYS[next_key], stream_ttl)
end
return {gen, id}
