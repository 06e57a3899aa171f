-- gateway_quota_reserve_v1: evaluates every limit and concurrency slot of
-- one request and, only if all admit, consumes from every limit, takes every
-- slot and keeps the reservation's record, atomically (one script, one call).
-- KEYS: one counter per limit, then one sorted set per slot, then the record
-- (when kept). All are hash-tagged by tenant, so a cluster keeps them in one
-- slot. ARGV: now, nonce (the holder name), limit count, slot count, hold
-- until, record payload ('' = none), record ttl ms, then six values per
-- limit: algorithm (1 fixed, 2 sliding window, 3 sliding log, 4 GCRA),
-- limit, window start, window end, burst, cost; then one per slot: max.
-- Times are microseconds. Counters of the lifetime window (end >= 2^62)
-- never expire.
-- Returns: all_allowed, then allowed, remaining, reset_at, retry_after per
-- limit and per slot.
local now = tonumber(ARGV[1])
local nonce = ARGV[2]
local n_limits = tonumber(ARGV[3])
local n_slots = tonumber(ARGV[4])
local hold_until = tonumber(ARGV[5])
local payload = ARGV[6]
local record_ttl = tonumber(ARGV[7])
local LIFETIME = 4611686018427387904
local out = {0}
local writes = {}
local all_allowed = 1

-- A window counter expires when its window stops mattering, the same
-- instant whenever in the window it is computed: set once, when a write
-- starts the window, not on every write (a call saved per limit).
local function expire(key, micros, window_end)
  if window_end < LIFETIME then
    redis.call('PEXPIRE', key, math.ceil(micros / 1000) + 1000)
  end
end

for i = 1, n_limits do
  local base = 7 + (i - 1) * 6
  local algorithm = tonumber(ARGV[base + 1])
  local limit = tonumber(ARGV[base + 2])
  local window_start = tonumber(ARGV[base + 3])
  local window_end = tonumber(ARGV[base + 4])
  local burst = tonumber(ARGV[base + 5])
  local cost = tonumber(ARGV[base + 6])
  local length = window_end - window_start
  local key = KEYS[i]
  local allowed, remaining, reset_at, retry_after = 0, 0, window_end, 0

  if algorithm == 1 then
    local used = 0
    local stored = redis.call('HMGET', key, 's', 'u')
    local same = stored[1] and tonumber(stored[1]) == window_start
    if same then used = tonumber(stored[2]) end
    if used + cost <= limit then
      allowed = 1
      used = used + cost
      writes[#writes + 1] = {1, key, window_start, used, window_end - now, window_end, same}
    else
      retry_after = window_end - now
    end
    remaining = math.max(limit - used, 0)
  elseif algorithm == 2 then
    local stored = redis.call('HMGET', key, 's', 'c', 'p')
    local current, previous = 0, 0
    local stored_start = tonumber(stored[1] or '-1')
    if stored_start == window_start then
      current, previous = tonumber(stored[2]), tonumber(stored[3])
    elseif stored_start == window_start - length then
      previous = tonumber(stored[2])
    end
    local overlap = window_end - now
    local weighted = math.ceil(previous * overlap / length)
    if weighted + current + cost <= limit then
      allowed = 1
      current = current + cost
      writes[#writes + 1] = {2, key, window_start, current, previous, overlap + length,
                             stored_start == window_start}
    else
      local room = limit - current - cost
      if room >= 0 and previous > 0 then
        retry_after = math.max(1, math.min(overlap, overlap - math.floor(room * length / previous)))
      else
        retry_after = overlap
      end
    end
    remaining = math.max(limit - weighted - current, 0)
    reset_at = window_end + length
  elseif algorithm == 3 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - length)
    local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    local total = 0
    for j = 1, #entries, 2 do
      total = total + tonumber(string.match(entries[j], '^[^:]*:(-?%d+)'))
    end
    if total + cost <= limit then
      allowed = 1
      if cost > 0 then
        total = total + cost
        writes[#writes + 1] = {3, key, now, nonce .. '-' .. i .. ':' .. cost, length}
      end
      if #entries > 0 then reset_at = tonumber(entries[#entries]) + length else reset_at = now + length end
    else
      local freed = 0
      retry_after = length
      for j = 1, #entries, 2 do
        freed = freed + tonumber(string.match(entries[j], '^[^:]*:(-?%d+)'))
        if total - freed + cost <= limit then
          retry_after = math.max(1, tonumber(entries[j + 1]) + length - now)
          break
        end
      end
      reset_at = tonumber(entries[#entries]) + length
    end
    remaining = math.max(limit - total, 0)
  else
    -- GCRA, in microseconds as doubles (exact to 2^53).
    local interval = length / limit
    local capacity = (burst > 0 and burst or limit) * interval
    local tat = tonumber(redis.call('GET', key) or '0')
    if tat < now then tat = now end
    local new_tat = tat + cost * interval
    local used = tat - now
    if new_tat - now <= capacity then
      allowed = 1
      used = new_tat - now
      writes[#writes + 1] = {4, key, new_tat, new_tat - now}
      reset_at = new_tat
    else
      retry_after = math.max(1, new_tat - capacity - now)
      reset_at = tat
    end
    remaining = math.floor((capacity - used) / interval + 1e-9)
  end

  if allowed == 0 then all_allowed = 0 end
  out[#out + 1] = allowed
  out[#out + 1] = math.floor(remaining)
  out[#out + 1] = math.floor(reset_at)
  out[#out + 1] = math.floor(retry_after)
end

for i = 1, n_slots do
  local key = KEYS[n_limits + i]
  local max = tonumber(ARGV[7 + n_limits * 6 + i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local held = redis.call('ZCARD', key)
  if held < max then
    out[#out + 1] = 1
    out[#out + 1] = max - held - 1
    out[#out + 1] = 0
    out[#out + 1] = 0
  else
    all_allowed = 0
    out[#out + 1] = 0
    out[#out + 1] = 0
    out[#out + 1] = 0
    out[#out + 1] = 1000000
  end
end

if all_allowed == 1 then
  for _, write in ipairs(writes) do
    local kind, key = write[1], write[2]
    if kind == 1 then
      redis.call('HSET', key, 's', write[3], 'u', write[4])
      if not write[7] then expire(key, write[5], write[6]) end
    elseif kind == 2 then
      redis.call('HSET', key, 's', write[3], 'c', write[4], 'p', write[5])
      if not write[7] then expire(key, write[6], 0) end
    elseif kind == 3 then
      redis.call('ZADD', key, write[3], write[4])
      expire(key, write[5], 0)
    else
      redis.call('SET', key, string.format('%.6f', write[3]), 'PX', math.ceil(write[4] / 1000) + 1000)
    end
  end
  for i = 1, n_slots do
    local key = KEYS[n_limits + i]
    redis.call('ZADD', key, hold_until, nonce)
    redis.call('PEXPIRE', key, math.max(math.ceil((hold_until - now) / 1000), 0) + 1000)
  end
  if payload ~= '' then
    local record = KEYS[n_limits + n_slots + 1]
    redis.call('HSET', record, 's', 'o', 'b', payload)
    redis.call('PEXPIRE', record, record_ttl)
  end
end
out[1] = all_allowed
return out
