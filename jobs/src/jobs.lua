#!lua name=relayhub_jobs
-- The job queue's Redis functions: the worker protocol of docs/jobs.md. Every function takes
-- one key, the queue prefix (`jobs`, or `{jobs}` on a cluster), and builds every key it
-- touches from it, so the whole queue (and each job's keys) lives in the prefix's slot.
-- Timestamps come from the Redis clock; `userId` is kept as raw JSON so results repeat it.
local GROUP = 'workers'
local RESULTS = 'ai:results'
local EVENTS = 'ai:jobs'
local DEAD_MAX = 10000
local MAX_DELTA = 65536
local LATENCY_BUCKETS = {__LATENCY_BUCKETS__}
local PRIOS = {'high', 'normal', 'low'}
local PRIO_INDEX = {high = 1, normal = 2, low = 3}

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function int(x) return string.format('%d', x) end
local function fields(flat)
  local f = {}
  for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
  return f
end
local function bad(name, why)
  error({err = 'ERR ' .. name .. ': ' .. why})
end
local function arg_count(name, args, n, usage)
  if #args < n then bad(name, 'usage: FCALL ' .. name .. ' 1 <prefix> ' .. usage) end
end
local function ms_arg(name, v, what)
  local n = tonumber(v)
  if not n or n < 0 or n ~= math.floor(n) then bad(name, what .. ' must be a whole number of ms') end
  return n
end
local function name_ok(s)
  return type(s) == 'string' and #s >= 1 and #s <= 128 and string.match(s, '^[%w:_.-]+$') ~= nil
end
local function job_key(p, id) return p .. ':job:' .. id end
local function chunks_key(p, id) return p .. ':chunks:' .. id end
local function stream_key(p, prio) return p .. ':stream:' .. prio end
-- the canonical user id of a job's raw JSON userId
local function user_of(raw)
  local ok, u = pcall(cjson.decode, raw or '')
  if not ok then return nil end
  if type(u) == 'number' then u = string.format('%d', u) end
  return u
end


-- A job event for the hub (channel ai:jobs): `body` is the JSON members after `event`.
local function job_event(id, user, event, body)
  redis.call('PUBLISH', EVENTS, '{"jobId":' .. cjson.encode(id) .. ',"userId":' .. user ..
    ',"event":"' .. event .. '"' .. body .. '}')
end
local function state_event(id, user, state, body)
  job_event(id, user, 'state', ',"state":"' .. state .. '"' .. (body or ''))
end
-- An AIResult (docs/protocol.md#airesult); `user` is raw JSON, `body` the status-specific
-- members; `chunks` (when the job streamed) is the last chunk's seq.
local function ai_result(id, user, kind, status, body, chunks)
  local c = ''
  if chunks and tonumber(chunks) and tonumber(chunks) > 0 then c = ',"chunks":' .. chunks end
  redis.call('PUBLISH', RESULTS, '{"jobId":' .. cjson.encode(id) .. ',"userId":' .. user ..
    ',"type":' .. cjson.encode(kind) .. ',"status":"' .. status .. '"' .. body .. c .. '}')
end
local function drop(s, entry)
  redis.call('XACK', s, GROUP, entry)
  redis.call('XDEL', s, entry)
end
local function expire(p, id, h, ttl)
  redis.call('PEXPIRE', h, ttl)
  redis.call('PEXPIRE', chunks_key(p, id), ttl)
end
-- Adds a job to the dead-letter stream, marks it failed, publishes the error AIResult.
local function bury(p, h, f, err, attempts, now, ttl)
  redis.call('XADD', p .. ':dead', 'MAXLEN', '~', DEAD_MAX, '*', 'id', f.id, 'type', f.type or '',
    'userId', f.userId, 'attempts', attempts, 'error', err, 'failedAt', now, 'job', f.job or '')
  redis.call('HSET', h, 'state', 'failed', 'error', err, 'finishedAt', now, 'updatedAt', now)
  expire(p, f.id, h, ttl)
  redis.call('HINCRBY', p .. ':stats', 'failed', 1)
  ai_result(f.id, f.userId, f.type or '', 'error',
    ',"error":' .. cjson.encode(err) .. ',"attempts":' .. int(attempts),
    redis.call('HGET', h, 'seq'))
end
-- Moves a job from its stream entry to the dead-letter stream (see `bury`).
local function dead_letter(p, s, entry, h, f, err, attempts, now, ttl)
  bury(p, h, f, err, attempts, now, ttl)
  drop(s, entry)
end
-- The job a lease holds: its state hash fields, or nil (with why) when the lease is lost.
local function leased(p, id, lease, ...)
  local h = job_key(p, id)
  local st = redis.call('HMGET', h, 'state', 'lease', ...)
  if st[1] ~= 'running' or st[2] ~= lease then return nil, h, st[1] end
  return st, h
end

-- relay_job_enqueue <prefix> id type userId(JSON) priority job(JSON) ttl_ms live_ms known_ms
local function enqueue(keys, args)
  local name = 'relay_job_enqueue'
  arg_count(name, args, 8, 'id type userId(JSON) priority job(JSON) ttl_ms live_ms known_ms')
  local p = keys[1]
  local id, kind, user, prio, job = args[1], args[2], args[3], args[4], args[5]
  local ttl, live_ms = ms_arg(name, args[6], 'ttl_ms'), ms_arg(name, args[7], 'live_ms')
  local known = ms_arg(name, args[8], 'known_ms')
  if not name_ok(id) then bad(name, 'id must be 1-128 characters of A-Z a-z 0-9 : _ . -') end
  if not name_ok(kind) then bad(name, 'type must be 1-128 characters of A-Z a-z 0-9 : _ . -') end
  if not PRIO_INDEX[prio] then bad(name, 'priority must be high, normal or low') end
  local ok, u = pcall(cjson.decode, user)
  if not ok or (type(u) ~= 'number' and type(u) ~= 'string') then
    bad(name, 'userId must be JSON: a number or a string')
  end
  local okj, j = pcall(cjson.decode, job)
  if not okj or type(j) ~= 'table' or string.sub(job, 1, 1) ~= '{' then
    bad(name, 'job must be a JSON object')
  end
  if ttl < 1 then bad(name, 'ttl_ms must be at least 1') end
  local h = job_key(p, id)
  local state = redis.call('HGET', h, 'state')
  if state then return {'duplicate', state} end
  local now = now_ms()
  local seen = tonumber(redis.call('ZSCORE', p .. ':types', kind) or '-1')
  if known > 0 and seen < now - known then
    local reply = redis.call('ZRANGEBYSCORE', p .. ':types', now - known, '+inf')
    table.insert(reply, 1, 'unknown')
    return reply
  end
  local live = '0'
  if seen >= now - live_ms then live = '1' end
  local s = stream_key(p, prio)
  if redis.call('EXISTS', s) == 0 then
    redis.call('XGROUP', 'CREATE', s, GROUP, '0', 'MKSTREAM')
  end
  local entry = redis.call('XADD', s, '*', 'id', id, 'type', kind, 'userId', user,
    'enqueuedAt', int(now), 'job', job)
  redis.call('DEL', chunks_key(p, id))
  redis.call('HSET', h, 'id', id, 'type', kind, 'userId', user, 'priority', prio,
    'state', 'queued', 'attempts', 0, 'lease', 0, 'seq', 0, 'entry', entry,
    'enqueuedAt', int(now), 'updatedAt', int(now))
  redis.call('PEXPIRE', h, ttl)
  redis.call('HINCRBY', p .. ':stats', 'enqueued', 1)
  state_event(id, user, 'queued', ',"attempt":0')
  return {'queued', int(now), live}
end

-- relay_job_advertise <prefix> forget_ms type...
local function advertise(keys, args)
  local name = 'relay_job_advertise'
  arg_count(name, args, 1, 'forget_ms type...')
  local forget = ms_arg(name, args[1], 'forget_ms')
  local now = now_ms()
  for i = 2, #args do redis.call('ZADD', keys[1] .. ':types', now, args[i]) end
  redis.call('ZREMRANGEBYSCORE', keys[1] .. ':types', '-inf', '(' .. int(now - forget))
  return now
end

-- relay_job_claim <prefix> consumer visibility_ms max_attempts ttl_ms parked_max type...
local function claim(keys, args)
  local name = 'relay_job_claim'
  arg_count(name, args, 5, 'consumer visibility_ms max_attempts ttl_ms parked_max type...')
  local p, consumer = keys[1], args[1]
  local vis = ms_arg(name, args[2], 'visibility_ms')
  local max_attempts = ms_arg(name, args[3], 'max_attempts')
  local ttl = ms_arg(name, args[4], 'ttl_ms')
  local parked_max = ms_arg(name, args[5], 'parked_max')
  if consumer == '' then bad(name, 'consumer must not be empty') end
  if vis < 1 or max_attempts < 1 or ttl < 1 or parked_max < 1 then
    bad(name, 'visibility_ms, max_attempts, ttl_ms and parked_max must be at least 1')
  end
  local stats = p .. ':stats'
  local now = now_ms()
  local handled = {}
  for i = 6, #args do handled[args[i]] = true end

  -- Drops the parked entries of jobs whose state expired (parked longer than the TTL ago).
  local function trim_expired(parked)
    if now <= ttl then return end
    local n = redis.call('XTRIM', parked, 'MINID', int(now - ttl))
    if n > 0 then redis.call('HINCRBY', stats, 'parked_expired', n) end
  end

  -- Parked jobs of the handled types go back to the end of their priority stream (unless
  -- their state is gone).
  for i = 6, #args do
    local parked = p .. ':parked:' .. args[i]
    trim_expired(parked)
    for _, e in ipairs(redis.call('XRANGE', parked, '-', '+', 'COUNT', 100)) do
      local flat = e[2]
      local prio = PRIO_INDEX[flat[2]] and flat[2] or 'normal'
      if redis.call('EXISTS', job_key(p, fields(flat).id or '')) == 1 then
        redis.call('XADD', stream_key(p, prio), '*', unpack(flat, 3))
      else
        redis.call('HINCRBY', stats, 'parked_expired', 1)
      end
      redis.call('XDEL', parked, e[1])
    end
  end

  -- Sets a job of a type this worker does not handle aside for a worker that does; past the
  -- parked cap the oldest parked jobs of the type are dead-lettered.
  local function park(i, s, entry, flat, h, f)
    local parked = p .. ':parked:' .. (f.type or '')
    trim_expired(parked)
    redis.call('XADD', parked, '*', 'priority', PRIOS[i], unpack(flat))
    redis.call('PEXPIRE', parked, ttl)
    redis.call('HSET', h, 'state', 'queued', 'updatedAt', int(now))
    redis.call('PEXPIRE', h, ttl)
    redis.call('HINCRBY', stats, 'parked', 1)
    drop(s, entry)
    local over = redis.call('XLEN', parked) - parked_max
    if over <= 0 then return end
    for _, e in ipairs(redis.call('XRANGE', parked, '-', '+', 'COUNT', over)) do
      local g = fields(e[2])
      local gh = job_key(p, g.id or '')
      local attempts = tonumber(redis.call('HGET', gh, 'attempts') or '0') or 0
      if g.id and g.userId then
        bury(p, gh, g, 'no worker for job type `' .. (g.type or '') .. '` took the job while ' ..
          int(parked_max) .. ' jobs of the type waited (the parked cap)', attempts, int(now), ttl)
      end
      redis.call('XDEL', parked, e[1])
    end
  end

  -- Starts the job of an entry this consumer now owns; nil when it is not runnable.
  local function start(i, s, entry, flat, from_pending)
    local f = fields(flat)
    if not f.id or not f.userId then drop(s, entry) return nil end
    local h = job_key(p, f.id)
    local st = redis.call('HMGET', h, 'state', 'attempts', 'seq')
    local state, attempts = st[1], tonumber(st[2] or '0') or 0
    if not state then
      -- the state expired while the job waited: rebuild it from the entry
      redis.call('HSET', h, 'id', f.id, 'type', f.type or '', 'userId', f.userId,
        'priority', PRIOS[i], 'attempts', 0, 'lease', 0, 'seq', 0,
        'enqueuedAt', f.enqueuedAt or int(now))
      attempts = 0
    elseif state == 'done' or state == 'failed' or state == 'cancelled' then
      drop(s, entry)
      return nil
    end
    -- (An entry that is not a job at all is claimed: whichever worker dead-letters it.)
    local ok, job = pcall(cjson.decode, f.job or '')
    if not handled[f.type or ''] and ok and type(job) == 'table' then
      park(i, s, entry, flat, h, f)
      return nil
    end
    if from_pending and state == 'running' then
      -- taken over: its worker stopped renewing the lease
      redis.call('HINCRBY', stats, 'reclaimed', 1)
      if attempts >= max_attempts then
        dead_letter(p, s, entry, h, f, 'the job lost its worker on attempt ' .. int(attempts) ..
          ' of ' .. int(max_attempts) .. ' (visibility timeout)', attempts, now, ttl)
        return nil
      end
    end
    attempts = attempts + 1
    local lease = redis.call('HINCRBY', h, 'lease', 1)
    -- a new attempt streams its text from the start: the earlier attempt's chunks go
    redis.call('DEL', chunks_key(p, f.id))
    redis.call('HSET', h, 'state', 'running', 'attempts', attempts, 'startedAt', int(now),
      'updatedAt', int(now), 'worker', consumer, 'entry', entry, 'priority', PRIOS[i])
    redis.call('PEXPIRE', h, ttl)
    state_event(f.id, f.userId, 'running', ',"attempt":' .. int(attempts) .. ',"worker":' ..
      cjson.encode(consumer) .. ',"seq":' .. (st[3] or '0'))
    return {'job', PRIOS[i], entry, f.job or '', int(attempts), int(lease),
      f.enqueuedAt or int(now), f.id, f.type or ''}
  end

  for i = 1, 3 do
    local s = stream_key(p, PRIOS[i])
    for _ = 1, 32 do
      local pend = redis.pcall('XPENDING', s, GROUP, 'IDLE', vis, '-', '+', 1)
      if type(pend) == 'table' and pend.err then
        if string.find(pend.err, 'NOGROUP') then
          redis.call('XGROUP', 'CREATE', s, GROUP, '0', 'MKSTREAM')
          pend = {}
        else
          return redis.error_reply(pend.err)
        end
      end
      if #pend == 0 then break end
      local c = redis.call('XCLAIM', s, GROUP, consumer, vis, pend[1][1])
      local e = c[1]
      if e and e[2] then
        local r = start(i, s, e[1], e[2], true)
        if r then return r end
      else
        redis.call('XACK', s, GROUP, pend[1][1])  -- the entry is gone: forget it
      end
    end
    for _ = 1, 32 do
      local r = redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', 1, 'STREAMS', s, '>')
      if not r then break end
      local e = r[1][2][1]
      local res = start(i, s, e[1], e[2], false)
      if res then return res end
    end
  end

  local marks = {'none'}
  for i = 1, 3 do
    local last = redis.call('XREVRANGE', stream_key(p, PRIOS[i]), '+', '-', 'COUNT', 1)
    marks[i + 1] = (last[1] and last[1][1]) or '0-0'
  end
  return marks
end

-- relay_job_renew <prefix> id lease ttl_ms -> ok | cancelled | lost
local function renew(keys, args)
  local name = 'relay_job_renew'
  arg_count(name, args, 3, 'id lease ttl_ms')
  local p, id = keys[1], args[1]
  local ttl = ms_arg(name, args[3], 'ttl_ms')
  local st, h, state = leased(p, id, args[2], 'priority', 'entry', 'worker')
  if not st then return state == 'cancelled' and 'cancelled' or 'lost' end
  redis.call('XCLAIM', stream_key(p, st[3]), GROUP, st[5], 0, st[4], 'JUSTID')
  expire(p, id, h, ttl)
  return 'ok'
end

-- relay_job_check <prefix> (id lease)... -> one of running | cancelled | lost per job
local function check(keys, args)
  local out = {}
  for i = 1, #args - 1, 2 do
    local st = redis.call('HMGET', job_key(keys[1], args[i]), 'state', 'lease')
    if st[1] == 'running' and st[2] == args[i + 1] then out[#out + 1] = 'running'
    elseif st[1] == 'cancelled' then out[#out + 1] = 'cancelled'
    else out[#out + 1] = 'lost' end
  end
  return out
end

-- relay_job_chunk <prefix> id lease delta -> seq (>= 1), 0 (lease lost) or -1 (cancelled)
local function chunk(keys, args)
  local name = 'relay_job_chunk'
  arg_count(name, args, 3, 'id lease delta')
  local p, id, delta = keys[1], args[1], args[3]
  if #delta > MAX_DELTA then bad(name, 'a delta holds at most ' .. MAX_DELTA .. ' bytes') end
  local st, h, state = leased(p, id, args[2], 'userId')
  if not st then return state == 'cancelled' and -1 or 0 end
  local seq = redis.call('HINCRBY', h, 'seq', 1)
  local c = chunks_key(p, id)
  redis.call('XADD', c, '*', 's', seq, 'd', delta)
  local left = redis.call('PTTL', h)
  if left > 0 then redis.call('PEXPIRE', c, left) end
  job_event(id, st[3], 'chunk', ',"seq":' .. int(seq) .. ',"delta":' .. cjson.encode(delta))
  return seq
end

-- relay_job_complete <prefix> id lease result(JSON) processing_ms ttl_ms -> 1, or 0 (lost)
local function complete(keys, args)
  local name = 'relay_job_complete'
  arg_count(name, args, 5, 'id lease result(JSON) processing_ms ttl_ms')
  local p, id, result = keys[1], args[1], args[3]
  local processing = ms_arg(name, args[4], 'processing_ms')
  local ttl = ms_arg(name, args[5], 'ttl_ms')
  local ok = pcall(cjson.decode, result)
  if not ok then bad(name, 'result must be JSON') end
  local st, h = leased(p, id, args[2], 'userId', 'type', 'enqueuedAt', 'priority', 'entry', 'seq')
  if not st then return 0 end
  local now = now_ms()
  redis.call('HSET', h, 'state', 'done', 'result', result, 'processingTime', int(processing),
    'finishedAt', int(now), 'updatedAt', int(now))
  redis.call('HDEL', h, 'error')
  expire(p, id, h, ttl)
  drop(stream_key(p, st[6]), st[7])
  local stats = p .. ':stats'
  redis.call('HINCRBY', stats, 'done', 1)
  local latency = now - (tonumber(st[5] or '') or now)
  if latency < 0 then latency = 0 end
  local bucket = 'inf'
  for _, b in ipairs(LATENCY_BUCKETS) do
    if latency <= b then bucket = int(b) break end
  end
  redis.call('HINCRBY', stats, 'latency_le_' .. bucket, 1)
  redis.call('HINCRBY', stats, 'latency_count', 1)
  redis.call('HINCRBY', stats, 'latency_sum_ms', int(latency))
  ai_result(id, st[3], st[4] or '', 'success',
    ',"result":' .. result .. ',"processingTime":' .. int(processing), st[8])
  return 1
end

-- relay_job_fail <prefix> id lease error permanent(0|1) max_attempts visibility_ms backoff_ms
--   ttl_ms -> retry | dead | stale
local function fail(keys, args)
  local name = 'relay_job_fail'
  arg_count(name, args, 8,
    'id lease error permanent(0|1) max_attempts visibility_ms backoff_ms ttl_ms')
  local p, id, err = keys[1], args[1], args[3]
  local max_attempts = ms_arg(name, args[5], 'max_attempts')
  local vis = ms_arg(name, args[6], 'visibility_ms')
  local backoff = ms_arg(name, args[7], 'backoff_ms')
  local ttl = ms_arg(name, args[8], 'ttl_ms')
  local st, h = leased(p, id, args[2], 'attempts', 'userId', 'type', 'priority', 'entry', 'worker')
  if not st then return 'stale' end
  local now = now_ms()
  local attempts = tonumber(st[3] or '0') or 0
  local s, entry = stream_key(p, st[6]), st[7]
  if args[4] == '1' or attempts >= max_attempts then
    local e = redis.call('XRANGE', s, entry, entry)[1]
    local f = (e and fields(e[2])) or {id = id, type = st[5], userId = st[4]}
    dead_letter(p, s, entry, h, f, err, attempts, now, ttl)
    return 'dead'
  end
  local idle = vis - backoff
  if idle < 0 then idle = 0 end
  redis.call('HSET', h, 'state', 'queued', 'error', err, 'updatedAt', int(now))
  expire(p, id, h, ttl)
  redis.call('XCLAIM', s, GROUP, st[8], 0, entry, 'IDLE', idle, 'JUSTID')
  redis.call('HINCRBY', p .. ':stats', 'retried', 1)
  state_event(id, st[4], 'queued', ',"attempt":' .. int(attempts) .. ',"error":' ..
    cjson.encode(err) .. ',"retryInMs":' .. int(vis - idle))
  return 'retry'
end

-- relay_job_release <prefix> id lease visibility_ms ttl_ms -> 1, or 0 (lost)
local function release(keys, args)
  local name = 'relay_job_release'
  arg_count(name, args, 4, 'id lease visibility_ms ttl_ms')
  local p, id = keys[1], args[1]
  local vis = ms_arg(name, args[3], 'visibility_ms')
  local ttl = ms_arg(name, args[4], 'ttl_ms')
  local st, h = leased(p, id, args[2], 'userId', 'priority', 'entry', 'worker', 'attempts')
  if not st then return 0 end
  redis.call('HINCRBY', h, 'attempts', -1)
  redis.call('HSET', h, 'state', 'queued', 'updatedAt', int(now_ms()))
  expire(p, id, h, ttl)
  redis.call('XCLAIM', stream_key(p, st[4]), GROUP, st[6], 0, st[5], 'IDLE', vis, 'JUSTID')
  state_event(id, st[3], 'queued', ',"attempt":' .. int((tonumber(st[7]) or 1) - 1))
  return 1
end

-- relay_job_cancel <prefix> id [user] -> {cancelled, was} | {finished, state} | {unknown} |
--   {forbidden}. With `user`, only that user's job is cancelled.
local function cancel(keys, args)
  local name = 'relay_job_cancel'
  arg_count(name, args, 1, 'id [user]')
  local p, id = keys[1], args[1]
  local h = job_key(p, id)
  local st = redis.call('HMGET', h, 'state', 'userId', 'type', 'priority', 'entry', 'seq')
  if not st[1] then return {'unknown'} end
  if args[2] and args[2] ~= '' and user_of(st[2]) ~= args[2] then return {'forbidden'} end
  if st[1] ~= 'queued' and st[1] ~= 'running' then return {'finished', st[1]} end
  local now = now_ms()
  redis.call('HINCRBY', h, 'lease', 1)  -- fences the worker
  redis.call('HSET', h, 'state', 'cancelled', 'finishedAt', int(now), 'updatedAt', int(now))
  if PRIO_INDEX[st[4] or ''] and st[5] then drop(stream_key(p, st[4]), st[5]) end
  redis.call('HINCRBY', p .. ':stats', 'cancelled', 1)
  redis.call('PUBLISH', p .. ':cancel', id)
  ai_result(id, st[2], st[3] or '', 'cancelled', '', st[6])
  return {'cancelled', st[1]}
end

-- relay_job_retire <prefix> consumer -> how many groups it left
local function retire(keys, args)
  arg_count('relay_job_retire', args, 1, 'consumer')
  local left = 0
  for _, prio in ipairs(PRIOS) do
    local s = stream_key(keys[1], prio)
    local pend = redis.pcall('XPENDING', s, GROUP, '-', '+', 1, args[1])
    if type(pend) == 'table' and not pend.err and #pend == 0 then
      redis.pcall('XGROUP', 'DELCONSUMER', s, GROUP, args[1])
      left = left + 1
    end
  end
  return left
end

-- relay_job_stats <prefix> -> length and pending of each stream, dead letters, stats pairs
local function stats(keys, args)
  local out = {}
  for _, prio in ipairs(PRIOS) do
    local s = stream_key(keys[1], prio)
    out[#out + 1] = tostring(redis.call('XLEN', s))
    local pend = redis.pcall('XPENDING', s, GROUP)
    if type(pend) == 'table' and not pend.err then
      out[#out + 1] = tostring(pend[1])
    else
      out[#out + 1] = '0'
    end
  end
  out[#out + 1] = tostring(redis.call('XLEN', keys[1] .. ':dead'))
  local kv = redis.call('HGETALL', keys[1] .. ':stats')
  for j = 1, #kv do out[#out + 1] = kv[j] end
  return out
end

-- relay_job_chunks <prefix> id after_seq [user] -> {state, seq, s1, d1, s2, d2, ...}: the kept
--   chunks after `after_seq` (the current attempt's), with the job's state and last seq; {}
--   for an unknown job, or another user's with `user`.
local function chunks(keys, args)
  arg_count('relay_job_chunks', args, 2, 'id after_seq')
  local p, id = keys[1], args[1]
  local after = tonumber(args[2]) or 0
  local st = redis.call('HMGET', job_key(p, id), 'state', 'seq', 'userId')
  if not st[1] then return {} end
  if args[3] and args[3] ~= '' and user_of(st[3]) ~= args[3] then return {} end
  local out = {st[1], st[2] or '0'}
  for _, e in ipairs(redis.call('XRANGE', chunks_key(p, id), '-', '+')) do
    local f = fields(e[2])
    if tonumber(f.s) > after then
      out[#out + 1] = f.s
      out[#out + 1] = f.d
    end
  end
  return out
end

local function ro(name, f)
  redis.register_function{function_name = name, callback = f, flags = {'no-writes'}}
end
redis.register_function('relay_job_enqueue', enqueue)
redis.register_function('relay_job_advertise', advertise)
redis.register_function('relay_job_claim', claim)
redis.register_function('relay_job_renew', renew)
ro('relay_job_check', check)
redis.register_function('relay_job_chunk', chunk)
redis.register_function('relay_job_complete', complete)
redis.register_function('relay_job_fail', fail)
redis.register_function('relay_job_release', release)
redis.register_function('relay_job_cancel', cancel)
redis.register_function('relay_job_retire', retire)
ro('relay_job_stats', stats)
ro('relay_job_chunks', chunks)
