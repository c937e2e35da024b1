-- What append.lua and trim.lua share: keeping a room's entry in chat:held right, and trimming
-- its messages older than a cutoff (with their dedup keys, and their edits' text). A room's messages are in seq order
-- and, the clock going forward, in ts order too: trimming walks from its oldest to the first one
-- young enough. Prepended to those scripts (redis/store.ts).

-- Bounds the messages decoded at once while looking for the first one young enough.
local TRIM_CHUNK = 100

local function decoded(member)
  return cjson.decode(string.sub(member, string.find(member, ':', 1, true) + 1))
end
-- Drops the dedup key of a trimmed entry: its author's (or, for settings and deletions, its
-- actor's, `by`) id and its id. An event stored before events kept their id has none to drop.
local function forgetKey(ids, m)
  local u = m.user or m.by
  if m.id and u then redis.call('HDEL', ids, u.id .. '\n' .. m.id) end
end
-- Adds the seqs of a trimmed entry's edit events to `into`: a message's own (append.lua keeps them
-- in its member, `edits`), unless it was deleted (the deletion blanked them already).
local function editsOf(m, into)
  if m.edits and not m.deleted then
    for _, s in ipairs(m.edits) do into[#into + 1] = s end
  end
end
-- The edit events of trimmed messages, `seqs`, lose their text, as a deletion's do (§11.4): an
-- edit kept after its message must not keep text that nobody can delete any more. Those trimmed
-- with it are gone already.
local function blankEdits(log, seqs)
  for _, s in ipairs(seqs) do
    local found = redis.call('ZRANGEBYSCORE', log, s, s)[1]
    if found then
      local e = decoded(found)
      if e.text ~= '' then
        e.text = ''
        redis.call('ZREM', log, found)
        redis.call('ZADD', log, s, s .. ':' .. cjson.encode(e))
      end
    end
  end
end
local function syncHeld(log, held, room)
  local oldest = redis.call('ZRANGE', log, 0, 0)
  if oldest[1] then
    redis.call('ZADD', held, decoded(oldest[1]).ts, room)
  else
    redis.call('ZREM', held, room)
  end
end
local function trimAged(log, ids, held, room, cutoff)
  local oldestTs = redis.call('ZSCORE', held, room)
  if not oldestTs or tonumber(oldestTs) >= cutoff then return 0 end
  local n = 0
  local young = false
  local edits = {}
  repeat
    local chunk = redis.call('ZRANGE', log, n, n + TRIM_CHUNK - 1)
    for _, member in ipairs(chunk) do
      local m = decoded(member)
      if m.ts >= cutoff then young = true break end
      forgetKey(ids, m)
      editsOf(m, edits)
      n = n + 1
    end
  until young or #chunk < TRIM_CHUNK
  if n > 0 then redis.call('ZREMRANGEBYRANK', log, 0, n - 1) end
  blankEdits(log, edits)
  syncHeld(log, held, room)
  return n
end
