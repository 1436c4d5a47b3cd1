-- Record a new login (session) for a user, removing the user's lapsed logins.
-- KEYS[1] session:{user_id}   KEYS[2] epoch
-- ARGV[1] sid (escaped)   ARGV[2] session JSON without times   ARGV[3] idle_ms   ARGV[4] 1 to record the epoch
-- Returns the server time used as created and seen (ms).
--!include epoch
--!include session
local key = KEYS[1]
local sid = ARGV[1]
local idle_ms = tonumber(ARGV[3])
local now_ms = server_ms()
-- A Redis that has never seen a login gets its epoch now, before any token is checked against it.
if ARGV[4] == '1' then
  epoch_begin(KEYS[2], math.floor(now_ms / 1000))
end
local fields = redis.call('HGETALL', key)
for i = 1, #fields, 2 do
  local name, value = fields[i], fields[i + 1]
  if string.sub(name, -5) == ':seen' and now_ms - seen_ms(value) > idle_ms then
    redis.call('HDEL', key, string.sub(name, 1, -6), name)
  end
end
local session = cjson.decode(ARGV[2])
session['created'] = now_ms
redis.call('HSET', key, sid, cjson.encode(session), sid .. ':seen', now_ms)
redis.call('PEXPIRE', key, idle_ms)
return now_ms
