#!lua name=relayhub
-- The notification inbox's Redis functions (actors/src/features/inbox.rs fills in its
-- placeholders). Per user, all in the slot of the user's channel:
--   KEYS[1]         the inbox, a stream of entries {m = payload, k? = collapseKey, x? = expiresAt}
--   KEYS[1]:state   a hash: upTo (every entry up to it is read), floor (every entry after it
--                   is still kept), lowWindow/lowCount (low-priority notifications this minute)
--   KEYS[1]:read    a set: entries after upTo read one by one
-- Every change of the read state publishes an `inbox-state` hub message on the user's channel.
local MAXLEN = __MAXLEN__
local TTL_MS = __TTL_MS__
local LOW_PER_MINUTE = __LOW_PER_MINUTE__
local REQUEST_TTL_MS = __REQUEST_TTL_MS__
-- The mark of an inbox id the hub wrote: published first in place of `inboxId`.
local HUB_INBOX_ID = '__HUB_INBOX_ID__'
local PREFIX = 'user:notifications:'

local function fail(name, why)
  return redis.error_reply('ERR ' .. name .. ': ' .. why)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- An inbox id `<ms>-<seq>` as its two digit strings; nil for anything else. (Compared as
-- strings: Lua numbers are not exact beyond 2^53.)
local function parse_id(id)
  if type(id) ~= 'string' then return nil end
  local ms, seq = string.match(id, '^(%d+)%-(%d+)$')
  if ms == nil or #ms > 20 or #seq > 20 then return nil end
  return { (string.gsub(ms, '^0+(%d)', '%1')), (string.gsub(seq, '^0+(%d)', '%1')) }
end

local function num_lt(a, b)
  return #a < #b or (#a == #b and a < b)
end

-- a < b for two valid ids.
local function lt(a, b)
  local x, y = parse_id(a), parse_id(b)
  return num_lt(x[1], y[1]) or (x[1] == y[1] and num_lt(x[2], y[2]))
end

local function field(entry, name)
  local f = entry[2]
  for i = 1, #f, 2 do
    if f[i] == name then return f[i + 1] end
  end
  return nil
end

local function expired(entry, now)
  local x = field(entry, 'x')
  return x ~= nil and tonumber(x) ~= nil and tonumber(x) <= now
end

-- The user of an inbox key; nil when it is not one.
local function user_of(key)
  if type(key) ~= 'string' then return nil end
  return string.match(key, '^inbox:{' .. PREFIX .. '([%w:_.@-]+)}$')
end

local function is_read(key, id, upto)
  if upto and not lt(upto, id) then return true end
  return redis.call('SISMEMBER', key .. ':read', id) == 1
end

-- Notifications kept, not expired and not read.
local function unread_count(key, now)
  local upto = redis.call('HGET', key .. ':state', 'upTo')
  local start = '-'
  if upto then start = '(' .. upto end
  local n = 0
  for _, e in ipairs(redis.call('XRANGE', key, start, '+')) do
    if not expired(e, now) and redis.call('SISMEMBER', key .. ':read', e[1]) == 0 then
      n = n + 1
    end
  end
  return n
end

-- Publishes `{"$hub":"inbox-state","userId":..,"unread":N<extra>}` on the user's channel.
local function publish_state(user, unread, extra)
  redis.call('__PUBLISH__', PREFIX .. user, '{"$hub":"inbox-state","userId":'
    .. cjson.encode(user) .. ',"unread":' .. string.format('%d', unread) .. extra .. '}')
end

local function id_list(ids)
  local quoted = {}
  for i, id in ipairs(ids) do quoted[i] = '"' .. id .. '"' end
  return '[' .. table.concat(quoted, ',') .. ']'
end

-- The read state lives as long as the inbox.
local function touch(key)
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then
    redis.call('PEXPIRE', key .. ':state', ttl)
    redis.call('PEXPIRE', key .. ':read', ttl)
  end
end

redis.register_function('relay_notify', function(keys, args)
  local name = 'relay_notify'
  local key, payload = keys[1], args[1]
  if key == nil or payload == nil then
    return fail(name, 'call FCALL relay_notify 1 inbox:{user:notifications:ID} <Notification JSON>')
  end
  local ok, n = pcall(cjson.decode, payload)
  if not ok or type(n) ~= 'table' or string.sub(payload, 1, 1) ~= '{' then
    return fail(name, 'the payload must be a JSON object (starting with {)')
  end
  local user = n.userId
  if type(user) == 'number' and user == math.floor(user) then
    user = string.format('%d', user)
  end
  if type(user) ~= 'string' or not string.match(user, '^[%w:_.@-]+$') or #user > 128 then
    return fail(name, 'userId (a string or an integer: 1-128 of A-Z a-z 0-9 : _ . - @) is required')
  end
  if n.inboxId ~= nil then
    return fail(name, 'inboxId is set by the inbox; leave it out')
  end
  if n['$hub'] ~= nil then
    return fail(name, "$hub is reserved for the hub's own messages; leave it out")
  end
  if n[HUB_INBOX_ID] ~= nil then
    return fail(name, HUB_INBOX_ID .. ' is reserved for the inbox; leave it out')
  end
  for _, f in ipairs({ 'type', 'title', 'message' }) do
    if type(n[f]) ~= 'string' then return fail(name, f .. ' (string) is required') end
  end
  local priority, collapse, expires = n.priority, n.collapseKey, n.expiresAt
  if priority ~= nil and priority ~= 'high' and priority ~= 'normal' and priority ~= 'low' then
    return fail(name, 'priority must be "high", "normal" or "low"')
  end
  if collapse ~= nil and (type(collapse) ~= 'string' or #collapse == 0 or #collapse > 128) then
    return fail(name, 'collapseKey must be a string of 1-128 bytes')
  end
  if expires ~= nil and (type(expires) ~= 'number' or expires < 0) then
    return fail(name, 'expiresAt must be a time in milliseconds since the epoch')
  end
  local channel = PREFIX .. user
  if key ~= 'inbox:{' .. channel .. '}' then
    return fail(name, 'KEYS[1] must be inbox:{' .. channel .. '}')
  end
  -- KEYS[2], optional: the request's key; a retry of a call that ran gets its id back.
  local request = keys[2]
  if request ~= nil then
    local prefix = 'inbox:request:{' .. channel .. '}:'
    if string.sub(request, 1, #prefix) ~= prefix or #request == #prefix then
      return fail(name, 'KEYS[2], if given, must be ' .. prefix .. '<request id>')
    end
    local done = redis.call('GET', request)
    if done then return { done, 0 } end
  end
  local state, read = key .. ':state', key .. ':read'
  local now = now_ms()
  if redis.call('EXISTS', key) == 0 then
    -- A new inbox: what an earlier one (expired) left is not its state.
    redis.call('DEL', state, read)
  end
  local removed = {}
  if collapse ~= nil then
    local upto = redis.call('HGET', state, 'upTo')
    local start = '-'
    if upto then start = '(' .. upto end
    for _, e in ipairs(redis.call('XRANGE', key, start, '+')) do
      if field(e, 'k') == collapse and redis.call('SISMEMBER', read, e[1]) == 0 then
        redis.call('XDEL', key, e[1])
        table.insert(removed, e[1])
      end
    end
  end
  local fields = { 'm', payload }
  if collapse ~= nil then
    table.insert(fields, 'k'); table.insert(fields, collapse)
  end
  if expires ~= nil then
    table.insert(fields, 'x'); table.insert(fields, string.format('%d', expires))
  end
  local id = redis.call('XADD', key, '*', unpack(fields))
  local len = redis.call('XLEN', key)
  if len > MAXLEN then
    local old = redis.call('XRANGE', key, '-', '+', 'COUNT', len - MAXLEN)
    for _, e in ipairs(old) do redis.call('SREM', read, e[1]) end
    redis.call('XTRIM', key, 'MAXLEN', '=', MAXLEN)
    redis.call('HSET', state, 'floor', old[#old][1])
  elseif redis.call('HEXISTS', state, 'floor') == 0 then
    redis.call('HSET', state, 'floor', redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1][1])
  end
  local held = false
  if priority == 'low' and LOW_PER_MINUTE > 0 then
    local window = string.format('%d', math.floor(now / 60000))
    if redis.call('HGET', state, 'lowWindow') ~= window then
      redis.call('HSET', state, 'lowWindow', window, 'lowCount', 0)
    end
    held = redis.call('HINCRBY', state, 'lowCount', 1) > LOW_PER_MINUTE
  end
  redis.call('PEXPIRE', key, TTL_MS)
  redis.call('PEXPIRE', state, TTL_MS)
  redis.call('PEXPIRE', read, TTL_MS)
  local receivers = 0
  if not held and not (expires ~= nil and expires <= now) then
    receivers = redis.call('__PUBLISH__', channel,
      '{"' .. HUB_INBOX_ID .. '":"' .. id .. '",' .. string.sub(payload, 2))
  end
  if request ~= nil then
    redis.call('SET', request, id, 'PX', REQUEST_TTL_MS)
  end
  local extra = ''
  if #removed > 0 then extra = ',"removed":' .. id_list(removed) end
  if held then extra = extra .. ',"held":"' .. id .. '"' end
  publish_state(user, unread_count(key, now), extra)
  return { id, receivers }
end)

redis.register_function('relay_inbox_read', function(keys, args)
  local name = 'relay_inbox_read'
  local key = keys[1]
  local user = user_of(key)
  if user == nil then
    return fail(name, 'call FCALL relay_inbox_read 1 inbox:{user:notifications:ID} ids <id>... | upTo <id>')
  end
  local state, read = key .. ':state', key .. ':read'
  local upto = redis.call('HGET', state, 'upTo')
  local extra = ''
  if args[1] == 'upTo' and #args == 2 then
    if parse_id(args[2]) == nil then return fail(name, 'upTo must be an inbox id') end
    local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
    if #last > 0 then
      local mark = args[2]
      if lt(last[1][1], mark) then mark = last[1][1] end
      if not upto or lt(upto, mark) then
        redis.call('HSET', state, 'upTo', mark)
        for _, id in ipairs(redis.call('SMEMBERS', read)) do
          if not lt(mark, id) then redis.call('SREM', read, id) end
        end
        extra = ',"upTo":"' .. mark .. '"'
      end
    end
  elseif args[1] == 'ids' and #args >= 2 then
    local marked = {}
    for i = 2, #args do
      local id = args[i]
      if parse_id(id) == nil then return fail(name, 'ids must be inbox ids') end
      if (not upto or lt(upto, id)) and #redis.call('XRANGE', key, id, id) > 0
          and redis.call('SADD', read, id) == 1 then
        table.insert(marked, id)
      end
    end
    if #marked > 0 then extra = ',"read":' .. id_list(marked) end
  else
    return fail(name, 'mark `ids` <id>... or `upTo` <id>')
  end
  local unread = unread_count(key, now_ms())
  if extra ~= '' then
    touch(key)
    publish_state(user, unread, extra)
  end
  return { unread, extra ~= '' and 1 or 0 }
end)

redis.register_function('relay_inbox_delete', function(keys, args)
  local name = 'relay_inbox_delete'
  local key, id = keys[1], args[1]
  local user = user_of(key)
  if user == nil or parse_id(id) == nil then
    return fail(name, 'call FCALL relay_inbox_delete 1 inbox:{user:notifications:ID} <inboxId>')
  end
  local deleted = redis.call('XDEL', key, id)
  redis.call('SREM', key .. ':read', id)
  local unread = unread_count(key, now_ms())
  if deleted == 1 then
    publish_state(user, unread, ',"removed":["' .. id .. '"]')
  end
  return { deleted, unread }
end)

redis.register_function {
  function_name = 'relay_inbox_unread',
  flags = { 'no-writes' },
  callback = function(keys)
    if user_of(keys[1]) == nil then
      return fail('relay_inbox_unread', 'KEYS[1] must be inbox:{user:notifications:ID}')
    end
    return unread_count(keys[1], now_ms())
  end,
}

-- A page, newest first: {unread, more (0/1), id, payload, read (0/1), ...} of at most `limit`
-- notifications before `before` ('' for the newest), expired ones left out.
redis.register_function {
  function_name = 'relay_inbox_page',
  flags = { 'no-writes' },
  callback = function(keys, args)
    local name = 'relay_inbox_page'
    local key, before, limit = keys[1], args[1], tonumber(args[2])
    if user_of(key) == nil or (before ~= '' and parse_id(before) == nil) or limit == nil then
      return fail(name, 'call FCALL relay_inbox_page 1 inbox:{user:notifications:ID} <before|""> <limit>')
    end
    local now = now_ms()
    local start = '+'
    if before ~= '' then start = '(' .. before end
    local upto = redis.call('HGET', key .. ':state', 'upTo')
    local out = { unread_count(key, now), 0 }
    local got = 0
    for _, e in ipairs(redis.call('XREVRANGE', key, start, '-', 'COUNT', MAXLEN)) do
      if not expired(e, now) then
        if got >= limit then
          out[2] = 1
          break
        end
        table.insert(out, e[1])
        table.insert(out, field(e, 'm') or '{}')
        table.insert(out, is_read(key, e[1], upto) and 1 or 0)
        got = got + 1
      end
    end
    return out
  end,
}

-- What a reconnecting session missed: {floor, id, payload, ...}, oldest first, from `start`
-- (an id, or `(id` for after it), at most `count` entries read, expired ones left out.
-- `floor`: every entry after it is still kept ('' for no inbox).
redis.register_function {
  function_name = 'relay_inbox_range',
  flags = { 'no-writes' },
  callback = function(keys, args)
    local key, start, count = keys[1], args[1], tonumber(args[2])
    if user_of(key) == nil or start == nil or count == nil then
      return fail('relay_inbox_range', 'call FCALL relay_inbox_range 1 inbox:{user:notifications:ID} <start> <count>')
    end
    local floor = redis.call('HGET', key .. ':state', 'floor')
    if not floor then
      local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
      floor = ''
      if #first > 0 then floor = first[1][1] end
    end
    local now = now_ms()
    local out = { floor }
    for _, e in ipairs(redis.call('XRANGE', key, start, '+', 'COUNT', count)) do
      if not expired(e, now) then
        table.insert(out, e[1])
        table.insert(out, field(e, 'm') or '{}')
      end
    end
    return out
  end,
}
