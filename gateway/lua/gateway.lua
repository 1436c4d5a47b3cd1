-- The fused gateway step (gateway/checks.py): revocation check and rate limit in one round trip.
-- KEYS[1..4] as auth_check.lua (blacklist, logout_all, session, epoch)   KEYS[5] the rate-limit key
-- ARGV[1..5] as auth_check.lua (sid, iat, touch ms, idle ms, check epoch)
-- ARGV[6] cost   ARGV[7] want   ARGV[8] sub-windows per window   ARGV[9..] amount1, window1_ms, ...
-- (as rate_limit.lua)
-- Returns {verdict} when the token is refused (nothing is counted), else {0, <rate_limit() result>...}.
--!include revocation
--!include ratelimit
local now_ms = server_ms()
local verdict = check_token(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], tonumber(ARGV[2]), now_ms, tonumber(ARGV[3]),
  tonumber(ARGV[4]), ARGV[5] == '1')
if verdict ~= 0 then
  return {verdict}
end
local limits = {}
for i = 9, #ARGV do
  limits[#limits + 1] = tonumber(ARGV[i])
end
local result = rate_limit(KEYS[5], now_ms, tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), limits)
table.insert(result, 1, 0)
return result
