-- Drops room bans and mutes that lapsed (as SQLite's sweep does), at most ARGV[2] of them. The
-- index says where to look; the room's hash says what holds: an entry whose restriction was
-- replaced by a permanent one, or lifted, is only forgotten, one replaced by a later one is
-- indexed again by its own time. A single Redis, as everywhere here: the hashes are not in KEYS.
--   KEYS[1] chat:restrictions:lapsing (members "hash key\nuserId", scored by when they lapse)
--   ARGV[1] now (epoch ms)   ARGV[2] how many index entries to take at most
-- Returns how many index entries it took (ARGV[2]: there may be more).
local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local at = string.find(member, '\n', 1, true)
  local hash, user = string.sub(member, 1, at - 1), string.sub(member, at + 1)
  local json = redis.call('HGET', hash, user)
  local lapses = json and tonumber(cjson.decode(json)['until'])
  if lapses and lapses <= now then redis.call('HDEL', hash, user) end
  if lapses and lapses > now then
    redis.call('ZADD', KEYS[1], lapses, member)
  else
    redis.call('ZREM', KEYS[1], member)
  end
end
return #due
