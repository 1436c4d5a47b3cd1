-- Library: the data-loss epoch (gateway/epoch.py is its Python side): the server time when this Redis's
-- data began. Included by the scripts that check tokens and open logins.
-- epoch_predates(key, iat, now): true when a token issued at iat predates that. A missing key means
-- Redis came back empty: every revocation is forgotten, so the epoch is written now and nothing issued
-- before it is trusted.
local function epoch_predates(key, iat, now)
  local epoch = redis.call('GET', key)
  if not epoch then
    redis.call('SET', key, now)
    epoch = now
  end
  return iat < tonumber(epoch)
end

-- epoch_begin(key, now): a Redis that has never seen a login gets its epoch now.
local function epoch_begin(key, now)
  redis.call('SET', key, now, 'NX')
end
