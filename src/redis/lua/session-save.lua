-- Stores a session and moves its guest name's reservations: the keys of the name it had lose
-- theirs (when they are still this user's), the keys of the name it has now get theirs, for as
-- long as the session lives. A save that names an older version of the name than the stored one
-- (two renames at once on two instances: the later one won) stores nothing.
--   KEYS[1] the session
--   ARGV[1] the session as JSON (field "ks": the reserved keys' names; "v": the name's version)
--   ARGV[2] its time to live (ms)   ARGV[3] the user id
--   ARGV[4] "1" for a refresh (a hello that restored the session): only while it is still here,
--           so a signout that revoked it meanwhile wins
-- Returns 1 when stored, 0 when a later name stands, -1 when a refreshed session is gone.
local old = redis.call('GET', KEYS[1])
if not old and ARGV[4] == '1' then return -1 end
local new = cjson.decode(ARGV[1])
if old and string.sub(old, 1, 1) == '{' then
  local was = cjson.decode(old)
  if was.v and new.v and was.v > new.v and was.u == new.u then return 0 end
  for _, key in ipairs(was.ks or {}) do
    if redis.call('GET', key) == ARGV[3] then redis.call('DEL', key) end
  end
end
for _, key in ipairs(new.ks or {}) do
  redis.call('SET', key, ARGV[3], 'PX', ARGV[2])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
