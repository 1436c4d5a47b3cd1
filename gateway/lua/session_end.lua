-- End one login; with a blacklist key, also revoke the access token that asked (logout), in one step.
-- KEYS[1] session:{user_id}   KEYS[2] blacklist:{user_id}:{jti} (optional)
-- ARGV[1] sid (escaped; '' for none)   ARGV[2] the access token's exp (Unix s)   ARGV[3] leeway, s
-- ARGV[4] longest TTL to keep a revocation, s
-- Returns {logins ended (0 or 1), revocation TTL set (0 when the token can no longer pass anyway)}.
--!include session
--!include revoke_lib
local ended = 0
if ARGV[1] ~= '' then
  ended = session_end(KEYS[1], ARGV[1])
end
local ttl = 0
if KEYS[2] then
  ttl = revoke_token(KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
end
return {ended, ttl}
