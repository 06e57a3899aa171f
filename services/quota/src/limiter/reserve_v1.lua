-- gateway_quota_reserve_v1: evaluates every limit and concurrency slot of
-- one request and, only if all admit, consumes from every limit, takes every
-- slot and keeps the reservation's record, atomically (one script, one call).
-- KEYS: one counter per limit, then one sorted set per slot, then the record
-- (when kept). All are hash-tagged by tenant, so a cluster keeps them in one
-- slot. Times are microseconds, expiries milliseconds.
--
-- Every number the script only stores or compares arrives as the text to
-- store (window starts, costs, expiries), computed by the caller: turning
-- numbers into text and back took a tenth of Redis's time in a profile.
-- For the same reason the window counters return their raw counts and the
-- caller derives remaining, reset and retry-after, as the memory backend
-- does.
--
-- ARGV: now, nonce (the holder name), limit count, slot count, hold until,
-- record payload ('' = none), record expiry, slot expiry; then eight values
-- per limit: algorithm, limit, cost, then by algorithm
--   1 fixed window:   window start, expiry ('' = never: the lifetime window)
--   2 sliding window: window start, previous window start, overlap (window
--                     end - now), length, expiry
--   3 sliding log:    length, expiry
--   4 GCRA:           length, burst
-- (unused values are ''); then one per slot: max.
-- Returns: all_allowed, then four values per limit: allowed and, by
-- algorithm, 1: used; 2: current, previous; 3 and 4: remaining, reset_at,
-- retry_after; then per slot: allowed, held.
local now_text = ARGV[1]
local now = tonumber(now_text)
local nonce = ARGV[2]
local n_limits = tonumber(ARGV[3])
local n_slots = tonumber(ARGV[4])
local out = {0}
local writes = {}
local all_allowed = 1

local function log_total(entries)
  local total = 0
  for j = 1, #entries, 2 do
    total = total + tonumber(string.match(entries[j], '^[^:]*:(-?%d+)'))
  end
  return total
end

-- When the newest entry leaves the log (now for an empty log).
local function log_reset(entries, length)
  if #entries == 0 then return now end
  return tonumber(entries[#entries]) + length
end

-- Sliding log: the entries are members "nonce-i:cost" scored by time.
local function sliding_log(i, key, limit, cost, base)
  local length = tonumber(ARGV[base + 4])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - length)
  local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local total = log_total(entries)
  if total + cost <= limit then
    if cost > 0 then
      total = total + cost
      writes[#writes + 1] = {'ZADD', key, now_text, nonce .. '-' .. i .. ':' .. ARGV[base + 3]}
      writes[#writes + 1] = {'PEXPIRE', key, ARGV[base + 5]}
    end
    if cost > 0 then return 1, math.max(limit - total, 0), now + length, 0 end
    return 1, math.max(limit - total, 0), log_reset(entries, length), 0
  end
  local freed, retry_after = 0, length
  for j = 1, #entries, 2 do
    freed = freed + tonumber(string.match(entries[j], '^[^:]*:(-?%d+)'))
    if total - freed + cost <= limit then
      retry_after = math.max(1, tonumber(entries[j + 1]) + length - now)
      break
    end
  end
  return 0, math.max(limit - total, 0), log_reset(entries, length), retry_after
end

-- GCRA, in microseconds as doubles (exact to 2^53).
local function gcra(key, limit, cost, base)
  local length, burst = tonumber(ARGV[base + 4]), tonumber(ARGV[base + 5])
  local interval = length / limit
  local capacity = (burst > 0 and burst or limit) * interval
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + cost * interval
  if new_tat - now <= capacity then
    local expiry = math.ceil((new_tat - now) / 1000) + 1000
    writes[#writes + 1] = {'SET', key, string.format('%.6f', new_tat), 'PX', expiry}
    return 1, math.floor((capacity - (new_tat - now)) / interval + 1e-9), new_tat, 0
  end
  -- Counted past the bucket (usage settled above its estimate): none left.
  return 0, math.max(math.floor((capacity - (tat - now)) / interval + 1e-9), 0), tat,
         math.max(1, new_tat - capacity - now)
end

-- Fixed window: the hash {s = window start, u = used}.
local function fixed_window(key, limit, cost, base)
  local start = ARGV[base + 4]
  local stored = redis.call('HMGET', key, 's', 'u')
  local same = stored[1] == start
  local used = same and tonumber(stored[2]) or 0
  if used + cost > limit then return 0, used, 0 end
  if same then
    if cost > 0 then writes[#writes + 1] = {'HINCRBY', key, 'u', ARGV[base + 3]} end
  else
    writes[#writes + 1] = {'HSET', key, 's', start, 'u', ARGV[base + 3]}
    if ARGV[base + 5] ~= '' then writes[#writes + 1] = {'PEXPIRE', key, ARGV[base + 5]} end
  end
  return 1, used, 0
end

-- Sliding window: the hash {s = window start, c = its count, p = the
-- previous window's}.
local function sliding_window(key, limit, cost, base)
  local start = ARGV[base + 4]
  local stored = redis.call('HMGET', key, 's', 'c', 'p')
  local same, rolled = stored[1] == start, stored[1] == ARGV[base + 5]
  local current, previous = 0, 0
  if same then
    current, previous = tonumber(stored[2]), tonumber(stored[3])
  elseif rolled then
    previous = tonumber(stored[2])
  end
  local overlap, length = tonumber(ARGV[base + 6]), tonumber(ARGV[base + 7])
  if math.ceil(previous * overlap / length) + current + cost > limit then
    return 0, current, previous
  end
  if same then
    if cost > 0 then writes[#writes + 1] = {'HINCRBY', key, 'c', ARGV[base + 3]} end
  else
    local kept = rolled and stored[2] or '0'
    writes[#writes + 1] = {'HSET', key, 's', start, 'c', ARGV[base + 3], 'p', kept}
    writes[#writes + 1] = {'PEXPIRE', key, ARGV[base + 8]}
  end
  return 1, current, previous
end

local evaluate = {['1'] = fixed_window, ['2'] = sliding_window}

for i = 1, n_limits do
  local base = 8 + (i - 1) * 8
  local algorithm = ARGV[base + 1]
  local limit, cost = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local key = KEYS[i]
  local allowed, a, b, c = 0, 0, 0, 0
  if algorithm == '3' then
    allowed, a, b, c = sliding_log(i, key, limit, cost, base)
  elseif algorithm == '4' then
    allowed, a, b, c = gcra(key, limit, cost, base)
  else
    allowed, a, b = evaluate[algorithm](key, limit, cost, base)
  end

  if allowed == 0 then all_allowed = 0 end
  out[#out + 1] = allowed
  out[#out + 1] = math.floor(a)
  out[#out + 1] = math.floor(b)
  out[#out + 1] = math.floor(c)
end

for i = 1, n_slots do
  local key = KEYS[n_limits + i]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_text)
  local held = redis.call('ZCARD', key)
  if held < tonumber(ARGV[8 + n_limits * 8 + i]) then
    out[#out + 1] = 1
  else
    all_allowed = 0
    out[#out + 1] = 0
  end
  out[#out + 1] = held
  out[#out + 1] = 0
  out[#out + 1] = 0
end

if all_allowed == 1 then
  for _, write in ipairs(writes) do
    redis.call(unpack(write))
  end
  for i = 1, n_slots do
    local key = KEYS[n_limits + i]
    redis.call('ZADD', key, ARGV[5], nonce)
    redis.call('PEXPIRE', key, ARGV[8])
  end
  if ARGV[6] ~= '' then
    local record = KEYS[n_limits + n_slots + 1]
    redis.call('HSET', record, 's', 'o', 'b', ARGV[6])
    redis.call('PEXPIRE', record, ARGV[7])
  end
end
out[1] = all_allowed
return out
