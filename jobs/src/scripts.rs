//! The queue's Lua scripts. Every operation that changes a job runs as one script, so the
//! stream, the consumer group, the state hash, the counters and the AIResult publish change
//! together or not at all. Keys that depend on the job id (its state hash) are built inside
//! the scripts from the prefix, so every key must be in one slot: on Redis Cluster the prefix
//! carries a hash tag (`{jobs}`, [`crate::queue::CLUSTER_PREFIX`]), which puts the whole queue
//! on one shard.
//!
//! Conventions: timestamps come from Redis `TIME` (one clock for every process); `userId` is
//! stored as raw JSON (a number or a string, as enqueued) so the AIResult repeats it exactly;
//! replies are strings or integers.

use std::sync::LazyLock;

use redis::Script;

/// Helpers shared by the scripts.
macro_rules! prelude {
    () => {
        r#"
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
-- An AIResult (docs/protocol.md#airesult); `user` is raw JSON, `body` the status-specific members.
local function ai_result(id, user, kind, status, body)
  return '{"jobId":' .. cjson.encode(id) .. ',"userId":' .. user .. ',"type":' ..
    cjson.encode(kind) .. ',"status":"' .. status .. '",' .. body .. '}'
end
-- Adds a job to the dead-letter stream, marks it failed, publishes the error AIResult.
local function bury(h, f, err, attempts, now, ttl, dead, dead_max, stats, channel)
  redis.call('XADD', dead, 'MAXLEN', '~', dead_max, '*', 'id', f.id, 'type', f.type or '',
    'userId', f.userId, 'attempts', attempts, 'error', err, 'failedAt', now, 'job', f.job or '')
  redis.call('HSET', h, 'state', 'failed', 'error', err, 'finishedAt', now, 'updatedAt', now)
  redis.call('PEXPIRE', h, ttl)
  redis.call('HINCRBY', stats, 'failed', 1)
  redis.call('PUBLISH', channel, ai_result(f.id, f.userId, f.type or '', 'error',
    '"error":' .. cjson.encode(err) .. ',"attempts":' .. int(attempts)))
end
-- Moves a job from its stream entry to the dead-letter stream (see `bury`).
local function dead_letter(s, group, entry, h, f, err, attempts, now, ttl, dead, dead_max, stats, channel)
  bury(h, f, err, attempts, now, ttl, dead, dead_max, stats, channel)
  redis.call('XACK', s, group, entry)
  redis.call('XDEL', s, entry)
end
"#
    };
}

/// Enqueue, idempotent by id; optionally only for a known job type (one a worker advertised
/// within a window).
/// KEYS: state hash, priority stream, stats, advertised types. ARGV: group, id, type, userId
/// (JSON), priority, job (JSON), ttl ms, live window ms, known window ms (`0`: no check).
/// Reply: `{"queued", enqueuedAt, live}` (`live`: `1` when a worker advertised the type
/// within the live window, else `0`), `{"duplicate", state}`, or `{"unknown", type...}` (the
/// types advertised within the known window; nothing was written).
pub(crate) static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        r#"
local state = redis.call('HGET', KEYS[1], 'state')
if state then return {'duplicate', state} end
local now = now_ms()
local seen = tonumber(redis.call('ZSCORE', KEYS[4], ARGV[3]) or '-1')
local known = tonumber(ARGV[9])
if known > 0 and seen < now - known then
  local reply = redis.call('ZRANGEBYSCORE', KEYS[4], now - known, '+inf')
  table.insert(reply, 1, 'unknown')
  return reply
end
local live = '0'
if seen >= now - tonumber(ARGV[8]) then live = '1' end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[2], ARGV[1], '0', 'MKSTREAM')
end
local entry = redis.call('XADD', KEYS[2], '*', 'id', ARGV[2], 'type', ARGV[3],
  'userId', ARGV[4], 'enqueuedAt', int(now), 'job', ARGV[6])
redis.call('HSET', KEYS[1], 'id', ARGV[2], 'type', ARGV[3], 'userId', ARGV[4],
  'priority', ARGV[5], 'state', 'queued', 'attempts', 0, 'lease', 0, 'entry', entry,
  'enqueuedAt', int(now), 'updatedAt', int(now))
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('HINCRBY', KEYS[3], 'enqueued', 1)
return {'queued', int(now), live}
"#
    ))
});

/// A worker's advertisement: marks each of its job types as served now (Redis clock), and
/// forgets types nobody advertised for `forget` ms.
/// KEYS: advertised types (sorted set, score = last advertised ms). ARGV: forget ms, then the
/// job types. Reply: the advertisement time (ms).
pub(crate) static ADVERTISE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        r#"
local now = now_ms()
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now, ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. int(now - tonumber(ARGV[1])))
return now
"#
    ))
});

/// Claims the highest priority runnable job of a type the worker handles: first it moves the
/// parked jobs of those types back to the end of their priority stream, then per priority it
/// takes a pending entry idle for the visibility timeout (its worker died, or it waits for a
/// retry or was released), then a new entry. A job whose worker died for the
/// `maxAttempts`-th time is dead-lettered instead. A job of a type the worker does not handle
/// is parked (`{prefix}:parked:{type}`, the priority as its first field), queued and with no
/// attempt counted, until a worker that handles the type claims; an entry that is no job
/// (its `job` field is not a JSON object) is claimed anyway, to be dead-lettered.
/// Parking is a change of the job's state, so its TTL restarts with the parked entry's id:
/// entries older than the TTL belong to expired jobs and are trimmed (counted as
/// `parked_expired`) whenever a parked stream is touched, and a job whose state is gone is
/// never put back; past the parked cap the oldest
/// parked jobs of the type are dead-lettered (the user gets the error).
/// KEYS: streams high, normal, low; stats; dead. ARGV: prefix, group, consumer,
/// visibility ms, max attempts, ttl ms, results channel, dead-letter cap, parked cap, then
/// the job types the worker handles.
/// Reply: `{"job", priority, entry, job JSON, attempt, lease, enqueuedAt, id, type}`, or
/// `{"none", last entry id of each stream}` (the marks to wait on).
pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        r#"
local prefix, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local vis, max_attempts, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local channel, dead_max, parked_max = ARGV[7], ARGV[8], tonumber(ARGV[9])
local prios = {'high', 'normal', 'low'}
local now = now_ms()
local handled = {}
for i = 10, #ARGV do handled[ARGV[i]] = true end

local function drop(s, entry)
  redis.call('XACK', s, group, entry)
  redis.call('XDEL', s, entry)
end

-- Drops the parked entries of jobs whose state expired (parked longer than the TTL ago).
local function trim_expired(parked)
  if now <= ttl then return end
  local n = redis.call('XTRIM', parked, 'MINID', int(now - ttl))
  if n > 0 then redis.call('HINCRBY', KEYS[4], 'parked_expired', n) end
end

-- Parked jobs of the handled types go back to the end of their priority stream.
local stream_of = {high = KEYS[1], normal = KEYS[2], low = KEYS[3]}
for i = 10, #ARGV do
  local parked = prefix .. ':parked:' .. ARGV[i]
  trim_expired(parked)
  for _, e in ipairs(redis.call('XRANGE', parked, '-', '+', 'COUNT', 100)) do
    local flat = e[2]
    if redis.call('EXISTS', prefix .. ':job:' .. (fields(flat).id or '')) == 1 then
      redis.call('XADD', stream_of[flat[2]] or KEYS[2], '*', unpack(flat, 3))
    else
      redis.call('HINCRBY', KEYS[4], 'parked_expired', 1)
    end
    redis.call('XDEL', parked, e[1])
  end
end

-- Sets a job of a type this worker does not handle aside for a worker that does.
local function park(i, s, entry, flat, h, f)
  local parked = prefix .. ':parked:' .. (f.type or '')
  trim_expired(parked)
  redis.call('XADD', parked, '*', 'priority', prios[i], unpack(flat))
  redis.call('PEXPIRE', parked, ttl)
  redis.call('HSET', h, 'state', 'queued', 'updatedAt', int(now))
  redis.call('PEXPIRE', h, ttl)
  redis.call('HINCRBY', KEYS[4], 'parked', 1)
  drop(s, entry)
  local over = redis.call('XLEN', parked) - parked_max
  if over <= 0 then return end
  for _, e in ipairs(redis.call('XRANGE', parked, '-', '+', 'COUNT', over)) do
    local g = fields(e[2])
    local gh = prefix .. ':job:' .. (g.id or '')
    local attempts = tonumber(redis.call('HGET', gh, 'attempts') or '0') or 0
    if g.id and g.userId then
      bury(gh, g, 'no worker for job type `' .. (g.type or '') .. '` took the job while ' ..
        int(parked_max) .. ' jobs of the type waited (the parked cap)', attempts, int(now), ttl,
        KEYS[5], dead_max, KEYS[4], channel)
    end
    redis.call('XDEL', parked, e[1])
  end
end

-- Starts the job of an entry this consumer now owns; nil when it is not runnable.
local function start(i, s, entry, flat, from_pending)
  local f = fields(flat)
  if not f.id or not f.userId then drop(s, entry) return nil end
  local h = prefix .. ':job:' .. f.id
  local st = redis.call('HMGET', h, 'state', 'attempts')
  local state, attempts = st[1], tonumber(st[2] or '0') or 0
  if not state then
    -- the state expired while the job waited: rebuild it from the entry
    redis.call('HSET', h, 'id', f.id, 'type', f.type or '', 'userId', f.userId,
      'priority', prios[i], 'attempts', 0, 'lease', 0, 'enqueuedAt', f.enqueuedAt or int(now))
    attempts = 0
  elseif state == 'done' or state == 'failed' then
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
    redis.call('HINCRBY', KEYS[4], 'reclaimed', 1)
    if attempts >= max_attempts then
      dead_letter(s, group, entry, h, f, 'the job lost its worker on attempt ' .. int(attempts) ..
        ' of ' .. int(max_attempts) .. ' (visibility timeout)', attempts, now, ttl, KEYS[5],
        dead_max, KEYS[4], channel)
      return nil
    end
  end
  attempts = attempts + 1
  local lease = redis.call('HINCRBY', h, 'lease', 1)
  redis.call('HSET', h, 'state', 'running', 'attempts', attempts, 'startedAt', int(now),
    'updatedAt', int(now), 'worker', consumer, 'entry', entry)
  redis.call('PEXPIRE', h, ttl)
  return {'job', prios[i], entry, f.job or '', int(attempts), int(lease),
    f.enqueuedAt or int(now), f.id, f.type or ''}
end

for i = 1, 3 do
  local s = KEYS[i]
  for _ = 1, 32 do
    local p = redis.pcall('XPENDING', s, group, 'IDLE', vis, '-', '+', 1)
    if type(p) == 'table' and p.err then
      if string.find(p.err, 'NOGROUP') then
        redis.call('XGROUP', 'CREATE', s, group, '0', 'MKSTREAM')
        p = {}
      else
        return redis.error_reply(p.err)
      end
    end
    if #p == 0 then break end
    local c = redis.call('XCLAIM', s, group, consumer, vis, p[1][1])
    local e = c[1]
    if e and e[2] then
      local r = start(i, s, e[1], e[2], true)
      if r then return r end
    else
      redis.call('XACK', s, group, p[1][1])  -- the entry is gone: forget it
    end
  end
  for _ = 1, 32 do
    local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1, 'STREAMS', s, '>')
    if not r then break end
    local e = r[1][2][1]
    local res = start(i, s, e[1], e[2], false)
    if res then return res end
  end
end

local marks = {'none'}
for i = 1, 3 do
  local last = redis.call('XREVRANGE', KEYS[i], '+', '-', 'COUNT', 1)
  marks[i + 1] = (last[1] and last[1][1]) or '0-0'
end
return marks
"#
    ))
});

/// Renews a running job's lease (resets the entry's idle time).
/// KEYS: stream. ARGV: prefix, group, consumer, id, entry, lease, ttl ms. Reply: 1, or 0 when
/// the lease is lost.
pub(crate) static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local h = ARGV[1] .. ':job:' .. ARGV[4]
local st = redis.call('HMGET', h, 'state', 'lease')
if st[1] ~= 'running' or st[2] ~= ARGV[6] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[2], ARGV[3], 0, ARGV[5], 'JUSTID')
redis.call('PEXPIRE', h, ARGV[7])
return 1
"#,
    )
});

/// Records a result, acknowledges the entry, counts latency, publishes the AIResult.
/// KEYS: stream, stats. ARGV: prefix, group, id, entry, lease, result JSON, processing ms,
/// ttl ms, results channel, then the latency bucket bounds (ms, ascending).
/// Reply: 1, or 0 when the lease is lost (nothing changed).
pub(crate) static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        r#"
local h = ARGV[1] .. ':job:' .. ARGV[3]
local st = redis.call('HMGET', h, 'state', 'lease', 'userId', 'type', 'enqueuedAt')
if st[1] ~= 'running' or st[2] ~= ARGV[5] then return 0 end
local now = now_ms()
redis.call('HSET', h, 'state', 'done', 'result', ARGV[6], 'processingTime', ARGV[7],
  'finishedAt', int(now), 'updatedAt', int(now))
redis.call('HDEL', h, 'error')
redis.call('PEXPIRE', h, ARGV[8])
redis.call('XACK', KEYS[1], ARGV[2], ARGV[4])
redis.call('XDEL', KEYS[1], ARGV[4])
redis.call('HINCRBY', KEYS[2], 'done', 1)
local latency = now - (tonumber(st[5] or '') or now)
if latency < 0 then latency = 0 end
local bucket = 'inf'
for j = 10, #ARGV do
  if latency <= tonumber(ARGV[j]) then bucket = ARGV[j] break end
end
redis.call('HINCRBY', KEYS[2], 'latency_le_' .. bucket, 1)
redis.call('HINCRBY', KEYS[2], 'latency_count', 1)
redis.call('HINCRBY', KEYS[2], 'latency_sum_ms', int(latency))
redis.call('PUBLISH', ARGV[9], ai_result(ARGV[3], st[3], st[4] or '', 'success',
  '"result":' .. ARGV[6] .. ',"processingTime":' .. ARGV[7]))
return 1
"#
    ))
});

/// Records a failed attempt: a retry after a backoff, or the dead letter (last attempt, or a
/// permanent error).
/// KEYS: stream, stats, dead. ARGV: prefix, group, consumer, id, entry, lease, error,
/// permanent (`1`/`0`), max attempts, idle ms to set (visibility - backoff), ttl ms, results
/// channel, dead-letter cap. Reply: `retry`, `dead`, or `stale` (lease lost, nothing changed).
pub(crate) static FAIL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        r#"
local h = ARGV[1] .. ':job:' .. ARGV[4]
local st = redis.call('HMGET', h, 'state', 'lease', 'attempts', 'userId', 'type')
if st[1] ~= 'running' or st[2] ~= ARGV[6] then return 'stale' end
local now = now_ms()
local attempts = tonumber(st[3] or '0') or 0
if ARGV[8] == '1' or attempts >= tonumber(ARGV[9]) then
  local e = redis.call('XRANGE', KEYS[1], ARGV[5], ARGV[5])[1]
  local f = (e and fields(e[2])) or {id = ARGV[4], type = st[5], userId = st[4]}
  dead_letter(KEYS[1], ARGV[2], ARGV[5], h, f, ARGV[7], attempts, now, ARGV[11], KEYS[3],
    ARGV[13], KEYS[2], ARGV[12])
  return 'dead'
end
redis.call('HSET', h, 'state', 'queued', 'error', ARGV[7], 'updatedAt', int(now))
redis.call('PEXPIRE', h, ARGV[11])
redis.call('XCLAIM', KEYS[1], ARGV[2], ARGV[3], 0, ARGV[5], 'IDLE', ARGV[10], 'JUSTID')
redis.call('HINCRBY', KEYS[2], 'retried', 1)
return 'retry'
"#
    ))
});

/// Gives a running job back without counting the attempt (graceful stop): it becomes
/// claimable at once, ahead of new jobs of its priority.
/// KEYS: stream. ARGV: prefix, group, consumer, id, entry, lease, visibility ms, ttl ms.
/// Reply: 1, or 0 when the lease is lost.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        r#"
local h = ARGV[1] .. ':job:' .. ARGV[4]
local st = redis.call('HMGET', h, 'state', 'lease')
if st[1] ~= 'running' or st[2] ~= ARGV[6] then return 0 end
redis.call('HINCRBY', h, 'attempts', -1)
redis.call('HSET', h, 'state', 'queued', 'updatedAt', int(now_ms()))
redis.call('PEXPIRE', h, ARGV[8])
redis.call('XCLAIM', KEYS[1], ARGV[2], ARGV[3], 0, ARGV[5], 'IDLE', ARGV[7], 'JUSTID')
return 1
"#
    ))
});

/// Removes a consumer from the group of each stream where it holds no entry.
/// KEYS: the streams. ARGV: group, consumer. Reply: how many groups it left.
pub(crate) static RETIRE_CONSUMER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local left = 0
for i = 1, #KEYS do
  local p = redis.pcall('XPENDING', KEYS[i], ARGV[1], '-', '+', 1, ARGV[2])
  if type(p) == 'table' and not p.err and #p == 0 then
    redis.pcall('XGROUP', 'DELCONSUMER', KEYS[i], ARGV[1], ARGV[2])
    left = left + 1
  end
end
return left
"#,
    )
});

/// Reads the queue's figures in one round trip.
/// KEYS: streams high, normal, low; dead; stats. ARGV: group.
/// Reply: length and pending count of each stream, dead-letter length, then the stats hash
/// as field/value pairs.
pub(crate) static STATS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local out = {}
for i = 1, 3 do
  out[#out + 1] = tostring(redis.call('XLEN', KEYS[i]))
  local p = redis.pcall('XPENDING', KEYS[i], ARGV[1])
  if type(p) == 'table' and not p.err then
    out[#out + 1] = tostring(p[1])
  else
    out[#out + 1] = '0'
  end
end
out[#out + 1] = tostring(redis.call('XLEN', KEYS[4]))
local kv = redis.call('HGETALL', KEYS[5])
for j = 1, #kv do out[#out + 1] = kv[j] end
return out
"#,
    )
});
