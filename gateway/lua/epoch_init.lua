-- Record when this Redis's data began, if nobody has yet.
-- KEYS[1] epoch
-- Returns the epoch (server time, Unix seconds) now in force.
--!include epoch
epoch_begin(KEYS[1], redis.call('TIME')[1])
return tonumber(redis.call('GET', KEYS[1]))
