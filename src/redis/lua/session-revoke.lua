-- Ends a session now (signout): its token opens nothing, and its guest name is free.
--   KEYS[1] the session
local old = redis.call('GET', KEYS[1])
if not old then return 0 end
if string.sub(old, 1, 1) == '{' then
  local session = cjson.decode(old)
  for _, key in ipairs(session.ks or {}) do
    if redis.call('GET', key) == session.u then redis.call('DEL', key) end
  end
end
redis.call('DEL', KEYS[1])
return 1
