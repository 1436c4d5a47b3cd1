-- Library: is a verified token still good? Included by auth_check.lua and gateway.lua.
--!include session
-- check_token(blacklist_key, session_key, logout_key, epoch_key, sid, iat, now_ms, touch_ms, idle_ms, use_epoch)
--   blacklist_key  blacklist:{user_id}:{jti}  set when this token was revoked
--   session_key    session:{user_id}          the user's logins (see session.lua)
--   logout_key     logout_all:{user_id}       server time of the user's last "log out everywhere"
--   epoch_key      epoch                      server time this Redis's data began; missing = data was lost
--   sid            the token's session id (escaped), or '' when sessions are not checked
-- Returns 0 valid, 1 revoked, 2 session ended (or lapsed), 3 logged out everywhere, 4 issued before Redis
-- lost its data.
local function check_token(blacklist_key, session_key, logout_key, epoch_key, sid, iat, now_ms, touch_ms, idle_ms,
                           use_epoch)
  if redis.call('EXISTS', blacklist_key) == 1 then
    return 1
  end
  local now = math.floor(now_ms / 1000)
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
    local session, seen = session_alive(session_key, sid, now_ms, idle_ms)
    if not session then
      return 2
    end
    session_touch(session_key, sid, now_ms, seen, touch_ms, idle_ms)
  end
  return 0
end
