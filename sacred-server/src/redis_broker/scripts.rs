//! The Lua scripts the Redis broker and presence store run. Each runs
//! atomically on its shard, which is what makes an offset, its stream entry
//! and its pub/sub message one step.

/// Publish with a stream. KEYS: stream, meta. ARGV: payload, size cap,
/// stream TTL (s), meta TTL (s), epoch for a new stream, pub/sub channel.
/// Returns `{offset, epoch}`; the pub/sub message is
/// `p<offset>:<epoch>:<payload>`.
pub(crate) const PUBLISH: &str = r#"
local epoch = redis.call("hget", KEYS[2], "e")
if not epoch then
  epoch = ARGV[5]
  redis.call("hset", KEYS[2], "e", epoch)
end
local offset = redis.call("hincrby", KEYS[2], "s", 1)
redis.call("expire", KEYS[2], ARGV[4])
redis.call("xadd", KEYS[1], "MAXLEN", ARGV[2], "0-" .. offset, "d", ARGV[1])
redis.call("expire", KEYS[1], ARGV[3])
redis.call("publish", ARGV[6], "p" .. offset .. ":" .. epoch .. ":" .. ARGV[1])
return {offset, epoch}
"#;

/// Read a stream. KEYS: stream, meta. ARGV: epoch for a new stream, meta TTL
/// (s), `since` offset (or "" for none), limit (or "" for all), "1" for
/// newest first. Returns `{epoch, top, first offset after since (0: none),
/// entries}` where entries are `[id, [field, value]]` as XRANGE gives them.
pub(crate) const READ: &str = r#"
local epoch = redis.call("hget", KEYS[2], "e")
if not epoch then
  epoch = ARGV[1]
  redis.call("hset", KEYS[2], "e", epoch)
  redis.call("expire", KEYS[2], ARGV[2])
end
local top = tonumber(redis.call("hget", KEYS[2], "s") or "0")
local low = "-"
local first = 0
if ARGV[3] ~= "" then
  low = "(0-" .. ARGV[3]
  local after = redis.call("xrange", KEYS[1], low, "+", "COUNT", 1)
  if #after > 0 then
    first = tonumber(string.match(after[1][1], "^0%-(%d+)$"))
  end
end
local entries = {}
if ARGV[4] ~= "0" then
  local args
  if ARGV[5] == "1" then
    args = {"xrevrange", KEYS[1], "+", low}
  else
    args = {"xrange", KEYS[1], low, "+"}
  end
  if ARGV[4] ~= "" then
    table.insert(args, "COUNT")
    table.insert(args, ARGV[4])
  end
  entries = redis.call(unpack(args))
end
return {epoch, top, first, entries}
"#;

/// Record presence. KEYS: expiry set, data hash. ARGV: expires at (ms),
/// client id, payload, key TTL (s).
pub(crate) const PRESENCE_ADD: &str = r#"
redis.call("zadd", KEYS[1], ARGV[1], ARGV[2])
redis.call("hset", KEYS[2], ARGV[2], ARGV[3])
redis.call("expire", KEYS[1], ARGV[4])
redis.call("expire", KEYS[2], ARGV[4])
return 1
"#;

/// Forget presence. KEYS: expiry set, data hash. ARGV: client id.
pub(crate) const PRESENCE_REMOVE: &str = r#"
redis.call("zrem", KEYS[1], ARGV[1])
redis.call("hdel", KEYS[2], ARGV[1])
return 1
"#;

/// Drop expired entries, then return what is left. KEYS: expiry set, data
/// hash. ARGV: now (ms), "1" for the count only.
pub(crate) const PRESENCE_LIST: &str = r#"
local expired = redis.call("zrangebyscore", KEYS[1], "-inf", ARGV[1])
for _, client in ipairs(expired) do
  redis.call("hdel", KEYS[2], client)
end
redis.call("zremrangebyscore", KEYS[1], "-inf", ARGV[1])
if ARGV[2] == "1" then
  return redis.call("hlen", KEYS[2])
end
return redis.call("hvals", KEYS[2])
"#;

/// Record a user's connection. KEYS: the user's set. ARGV: expires at (ms),
/// client id, key TTL (s).
pub(crate) const USER_ADD: &str = r#"
redis.call("zadd", KEYS[1], ARGV[1], ARGV[2])
redis.call("expire", KEYS[1], ARGV[3])
return 1
"#;

/// Count a user's live connections. KEYS: the user's set. ARGV: now (ms).
pub(crate) const USER_COUNT: &str = r#"
redis.call("zremrangebyscore", KEYS[1], "-inf", ARGV[1])
return redis.call("zcard", KEYS[1])
"#;
