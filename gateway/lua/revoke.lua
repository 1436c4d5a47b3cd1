-- Revoke one token until no verifier would accept it any more.
-- KEYS[1] blacklist:{user_id}:{jti}
-- ARGV[1] the token's exp (Unix s)   ARGV[2] leeway, s   ARGV[3] longest TTL to keep, s
-- Returns the TTL set, or 0 when the token is already past exp + leeway.
--!include revoke_lib
return revoke_token(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
