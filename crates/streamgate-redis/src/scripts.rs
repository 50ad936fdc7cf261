//! The Lua scripts: each runs atomically on the server, in one round trip,
//! on the server's clock (`TIME`), so every replica sees one window.
//!
//! Keys of one (backend, model):
//! - `KEYS[1]` usage: a hash of slot number → tokens;
//! - `KEYS[2]` reservation expiries: a sorted set of id → expiry (ms);
//! - `KEYS[3]` reservation sizes: a hash of id → tokens.
//!
//! The window has the local meter's semantics, in slots of `window / 60`:
//! tokens recorded in slot `s` count while the current slot `n` satisfies
//! `n - s <= 60`. Reservations older than their TTL (a replica that died
//! holding them) are dropped before every decision.

/// `ARGV`: tokens, limit, slot length (ms), slots, reservation TTL (ms),
/// reservation id. Returns `{1, use}` when reserved, `{0, retry_ms}` when
/// not (`retry_ms` is -1 when expiry alone cannot make room).
pub(crate) const RESERVE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tokens = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local slot_ms = tonumber(ARGV[3])
local slots = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local current = math.floor(now / slot_ms)
local oldest = current - slots + 1

local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #dead > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('HDEL', KEYS[3], unpack(dead))
end

local used = 0
local live = {}
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local slot = tonumber(fields[i])
  if slot < oldest then
    redis.call('HDEL', KEYS[1], fields[i])
  else
    local n = tonumber(fields[i + 1])
    used = used + n
    table.insert(live, {slot, n})
  end
end
local reserved = 0
local sizes = redis.call('HVALS', KEYS[3])
for i = 1, #sizes do reserved = reserved + tonumber(sizes[i]) end

local wanted = used + reserved + tokens
if wanted > limit then
  local need = wanted - limit
  table.sort(live, function(a, b) return a[1] < b[1] end)
  local freed = 0
  for _, entry in ipairs(live) do
    freed = freed + entry[2]
    if freed >= need then
      return {0, (entry[1] + slots) * slot_ms - now}
    end
  end
  return {0, -1}
end

redis.call('HSET', KEYS[3], ARGV[6], tokens)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[6])
local keep = slots * slot_ms + ttl
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], keep)
redis.call('PEXPIRE', KEYS[3], keep)
return {1, wanted}
";

/// `ARGV`: used tokens, reservation id, slot length (ms), slots. Drops the
/// reservation (if it is still there) and records the use in the current
/// slot.
pub(crate) const RECONCILE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local used = tonumber(ARGV[1])
local slot_ms = tonumber(ARGV[3])
local slots = tonumber(ARGV[4])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
if used > 0 then
  redis.call('HINCRBY', KEYS[1], math.floor(now / slot_ms), used)
  redis.call('PEXPIRE', KEYS[1], slots * slot_ms)
end
return 1
";

/// Returns the window's use plus the live reservations. `ARGV`: slot
/// length (ms), slots.
pub(crate) const CURRENT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slot_ms = tonumber(ARGV[1])
local slots = tonumber(ARGV[2])
local oldest = math.floor(now / slot_ms) - slots + 1
local total = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if tonumber(fields[i]) >= oldest then total = total + tonumber(fields[i + 1]) end
end
local live = redis.call('ZRANGEBYSCORE', KEYS[2], now, '+inf')
for _, id in ipairs(live) do
  local n = redis.call('HGET', KEYS[3], id)
  if n then total = total + tonumber(n) end
end
return total
";

/// Deletes `KEYS[1]` (a probe lease) only if it holds `ARGV[1]` (this
/// replica), so a replica never releases another's lease.
pub(crate) const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";
