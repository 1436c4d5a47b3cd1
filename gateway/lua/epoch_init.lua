-- Record when this Redis's data began, if nobody has yet.
-- KEYS[1] epoch
-- Returns the epoch (server time, Unix seconds) now in force.
redis.call('SET', KEYS[1], redis.call('TIME')[1], 'NX')
return tonumber(redis.call('GET', KEYS[1]))
