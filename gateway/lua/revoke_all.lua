-- Log a user out everywhere: every token a verifier would accept now stops passing.
-- KEYS[1] logout_all:{user_id}   KEYS[2] session:{user_id}
-- ARGV[1] how long the mark must outlive the newest token it revokes (max lifetime + leeway), seconds
-- ARGV[2] the verifiers' leeway, seconds: a token may carry an iat up to that far ahead of now and still
--         be accepted (an issuer whose clock runs ahead), so the mark covers up to now + leeway
-- Returns the mark written (server time + leeway); tokens with iat <= mark are refused.
local leeway = tonumber(ARGV[2])
local mark = tonumber(redis.call('TIME')[1]) + leeway
redis.call('SET', KEYS[1], mark, 'EX', tonumber(ARGV[1]) + leeway)
redis.call('DEL', KEYS[2])
return mark
