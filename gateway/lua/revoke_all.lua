-- Log a user out everywhere: every token issued up to now stops passing.
-- KEYS[1] logout_all:{user_id}   KEYS[2] session:{user_id}
-- ARGV[1] how long the mark must outlive the newest token it revokes (max lifetime + leeway), seconds
-- Returns the server time written as the mark.
local now = tonumber(redis.call('TIME')[1])
redis.call('SET', KEYS[1], now, 'EX', tonumber(ARGV[1]))
redis.call('DEL', KEYS[2])
return now
