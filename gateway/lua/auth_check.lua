-- Check one verified token for revocation in a single round trip.
-- KEYS[1] blacklist:{user_id}:{jti}   KEYS[2] logout_all:{user_id}   KEYS[3] session:{user_id}   KEYS[4] epoch
-- ARGV[1] sid ('' to skip the session check)   ARGV[2] iat   ARGV[3] touch interval, ms   ARGV[4] idle limit, ms
-- ARGV[5] 1 to check the epoch, 0 not to
-- Returns the code of check_token (0 = valid).
--!include revocation
return check_token(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], tonumber(ARGV[2]), server_ms(), tonumber(ARGV[3]),
  tonumber(ARGV[4]), ARGV[5] == '1')
