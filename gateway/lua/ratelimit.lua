-- Library: the rate limiter (gateway/ratelimit/strategy.py is its Python face). Included by
-- rate_limit.lua and gateway.lua.
--
-- A sliding window of sub-window counters. Each limit (amount A per window W ms) keeps B + 1 counters
-- of width b = W / B: the requests admitted in each of the last B + 1 sub-windows. A request is
-- admitted only if, for every limit, the counters of all B + 1 sub-windows that overlap the last W ms,
-- *including the oldest one whole*, plus its cost, stay within A. So no span of W ms, anywhere in time,
-- ever holds more than A admitted units (the counters overcount a sliding log, never undercount it);
-- the price is that a unit frees up to b ms later than in an exact log. Refused requests count nothing.
--
-- State: one string per key, whatever the limit and the traffic: for each limit, its window and the
-- index of its oldest sub-window (two doubles), then B + 1 counts (uint32), packed with `struct`:
-- 16 + 4 * (B + 1) bytes per limit (100 bytes for B = 20). Work per hit: O(B) per limit, a constant.
-- A key still holding the sorted set of the sliding-log limiter this one replaced is read once and
-- rewritten (its admitted requests become counts), so a running deployment neither breaks nor
-- double-counts.
--
-- rate_limit(key, now_ms, cost, want, buckets, limits) with limits = {amount1, window1_ms, amount2, ...}
-- Returns {admitted (1/0), remaining1, reset1_ms, remaining2, reset2_ms, ..., granted, left_ms}:
-- remaining units after this request; reset: for a limit the request fits, the time until its oldest
-- counted units free up; for one it does not, the time until a request of this cost would fit.
--
-- Reservations (gateway/ratelimit/reservations.py): an admitted request takes `granted` units, at least
-- its cost and at most `want`, as many as every limit still has room for. They all count as admitted
-- now, in the current sub-window, so whatever the caller spends of them later is already counted, by
-- every process, and no limit is ever over-admitted. The caller may spend them only for `left_ms`, the
-- time left in the current sub-window of the limit with the narrowest sub-windows: spent later, a unit
-- counted in an older sub-window would leave the window before the request it admitted.

local function rl_layout(buckets)
  return '<dd' .. string.rep('I4', buckets + 1)
end

-- {window, base, counts[0..buckets]} for each limit, from the stored string (or a zset of old).
local function rl_load(key, limits, buckets, now_ms)
  local states = {converted = false}
  local kind = redis.call('TYPE', key)['ok']
  local raw = nil
  if kind == 'string' then
    raw = redis.call('GET', key)
  end
  local layout = rl_layout(buckets)
  local size = 16 + 4 * (buckets + 1)
  for i = 1, #limits, 2 do
    local window = limits[i + 1]
    local width = math.max(1, math.floor(window / buckets))
    local cur = math.floor(now_ms / width)
    local state = {window = window, width = width, base = cur - buckets, counts = {}}
    for j = 0, buckets do
      state.counts[j] = 0
    end
    local offset = ((i - 1) / 2) * size
    if raw and string.len(raw) >= offset + size then
      local values = {struct.unpack(layout, raw, offset + 1)}
      if values[1] == window then -- same limit as stored (a changed config starts afresh)
        local shift = state.base - values[2]
        for j = 0, buckets do
          local from = j + shift
          if from >= 0 and from <= buckets then
            state.counts[j] = values[3 + from]
          end
        end
      end
    end
    states[#states + 1] = state
  end
  if kind == 'zset' then
    -- The sorted set of the exact sliding log (scores: admitted times, ms): its entries become counts.
    local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    for e = 2, #entries, 2 do
      local at = tonumber(entries[e])
      for _, state in ipairs(states) do
        local j = math.floor(at / state.width) - state.base
        if j >= 0 and j <= buckets then
          state.counts[j] = state.counts[j] + 1
        end
      end
    end
    redis.call('DEL', key)
    states.converted = true
  end
  return states
end

local function rate_limit(key, now_ms, cost, want, buckets, limits)
  local states = rl_load(key, limits, buckets, now_ms)
  local admitted = 1
  local used = {}
  for s, state in ipairs(states) do
    local total = 0
    for j = 0, buckets do
      total = total + state.counts[j]
    end
    used[s] = total
    if total + cost > limits[2 * s - 1] then
      admitted = 0
    end
  end
  local granted = 0
  local left_ms = nil
  if admitted == 1 then
    granted = math.max(want, cost)
    for s, state in ipairs(states) do
      granted = math.min(granted, limits[2 * s - 1] - used[s])
      local left = (state.base + buckets + 1) * state.width - now_ms
      if left_ms == nil or left < left_ms then
        left_ms = left
      end
    end
  end
  local result = {admitted}
  local packed = {}
  local ttl = 0
  for s, state in ipairs(states) do
    local amount = limits[2 * s - 1]
    if admitted == 1 then
      state.counts[buckets] = state.counts[buckets] + granted
      used[s] = used[s] + granted
    end
    -- Sub-window j stops counting once the window has moved past it: at (base + j + buckets + 1) * width.
    local reset = state.window
    local need = used[s] - amount + (admitted == 1 and 0 or cost) -- units that must free up
    local freed = 0
    for j = 0, buckets do
      freed = freed + state.counts[j]
      if (need <= 0 and state.counts[j] > 0) or (need > 0 and freed >= need) then
        reset = (state.base + j + buckets + 1) * state.width - now_ms
        break
      end
    end
    result[#result + 1] = math.max(amount - used[s], 0)
    result[#result + 1] = math.max(reset, 1)
    local values = {state.window, state.base}
    for j = 0, buckets do
      values[#values + 1] = state.counts[j]
    end
    packed[#packed + 1] = struct.pack(rl_layout(buckets), unpack(values))
    ttl = math.max(ttl, state.window + state.width)
  end
  if admitted == 1 or states.converted then -- a refused request changes nothing
    redis.call('SET', key, table.concat(packed), 'PX', ttl)
  end
  result[#result + 1] = granted
  result[#result + 1] = left_ms or 0
  return result
end
