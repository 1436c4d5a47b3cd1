-- Rotate a session's refresh token, detecting reuse of an old one.
-- KEYS[1] session:{user_id}
-- ARGV[1] sid   ARGV[2] the presented refresh token's jti   ARGV[3] the new refresh jti   ARGV[4] session TTL, s
-- Returns 0 rotated, 1 no such session (ended or expired), 2 reuse detected: the session is ended.
local key = KEYS[1]
local sid = ARGV[1]
local raw = redis.call('HGET', key, sid)
if not raw then
  return 1
end
local session = cjson.decode(raw)
if session['refresh'] ~= ARGV[2] then
  -- An already-rotated refresh token came back: someone holds a copy. End this whole login.
  redis.call('HDEL', key, sid, sid .. ':seen')
  return 2
end
local now = tonumber(redis.call('TIME')[1])
session['refresh'] = ARGV[3]
redis.call('HSET', key, sid, cjson.encode(session), sid .. ':seen', now)
redis.call('EXPIRE', key, tonumber(ARGV[4]))
return 0
