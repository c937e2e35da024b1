-- Stores a session and moves its guest name's reservations: the keys of the name it had lose
-- theirs (when they are still this user's), the keys of the name it has now get theirs, for as
-- long as the session lives.
--   KEYS[1] the session
--   ARGV[1] the session as JSON (field "ks": the reserved keys' names)  ARGV[2] its time to live (ms)
--   ARGV[3] the user id
local old = redis.call('GET', KEYS[1])
if old and string.sub(old, 1, 1) == '{' then
  for _, key in ipairs(cjson.decode(old).ks or {}) do
    if redis.call('GET', key) == ARGV[3] then redis.call('DEL', key) end
  end
end
for _, key in ipairs(cjson.decode(ARGV[1]).ks or {}) do
  redis.call('SET', key, ARGV[3], 'PX', ARGV[2])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
