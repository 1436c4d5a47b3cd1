-- Library: is a verified token still good? Included by auth_check.lua and gateway.lua. Composes the
-- blacklist (gateway/blacklist.py), the data-loss epoch (epoch.lua) and the token's login (session.lua).
--!include epoch
--!include session
-- check_token(blacklist_key, logout_key, session_key, epoch_key, sid, iat, now_ms, touch_ms, idle_ms, use_epoch)
--   blacklist_key  blacklist:{user_id}:{jti}  set when this token was revoked
--   logout_key     logout_all:{user_id}       the user's last "log out everywhere": its server time + leeway
--   session_key    session:{user_id}          the user's logins (see session.lua)
--   epoch_key      epoch                      see epoch.lua
--   sid            the token's session id (escaped), or '' when sessions are not checked
-- Returns 0 valid, 1 revoked, 2 session ended (or lapsed), 3 logged out everywhere, 4 issued before Redis
-- lost its data.
local function check_token(blacklist_key, logout_key, session_key, epoch_key, sid, iat, now_ms, touch_ms, idle_ms,
                           use_epoch)
  if redis.call('EXISTS', blacklist_key) == 1 then
    return 1
  end
  if use_epoch and epoch_predates(epoch_key, iat, math.floor(now_ms / 1000)) then
    return 4
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
