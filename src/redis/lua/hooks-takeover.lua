-- Takes over the webhook events of instances that died (§11.7): a consumer whose instance key
-- has expired gives its pending events to this one; those it was delivering are due at once,
-- those waiting for a retry keep their time. A consumer left with nothing is removed, so the
-- group does not grow with every instance that ever ran.
--   KEYS[1] the outbox stream  KEYS[2] its retries
--   ARGV[1] the consumer group  ARGV[2] this consumer  ARGV[3] now (ms)
--   ARGV[4] the prefix of instance keys (+ consumer name = the key that lives while it does)
--   ARGV[5] events taken over at most in one call
-- Returns how many events it took over.
local stream, retry, group, me = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local consumers = redis.pcall('XINFO', 'CONSUMERS', stream, group)
if type(consumers) ~= 'table' or consumers.err then return 0 end
local budget = tonumber(ARGV[5])
local taken = 0
for _, fields in ipairs(consumers) do
  local c = {}
  for i = 1, #fields, 2 do c[fields[i]] = fields[i + 1] end
  if c.name ~= me and redis.call('EXISTS', ARGV[4] .. c.name) == 0 and budget > 0 then
    local pending = redis.call('XPENDING', stream, group, '-', '+', budget, c.name)
    for _, p in ipairs(pending) do
      local id = p[1]
      if #redis.call('XCLAIM', stream, group, me, 0, id, 'JUSTID') > 0 and not redis.call('ZSCORE', retry, id) then
        redis.call('ZADD', retry, ARGV[3], id)
      end
    end
    taken = taken + #pending
    budget = budget - #pending
    if #pending == tonumber(c.pending) then redis.call('XGROUP', 'DELCONSUMER', stream, group, c.name) end
  end
end
return taken
