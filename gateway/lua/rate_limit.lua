-- Count one request against every limit of a policy, atomically, on Redis server time.
-- KEYS[1] rate_limit:{user_id}:{endpoint}
-- ARGV[1] cost (units this request takes)   ARGV[2] want (units to take, reservations included; >= cost)
-- ARGV[3] sub-windows per window   ARGV[4..] amount1, window1_ms, amount2, window2_ms, ...
-- Returns what rate_limit() returns (lua/ratelimit.lua).
--!include ratelimit
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local limits = {}
for i = 4, #ARGV do
  limits[#limits + 1] = tonumber(ARGV[i])
end
return rate_limit(KEYS[1], now_ms, tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), limits)
