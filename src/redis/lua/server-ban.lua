-- Bans a user from the whole server, with an address or not; or lifts its ban and the address
-- bans its bans made (§11.3). An address ban is keyed by the address and names the user whose ban
-- made it: another user's later ban from the same address takes it over, and lifting the first
-- user's leaves it (as SQLite's address_bans). The user's set of addresses lives as long as its
-- longest address ban: past that there is nothing left in it to lift. With webhooks on, queues
-- the events that tell of it in the same step. hooks-lib.lua comes first. A single Redis, as
-- everywhere here: the address bans' keys are built from ARGV[2], not given in KEYS.
--   KEYS[1] the user's ban  KEYS[2] the addresses its bans made
--   KEYS[3] to KEYS[6] the webhook outbox's stream, data hash, retries and attempts
--   ARGV[1] the user id  ARGV[2] the address bans' key prefix ("chat:ban:ip:")
--   ARGV[3] the ban as JSON ("" lifts)  ARGV[4] when it ends (epoch ms, Redis's clock; "" never)
--   ARGV[5] the address ("" none)  ARGV[6] the address ban as JSON (the ban, with userId)
--   ARGV[7] the outbox's consumer group  ARGV[8] WEBHOOK_MAX_PENDING
--   ARGV[9], ARGV[10], … pairs of an event's field (its webhook-id) and the event (none: webhooks off)
-- Returns how many old events were dropped to make room.
local function told() return #ARGV > 8 and queueHooks(KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[7], tonumber(ARGV[8]), 9) or 0 end
if ARGV[3] == '' then
  for _, ip in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    local key = ARGV[2] .. ip
    local ban = redis.call('GET', key)
    if ban and cjson.decode(ban).userId == ARGV[1] then redis.call('DEL', key) end
  end
  redis.call('DEL', KEYS[1], KEYS[2])
  return told()
end
local ends = tonumber(ARGV[4])
local expiry = ends and {'PXAT', ARGV[4]} or {}
redis.call('SET', KEYS[1], ARGV[3], unpack(expiry))
if ARGV[5] ~= '' then
  redis.call('SET', ARGV[2] .. ARGV[5], ARGV[6], unpack(expiry))
  local left = redis.call('PTTL', KEYS[2])
  redis.call('SADD', KEYS[2], ARGV[5])
  if not ends then
    redis.call('PERSIST', KEYS[2])
  elseif left ~= -1 then
    -- -2: a new set; else it ends at now + left, which this ban may outlast.
    local t = redis.call('TIME')
    if left == -2 or tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + left < ends then
      redis.call('PEXPIREAT', KEYS[2], ARGV[4])
    end
  end
end
return told()
