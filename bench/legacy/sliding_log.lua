-- The limiter Kapı used before (kept for bench/ratelimit.py's comparison; not shipped): an exact sliding
-- log over one sorted set, one member per admitted request.
-- rate_limit(key, now_ms, nonce, limits)
--   key     rate_limit:{user_id}:{endpoint}: members are admitted requests, scores their server time (ms)
--   limits  flat list {amount1, window1_ms, amount2, window2_ms, ...}
-- Admits the request only if, for every limit, fewer than `amount` requests were admitted in the
-- last `window` ms; a refused request is not recorded (it does not consume quota).
-- Returns {admitted (1/0), remaining1, reset1_ms, remaining2, reset2_ms, ...} where reset is the time
-- until a slot of that limit frees up (until the request could pass, for an exhausted limit).
local function rate_limit(key, now_ms, nonce, limits)
  local longest = 0
  for i = 2, #limits, 2 do
    longest = math.max(longest, limits[i])
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms - longest)
  local counts = {}
  local admitted = 1
  for i = 1, #limits, 2 do
    local count = redis.call('ZCOUNT', key, '(' .. (now_ms - limits[i + 1]), '+inf')
    counts[#counts + 1] = count
    if count >= limits[i] then
      admitted = 0
    end
  end
  if admitted == 1 then
    redis.call('ZADD', key, now_ms, now_ms .. ':' .. nonce)
    redis.call('PEXPIRE', key, longest)
  end
  local result = {admitted}
  for j = 1, #counts do
    local amount, window = limits[2 * j - 1], limits[2 * j]
    local used = counts[j] + admitted
    local reset = window
    if used > 0 then
      -- The entry whose expiry brings `used` below `amount` (or the oldest one, when not exhausted).
      local index = math.max(used - amount, 0)
      local entry = redis.call('ZRANGEBYSCORE', key, '(' .. (now_ms - window), '+inf', 'WITHSCORES', 'LIMIT', index, 1)
      if entry[2] then
        reset = tonumber(entry[2]) + window - now_ms
      end
    end
    result[#result + 1] = math.max(amount - used, 0)
    result[#result + 1] = reset
  end
  return result
end
