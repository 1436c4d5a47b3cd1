-- Library: is a verified token still good? Included by auth_check.lua and gateway.lua.
-- check_token(blacklist_key, session_key, logout_key, epoch_key, sid, iat, now, touch_every, session_ttl, use_epoch)
--   blacklist_key  blacklist:{jti}         set when this token was revoked
--   session_key    session:{user_id}       hash: sid -> session JSON, sid..':seen' -> last seen (server time)
--   logout_key     logout_all:{user_id}    server time of the user's last "log out everywhere"
--   epoch_key      epoch                   server time this Redis's data began; missing = data was lost
--   sid            the token's session id, or '' when sessions are not checked
-- Returns 0 valid, 1 revoked, 2 session ended, 3 logged out everywhere, 4 issued before Redis lost its data.
local function check_token(blacklist_key, session_key, logout_key, epoch_key, sid, iat, now, touch_every, session_ttl,
                           use_epoch)
  if redis.call('EXISTS', blacklist_key) == 1 then
    return 1
  end
  if use_epoch then
    local epoch = redis.call('GET', epoch_key)
    if not epoch then
      -- Redis came back empty: every revocation is forgotten, so nothing issued before now is trusted.
      redis.call('SET', epoch_key, now)
      epoch = now
    end
    if iat < tonumber(epoch) then
      return 4
    end
  end
  if sid == '' then
    -- Tokens without a session (minted elsewhere) are cut off by time; ours by their session.
    local mark = redis.call('GET', logout_key)
    if mark and iat <= tonumber(mark) then
      return 3
    end
  else
    local state = redis.call('HMGET', session_key, sid, sid .. ':seen')
    if not state[1] then
      return 2
    end
    -- Record activity at most once per touch_every seconds, not on every request.
    if not state[2] or now - tonumber(state[2]) >= touch_every then
      redis.call('HSET', session_key, sid .. ':seen', now)
      redis.call('EXPIRE', session_key, session_ttl)
    end
  end
  return 0
end
