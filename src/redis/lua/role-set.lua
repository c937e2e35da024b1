-- Gives a user a role in a room: "owner" moves ownership (the old owner becomes a moderator),
-- "moderator" gives or keeps that role, "member" takes any role away.
-- With webhooks on, queues the events that tell of it in the same step. hooks-lib.lua comes first.
--   KEYS[1] the room's owner  KEYS[2] its roles hash
--   KEYS[3] to KEYS[6] the webhook outbox's stream, data hash, retries and attempts
--   ARGV[1] the user id  ARGV[2] the role  ARGV[3] the user's name
--   ARGV[4] the outbox's consumer group  ARGV[5] WEBHOOK_MAX_PENDING
--   ARGV[6], ARGV[7], … pairs of an event's field (its webhook-id) and the event (none: webhooks off)
-- Returns how many old events were dropped to make room.
local function entry(role, name) return cjson.encode({role = role, name = name}) end
local function told() return #ARGV > 5 and queueHooks(KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[4], tonumber(ARGV[5]), 6) or 0 end
local owner = redis.call('GET', KEYS[1])
if ARGV[2] == 'owner' then
  if owner and owner ~= ARGV[1] then
    local old = redis.call('HGET', KEYS[2], owner)
    local name = old and cjson.decode(old).name or ''
    redis.call('HSET', KEYS[2], owner, entry('moderator', name))
  end
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], entry('owner', ARGV[3]))
  return told()
end
if owner == ARGV[1] then redis.call('DEL', KEYS[1]) end
if ARGV[2] == 'moderator' then
  redis.call('HSET', KEYS[2], ARGV[1], entry('moderator', ARGV[3]))
else
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return told()
