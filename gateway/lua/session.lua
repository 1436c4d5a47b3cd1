-- Library: one login (session) in the session:{user_id} hash. Included by every script that reads or
-- changes that hash; gateway/sessions.py is its Python side.
-- Fields of one login (sid escaped by the caller):
--   sid          JSON {"ip", "ua", "created" (ms), "refresh": [jti, ...], "prev": {jti: rotated_at_ms}}
--   sid..':seen' the last recorded use, server time in ms
-- A login has lapsed when now - seen > idle_ms (SESSION_TTL plus the touch interval: use is recorded
-- at most once per touch interval, so a client whose requests are less than SESSION_TTL apart never
-- lapses). A lapsed login is removed when it is next looked at. The hash's own TTL is idle_ms from its
-- most recently used login, so it outlives every login in it.

local function server_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- Sessions written by the layout before this one kept 'seen' in seconds.
local function seen_ms(raw)
  local seen = tonumber(raw) or 0
  if seen < 100000000000 then
    seen = seen * 1000
  end
  return seen
end

-- The login's JSON and last use, or nil when it does not exist or has lapsed (then it is removed).
local function session_alive(key, sid, now_ms, idle_ms)
  local state = redis.call('HMGET', key, sid, sid .. ':seen')
  if not state[1] then
    return nil, 0
  end
  local seen = seen_ms(state[2])
  if now_ms - seen > idle_ms then
    redis.call('HDEL', key, sid, sid .. ':seen')
    return nil, 0
  end
  return state[1], seen
end

-- Record use, at most once per touch_ms.
local function session_touch(key, sid, now_ms, seen, touch_ms, idle_ms)
  if now_ms - seen >= touch_ms then
    redis.call('HSET', key, sid .. ':seen', now_ms)
    redis.call('PEXPIRE', key, idle_ms)
  end
end

local function session_end(key, sid)
  return redis.call('HDEL', key, sid, sid .. ':seen')
end
