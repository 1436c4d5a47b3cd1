-- A user's live logins, removing the lapsed ones.
-- KEYS[1] session:{user_id}
-- ARGV[1] idle_ms
-- Returns {sid, JSON, seen_ms, sid, JSON, seen_ms, ...}.
--!include session
local key = KEYS[1]
local idle_ms = tonumber(ARGV[1])
local now_ms = server_ms()
local fields = redis.call('HGETALL', key)
local values = {}
for i = 1, #fields, 2 do
  values[fields[i]] = fields[i + 1]
end
local result = {}
for name, value in pairs(values) do
  if string.sub(name, -5) ~= ':seen' then
    local seen = seen_ms(values[name .. ':seen'])
    if now_ms - seen > idle_ms then
      session_end(key, name)
    else
      result[#result + 1] = name
      result[#result + 1] = value
      result[#result + 1] = seen
    end
  end
end
return result
