-- Gives a user a role in a room: "owner" moves ownership (the old owner becomes a moderator),
-- "moderator" gives or keeps that role, "member" takes any role away.
--   KEYS[1] the room's owner  KEYS[2] its roles hash
--   ARGV[1] the user id  ARGV[2] the role  ARGV[3] the user's name
local function entry(role, name) return cjson.encode({role = role, name = name}) end
local owner = redis.call('GET', KEYS[1])
if ARGV[2] == 'owner' then
  if owner and owner ~= ARGV[1] then
    local old = redis.call('HGET', KEYS[2], owner)
    local name = old and cjson.decode(old).name or ''
    redis.call('HSET', KEYS[2], owner, entry('moderator', name))
  end
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], entry('owner', ARGV[3]))
  return 1
end
if owner == ARGV[1] then redis.call('DEL', KEYS[1]) end
if ARGV[2] == 'moderator' then
  redis.call('HSET', KEYS[2], ARGV[1], entry('moderator', ARGV[3]))
else
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return 1
