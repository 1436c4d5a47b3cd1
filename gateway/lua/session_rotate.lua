-- Rotate a login's refresh token, detecting reuse of an old one, with a grace interval.
-- KEYS[1] session:{user_id}
-- ARGV[1] sid (escaped)   ARGV[2] the presented refresh token's jti   ARGV[3] the new refresh jti
-- ARGV[4] idle_ms   ARGV[5] touch_ms   ARGV[6] grace_ms (0 = strict)   ARGV[7] most refresh tokens live at once
-- Returns 0 rotated, 1 no such login (ended or lapsed), 2 reuse detected: the login is ended,
--         3 the presented token was rotated less than grace_ms ago: a further pair for the same login.
-- The login keeps the jtis of its live refresh tokens ("refresh") and, for grace_ms, those it rotated
-- ("prev"), so two tabs (or a retry after a lost response) presenting one token at once both get a
-- working pair; presented again after the grace, a rotated token ends the login (it was copied).
--!include session
local key, sid, presented, new = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local idle_ms, touch_ms, grace_ms, most = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local now_ms = server_ms()
local raw = session_alive(key, sid, now_ms, idle_ms)
if not raw then
  return 1
end
local session = cjson.decode(raw)
local live = session['refresh']
if type(live) ~= 'table' then
  live = {live}  -- the layout before this one kept one jti
end
local prev = {}
if type(session['prev']) == 'table' then
  for jti, at in pairs(session['prev']) do
    if now_ms - at <= grace_ms then
      prev[jti] = at
    end
  end
end
local code
local found = nil
for i = 1, #live do
  if live[i] == presented then
    found = i
  end
end
if found then
  table.remove(live, found)
  if grace_ms > 0 then
    prev[presented] = now_ms
  end
  code = 0
elseif prev[presented] then
  code = 3
else
  session_end(key, sid)
  return 2
end
live[#live + 1] = new
while #live > most do
  table.remove(live, 1)
end
session['refresh'] = live
session['prev'] = prev
redis.call('HSET', key, sid, cjson.encode(session), sid .. ':seen', now_ms)
redis.call('PEXPIRE', key, idle_ms)
return code
