-- Hands one instance (a consumer of the group) webhook events to deliver (§11.7): first the
-- retries now due, whoever held them (each moves to this consumer's pending list and leaves the
-- retries), then events no instance has taken yet (XREADGROUP hands each to one consumer only).
-- An event taken stays on this consumer's pending list until it is done or retried.
--   KEYS[1] the outbox stream  KEYS[2] its data hash  KEYS[3] its retries  KEYS[4] its attempts
--   ARGV[1] the consumer group  ARGV[2] this consumer  ARGV[3] now (ms)  ARGV[4] how many at most
-- Returns a flat list: stream id, event, failed attempts; for each event taken.
local stream, data, retry, tries, group, me = KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2]
local n = tonumber(ARGV[4])
local ids = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', retry, '-inf', ARGV[3], 'LIMIT', 0, n)) do
  redis.call('ZREM', retry, id)
  -- Nothing comes back when it is no longer pending (acknowledged, or trimmed away).
  if #redis.call('XCLAIM', stream, group, me, 0, id, 'JUSTID') > 0 then
    table.insert(ids, id)
  else
    redis.call('HDEL', tries, id)
  end
end
if #ids < n and redis.call('EXISTS', stream) == 1 then
  local read = {'XREADGROUP', 'GROUP', group, me, 'COUNT', n - #ids, 'STREAMS', stream, '>'}
  local fresh = redis.pcall(unpack(read))
  if type(fresh) == 'table' and fresh.err then
    -- No group yet (a first start, or Redis lost its data): every event in the stream is due.
    redis.call('XGROUP', 'CREATE', stream, group, '0')
    fresh = redis.call(unpack(read))
  end
  if fresh then
    for _, entry in ipairs(fresh[1][2]) do table.insert(ids, entry[1]) end
  end
end
local out = {}
for _, id in ipairs(ids) do
  local entry = redis.call('XRANGE', stream, id, id)[1]
  local event = entry and redis.call('HGET', data, entry[2][2])
  if event then
    table.insert(out, id)
    table.insert(out, event)
    table.insert(out, tonumber(redis.call('HGET', tries, id) or 0))
  else
    -- Gone meanwhile (trimmed): forget what is left of it.
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
    redis.call('HDEL', tries, id)
  end
end
return out
