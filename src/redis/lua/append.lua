-- Appends one message or stored event (a settings change, applied to the room), atomically (Redis runs a script alone and does not roll one back, so
-- every check comes before the first write of the message), and queues its webhook event in
-- the same step (§11.7). trim-lib.lua and hooks-lib.lua come first.
--   KEYS[1] the room's seq counter (never decreases: with AOF it survives restarts)
--   KEYS[2] the room's history: a sorted set scored by seq, members "seq:json"
--   KEYS[3] the room's dedup hash: "userId\nclientId" -> seq, dropped with the message it points at
--   KEYS[4] the room directory: a sorted set of rooms scored by their latest message's time
--   KEYS[5] chat:held   KEYS[6] the room's settings hash   KEYS[7] chat:private
--   KEYS[8] the room's epoch (made with its sequence: ARGV[12] when there is none)
--   KEYS[9] the webhook outbox stream, KEYS[10] its data hash, KEYS[11] its retries, KEYS[12] its attempts
--   KEYS[13] chat:held:newest (the rooms of chat:held scored by their newest entry's time)
--   ARGV[1] the dedup field   ARGV[2] the entry as JSON, without its seq   ARGV[3] HISTORY_RETAIN
--   ARGV[4] the room's channel   ARGV[5] the entry's time   ARGV[6] the room   ARGV[7] rooms kept
--   ARGV[8] MAX_ROOMS   ARGV[9] messages older than this are trimmed first ("" keeps them)
--   ARGV[10] the fields a settings event sets, as JSON, written over the room's settings with it;
--            the event then carries all of them as the room holds them ("" for anything else)
--   ARGV[11] an edit's or deletion's change as JSON ({type, target, text?, ts}), applied to its
--            target message first ("" for anything else)
--   ARGV[12] a fresh epoch, taken when the room has none (a new room, or Redis lost its data)
--   ARGV[13] the entry's webhook event, "webhook-id\ntype" ("" queues none)
--   ARGV[14] "1" while the outbox is open (a deletion blanks the text of queued events), else ""
--   ARGV[15] the outbox's consumer group   ARGV[16] WEBHOOK_MAX_PENDING
-- Returns {1, member} with the original of a repeated key; {2} when MAX_ROOMS refuses it, {3}
-- when a change's target is not a live message (nothing of it stored, no seq spent); else
-- {0, member, webhook events dropped to make room} after publishing it, as {"epoch","m"}: an
-- instance that knew the room under another epoch knows at once that Redis lost it, whatever the seq.
local room = ARGV[6]
-- A queued webhook event of this room's entry `seq` loses its text (the entry was deleted).
local function blankHook(seq)
  local field = room .. '\n' .. seq
  local event = redis.call('HGET', KEYS[10], field)
  if not event then return end
  local at = 0
  for _ = 1, 3 do at = string.find(event, '\n', at + 1, true) end
  local member = string.sub(event, at + 1)
  local e = decoded(member)
  e.text = ''
  redis.call('HSET', KEYS[10], field, string.sub(event, 1, at) .. string.sub(member, 1, string.find(member, ':', 1, true)) .. cjson.encode(e))
end
local cutoff = tonumber(ARGV[9])
if cutoff and trimAged(KEYS[2], KEYS[3], KEYS[5], room, cutoff) > 0 and not redis.call('ZSCORE', KEYS[5], room) then
  redis.call('ZREM', KEYS[13], room)
end
local known = redis.call('HGET', KEYS[3], ARGV[1])
if known then
  local original = redis.call('ZRANGEBYSCORE', KEYS[2], known, known)
  if original[1] then return {1, original[1]} end
end
local held = redis.call('ZSCORE', KEYS[5], room)
if not held and redis.call('EXISTS', KEYS[2]) == 1 then
  -- History written before the index existed: the room counts from now on.
  syncHeld(KEYS[2], KEYS[5], room)
  held = true
end
if not held and redis.call('ZCARD', KEYS[5]) >= tonumber(ARGV[8]) then return {2} end
if ARGV[11] ~= '' then
  -- The target message changes in the same step as the event that says so, or neither happens.
  local change = cjson.decode(ARGV[11])
  local found = redis.call('ZRANGEBYSCORE', KEYS[2], change.target, change.target)
  if not found[1] then return {3} end
  local target = decoded(found[1])
  if (target.type and target.type ~= 'message') or target.deleted then return {3} end
  if change.type == 'edit' then
    target.text = change.text
    target.edited = change.ts
    -- The seqs of its edits (this one takes the next): their text goes when it is trimmed
    -- (trim-lib.lua). No frame shows them: decodeMember drops them.
    target.edits = target.edits or {}
    target.edits[#target.edits + 1] = (tonumber(redis.call('GET', KEYS[1])) or 0) + 1
  else
    target.text = ''
    target.deleted = change.ts
    -- Its edits lose their text too: those it lists, or, edited before messages listed their
    -- edits, those after it in the log (an edit comes after its message). Not the whole log,
    -- decoded, at every deletion.
    local seqs = target.edits
    if not seqs and target.edited then
      seqs = {}
      for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. change.target, '+inf')) do
        if string.find(member, '"edit"', 1, true) then
          local e = decoded(member)
          if e.type == 'edit' and e.target == change.target then seqs[#seqs + 1] = redis.call('ZSCORE', KEYS[2], member) end
        end
      end
    end
    target.edits = nil
    if seqs then
      blankEdits(KEYS[2], seqs)
      if ARGV[14] ~= '' then for _, s in ipairs(seqs) do blankHook(s) end end
    end
    if ARGV[14] ~= '' then blankHook(change.target) end
  end
  redis.call('ZREM', KEYS[2], found[1])
  redis.call('ZADD', KEYS[2], change.target, change.target .. ':' .. cjson.encode(target))
end
local retain = tonumber(ARGV[3])
local epoch = redis.call('GET', KEYS[8])
if not epoch then
  epoch = ARGV[12]
  redis.call('SET', KEYS[8], epoch)
end
local entry = ARGV[2]
if ARGV[10] ~= '' then
  -- Only the fields this change sets are written: one made at the same time (on any instance)
  -- keeps its own, and the event says what the room holds after both.
  local change = cjson.decode(ARGV[10])
  for _, field in ipairs({'topic', 'private', 'readOnly', 'slowModeSeconds'}) do
    if change[field] ~= nil then redis.call('HSET', KEYS[6], field, tostring(change[field])) end
  end
  local t = redis.call('HMGET', KEYS[6], 'topic', 'private', 'readOnly', 'slowModeSeconds')
  local e = cjson.decode(entry)
  e.topic, e.private, e.readOnly, e.slowModeSeconds = t[1] or '', t[2] == 'true', t[3] == 'true', tonumber(t[4]) or 0
  entry = cjson.encode(e)
  if e.private then redis.call('SADD', KEYS[7], room) else redis.call('SREM', KEYS[7], room) end
end
local seq = redis.call('INCR', KEYS[1])
local member = seq .. ':' .. entry
redis.call('ZADD', KEYS[2], seq, member)
redis.call('HSET', KEYS[3], ARGV[1], seq)
local excess = redis.call('ZCARD', KEYS[2]) - retain
if excess > 0 then
  local edits = {}
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, excess - 1)) do
    local m = decoded(old)
    forgetKey(KEYS[3], m)
    editsOf(m, edits)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, excess - 1)
  blankEdits(KEYS[2], edits)
end
if not held then
  redis.call('ZADD', KEYS[5], ARGV[5], room)
elseif excess > 0 and cutoff then
  -- Without an age bound the score may lag (older than the room's oldest): the first sweep
  -- after one is set visits the room, finds nothing to trim and sets it right.
  syncHeld(KEYS[2], KEYS[5], room)
end
redis.call('ZADD', KEYS[13], ARGV[5], room)
redis.call('ZADD', KEYS[4], ARGV[5], room)
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -1 - tonumber(ARGV[7]))
local dropped = 0
if ARGV[13] ~= '' then
  local field = room .. '\n' .. seq
  redis.call('HSET', KEYS[10], field, ARGV[13] .. '\n' .. ARGV[5] .. '\n' .. member)
  redis.call('XADD', KEYS[9], '*', 'k', field)
  dropped = dropOldestHooks(KEYS[9], KEYS[10], KEYS[11], KEYS[12], ARGV[15], tonumber(ARGV[16]))
end
redis.call('PUBLISH', ARGV[4], cjson.encode({epoch = epoch, m = member}))
return {0, member, dropped}
