/* scripts: Lua for atomic job state changes (see scripts.h). */
#include "scripts.h"

const char script_start[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'type') == 0 then\n"
    "  redis.call('HSET', KEYS[1], 'status', 'dead', 'error', ARGV[5], 'finished_at', ARGV[2])\n"
    "  redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
    "  redis.call('LREM', KEYS[2], 1, ARGV[3])\n"
    "  redis.call('LPUSH', KEYS[3], ARGV[3])\n"
    "  return 'missing'\n"
    "end\n"
    "local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)\n"
    "redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[2], 'worker', ARGV[1])\n"
    "redis.call('HDEL', KEYS[1], 'retry_at')\n"
    "local f = redis.call('HMGET', KEYS[1], 'type', 'params', 'created_at')\n"
    "return {f[1], f[2] or '', tostring(attempts), f[3] or ''}\n";

const char script_succeed[] =
    "redis.call('HSET', KEYS[1], 'status', 'succeeded', 'result', ARGV[2], 'finished_at', "
    "ARGV[3])\n"
    "redis.call('HDEL', KEYS[1], 'error', 'retry_at')\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
    "redis.call('LREM', KEYS[2], 1, ARGV[1])\n"
    "return 'succeeded'\n";

const char script_fail[] =
    "local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')\n"
    "local outcome\n"
    "redis.call('HSET', KEYS[1], 'error', ARGV[2], 'finished_at', ARGV[3])\n"
    "if ARGV[6] == '0' then\n"
    "  redis.call('HSET', KEYS[1], 'status', 'failed')\n"
    "  redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
    "  outcome = 'failed'\n"
    "elseif attempts >= tonumber(ARGV[5]) then\n"
    "  redis.call('HSET', KEYS[1], 'status', 'dead')\n"
    "  redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
    "  redis.call('LPUSH', KEYS[4], ARGV[1])\n"
    "  outcome = 'dead'\n"
    "else\n"
    "  redis.call('HSET', KEYS[1], 'status', 'failed', 'retry_at', ARGV[6])\n"
    "  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[1])\n"
    "  outcome = 'retry'\n"
    "end\n"
    "redis.call('LREM', KEYS[2], 1, ARGV[1])\n"
    "return outcome\n";

const char script_requeue[] =
    "if redis.call('LREM', KEYS[2], 1, ARGV[1]) == 1 then\n"
    "  redis.call('RPUSH', KEYS[3], ARGV[1])\n"
    "  if redis.call('EXISTS', KEYS[1]) == 1 then\n"
    "    redis.call('HSET', KEYS[1], 'status', 'queued')\n"
    "    if ARGV[2] == '1' then redis.call('HINCRBY', KEYS[1], 'attempts', -1) end\n"
    "  end\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

const char script_promote[] =
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)\n"
    "for _, id in ipairs(ids) do\n"
    "  redis.call('ZREM', KEYS[1], id)\n"
    "  redis.call('HSET', ARGV[2] .. 'job:' .. id, 'status', 'queued')\n"
    "  redis.call('LPUSH', KEYS[2], id)\n"
    "end\n"
    "return #ids\n";

const char script_recover[] =
    "if ARGV[1] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "local n = 0\n"
    "while true do\n"
    "  local id = redis.call('LMOVE', KEYS[2], KEYS[3], 'RIGHT', 'RIGHT')\n"
    "  if not id then break end\n"
    "  redis.call('HSET', ARGV[2] .. 'job:' .. id, 'status', 'queued')\n"
    "  n = n + 1\n"
    "end\n"
    "return n\n";
