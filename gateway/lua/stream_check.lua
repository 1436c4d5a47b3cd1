-- Is a long-lived connection's token still good? (gateway/streams.py) Like auth_check.lua, but it never
-- records use of the login (an open stream is not a request), and it says how long the login has left.
-- KEYS[1] blacklist:{user_id}:{jti}   KEYS[2] logout_all:{user_id}   KEYS[3] session:{user_id}   KEYS[4] epoch
-- ARGV[1] sid ('' to skip the session check)   ARGV[2] iat   ARGV[3] idle limit, ms   ARGV[4] 1 to check the epoch
-- Returns {the code of check_token (0 = valid), ms until the login lapses unless it is used (0 without one)}.
--!include revocation
local now_ms = server_ms()
local idle_ms = tonumber(ARGV[3])
-- A touch interval no login reaches: the check never writes.
local verdict = check_token(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], tonumber(ARGV[2]), now_ms, 2 ^ 52, idle_ms,
  ARGV[4] == '1')
local left = 0
if verdict == 0 and ARGV[1] ~= '' then
  left = seen_ms(redis.call('HGET', KEYS[3], ARGV[1] .. ':seen')) + idle_ms - now_ms
end
return {verdict, left}
