-- What the scripts that queue webhook events share (§11.7): keeping the outbox within
-- WEBHOOK_MAX_PENDING. The outbox is a stream of every queued event, oldest first (each entry
-- {k = its field in the data hash}), a consumer group whose pending lists hold the events being
-- delivered or waiting for a retry, a hash of the events (field -> "id\ntype\nts\n" + a room log
-- member or a live frame's JSON), a sorted set of the retries by when they are due, and a hash of
-- attempts that failed. Prepended to append.lua, hooks-add.lua and role-set.lua (redis/scripts.ts).

-- Forgets one event everywhere it is kept; `k` is its field in the data hash.
local function forgetHook(stream, data, retry, tries, group, id, k)
  if k then redis.call('HDEL', data, k) end
  redis.call('XACK', stream, group, id)
  redis.call('XDEL', stream, id)
  redis.call('ZREM', retry, id)
  redis.call('HDEL', tries, id)
end

-- Drops the oldest events past `max`; returns how many went.
local function dropOldestHooks(stream, data, retry, tries, group, max)
  local excess = redis.call('XLEN', stream) - max
  if excess <= 0 then return 0 end
  for _, entry in ipairs(redis.call('XRANGE', stream, '-', '+', 'COUNT', excess)) do
    forgetHook(stream, data, retry, tries, group, entry[1], entry[2][2])
  end
  return excess
end

-- Queues the events given as pairs of ARGV from `first` on (an event's field, its webhook-id,
-- then the event), then keeps the outbox within `max`; returns how many old events went.
local function queueHooks(stream, data, retry, tries, group, max, first)
  for i = first, #ARGV, 2 do
    redis.call('HSET', data, ARGV[i], ARGV[i + 1])
    redis.call('XADD', stream, '*', 'k', ARGV[i])
  end
  return dropOldestHooks(stream, data, retry, tries, group, max)
end
