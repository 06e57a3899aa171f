-- gateway_quota_adjust_v1: settles counters after a reservation or lease.
-- KEYS: one counter per adjustment, then the slot sets to leave.
-- A negative delta gives back what still counts; a positive one is counted
-- now, past the limit if need be (the usage happened). As in the reserve
-- script, what is only stored or compared arrives as text; counts change
-- with HINCRBY. Times in microseconds, expiries in milliseconds.
-- ARGV: now, nonce (the slot holder, and a unique log member prefix),
-- adjustment count, then eight values per adjustment: algorithm, delta
-- (never 0), then by algorithm (unused values are '')
--   1 fixed window:   admitted window start, current window start, expiry
--                     ('' = never: the lifetime window)
--   2 sliding window: admitted window start, current window start, expiry,
--                     the window start after the admitted one, the window
--                     start before the current one
--   3 sliding log:    admitted at, length, expiry
--   4 GCRA:           limit, length
local now = tonumber(ARGV[1])
local nonce = ARGV[2]
local n = tonumber(ARGV[3])

-- Lowers a count by `delta` (< 0) without going below zero.
local function give_back(key, field, stored, delta)
  if tonumber(stored) + tonumber(delta) >= 0 then
    redis.call('HINCRBY', key, field, delta)
  else
    redis.call('HSET', key, field, '0')
  end
end

local function fixed_window(key, delta, base)
  local stored = redis.call('HMGET', key, 's', 'u')
  if string.sub(delta, 1, 1) == '-' then
    if stored[1] == ARGV[base + 3] then give_back(key, 'u', stored[2], delta) end
  elseif stored[1] == ARGV[base + 4] then
    redis.call('HINCRBY', key, 'u', delta)
  else
    redis.call('HSET', key, 's', ARGV[base + 4], 'u', delta)
    if ARGV[base + 5] ~= '' then redis.call('PEXPIRE', key, ARGV[base + 5]) end
  end
end

local function sliding_window(key, delta, base)
  local stored = redis.call('HMGET', key, 's', 'c', 'p')
  if string.sub(delta, 1, 1) == '-' then
    if stored[1] == ARGV[base + 3] then
      give_back(key, 'c', stored[2], delta)
    elseif stored[1] == ARGV[base + 6] then
      give_back(key, 'p', stored[3], delta)
    end
  elseif stored[1] == ARGV[base + 4] then
    redis.call('HINCRBY', key, 'c', delta)
  else
    local kept = stored[1] == ARGV[base + 7] and stored[2] or '0'
    redis.call('HSET', key, 's', ARGV[base + 4], 'c', delta, 'p', kept)
    redis.call('PEXPIRE', key, ARGV[base + 5])
  end
end

local function sliding_log(i, key, delta, base)
  local member = nonce .. '-a' .. i .. ':' .. delta
  if string.sub(delta, 1, 1) == '-' then
    -- A negative entry at the admission time leaves the log together
    -- with the amount it cancels.
    local admitted_at = tonumber(ARGV[base + 3])
    if admitted_at > now - tonumber(ARGV[base + 4]) and redis.call('EXISTS', key) == 1 then
      redis.call('ZADD', key, ARGV[base + 3], member)
    end
  else
    redis.call('ZADD', key, ARGV[1], member)
    redis.call('PEXPIRE', key, ARGV[base + 5])
  end
end

local function gcra(key, delta, base)
  local interval = tonumber(ARGV[base + 4]) / tonumber(ARGV[base + 3])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  tat = math.max(tat + tonumber(delta) * interval, now)
  if tat > now then
    redis.call('SET', key, string.format('%.6f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  else
    redis.call('DEL', key)
  end
end

for i = 1, n do
  local base = 3 + (i - 1) * 8
  local algorithm, delta, key = ARGV[base + 1], ARGV[base + 2], KEYS[i]
  if algorithm == '1' then
    fixed_window(key, delta, base)
  elseif algorithm == '2' then
    sliding_window(key, delta, base)
  elseif algorithm == '3' then
    sliding_log(i, key, delta, base)
  else
    gcra(key, delta, base)
  end
end

for i = n + 1, #KEYS do
  redis.call('ZREM', KEYS[i], nonce)
end
return 1
