-- Library: blacklist one token until no verifier would accept it any more. Included by revoke.lua and
-- session_end.lua.
-- revoke_token(key, exp, leeway, max_ttl): key is blacklist:{user_id}:{jti}; the entry lives until
-- exp + leeway (a verifier accepts the token until then), at most max_ttl seconds (the verifier's
-- max_lifetime plus leeway: it refuses every token that could outlive that). Returns the TTL set, 0 if
-- the token is already past exp + leeway (nothing to store).
local function revoke_token(key, exp, leeway, max_ttl)
  local now = tonumber(redis.call('TIME')[1])
  local ttl = math.min(exp + leeway - now, max_ttl)
  if ttl <= 0 then
    return 0
  end
  redis.call('SET', key, '1', 'EX', ttl)
  return ttl
end
