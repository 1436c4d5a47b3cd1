-- Record a new login (session) for a user, pruning sessions idle longer than the TTL.
-- KEYS[1] session:{user_id}   KEYS[2] epoch
-- ARGV[1] sid   ARGV[2] session JSON without times   ARGV[3] session TTL, seconds   ARGV[4] 1 to record the epoch
-- Returns the server time used as created/seen (seconds). 'created' is kept in milliseconds to order logins.
local key = KEYS[1]
local sid = ARGV[1]
local ttl = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1])
-- A Redis that has never seen a login gets its epoch now, before any token is checked against it.
if ARGV[4] == '1' then
  redis.call('SET', KEYS[2], now, 'NX')
end
local fields = redis.call('HGETALL', key)
for i = 1, #fields, 2 do
  local name, value = fields[i], fields[i + 1]
  if string.sub(name, -5) == ':seen' and now - tonumber(value) > ttl then
    local old = string.sub(name, 1, -6)
    redis.call('HDEL', key, old, name)
  end
end
local session = cjson.decode(ARGV[2])
session['created'] = now * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('HSET', key, sid, cjson.encode(session), sid .. ':seen', now)
redis.call('EXPIRE', key, ttl)
return now
