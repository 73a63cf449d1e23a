/* scripts: Lua for atomic job state changes (see scripts.h). The key names
 * come from common/job.c as KEYS, or as the prefix "surge:job:" to which a
 * script appends an id it found in a list, or "surge:queue:" to which it
 * appends a job's type. Keep each command name in single
 * quotes right after redis.call(: test/k8s reads the commands from here to
 * check the Redis ACL (k8s/base/redis/users.acl.in). */
#include "scripts.h"
#include "job.h"

/* The id goes to the head of the dead list, once, and the list keeps at most
 * max ids: the oldest fall off the end. */
#define LUA_DEAD_PUSH                                                                              \
    "local function dead_push(dead, id, max)\n"                                                    \
    "  redis.call('LREM', dead, 0, id)\n"                                                          \
    "  redis.call('LPUSH', dead, id)\n"                                                            \
    "  redis.call('LTRIM', dead, 0, tonumber(max) - 1)\n"                                          \
    "end\n"

/* The queue of a job of type t: the queue prefix ("surge:queue:") and the
 * type, for each type common/job.h names; an id whose job has no such type
 * (no readable hash) goes to the first type's queue, where the take moves it
 * to the dead list, or fails it for good (a type no worker knows). */
#define LUA_TYPE_NAME(e, name) "'" name "', "
#define LUA_QUEUE_OF                                                                               \
    "local job_types = {" JOB_TYPES(LUA_TYPE_NAME) "}\n"                                           \
    "local function queue_of(prefix, t)\n"                                                          \
    "  for _, k in ipairs(job_types) do\n"                                                          \
    "    if k == t then return prefix .. t end\n"                                                   \
    "  end\n"                                                                                       \
    "  return prefix .. job_types[1]\n"                                                             \
    "end\n"

/* An id taken off a worker's processing list goes back on the queue of its
 * job's type when that worker's take is the current one (the job runs under
 * its name) or it never started it (status queued, or no readable hash: the
 * next take sends that to the dead list). Otherwise the entry is stale
 * (another take holds the job, or the job has ended) and is dropped. A
 * running take is revoked: its lease moves on, so an outcome of that take
 * changes nothing. seen keeps one id from going back twice. Returns whether
 * the id went back, and the job's type. */
#define LUA_PUT_BACK                                                                               \
    LUA_QUEUE_OF                                                                                   \
    "local function put_back(id, job, queues, worker, seen)\n"                                     \
    "  local f = redis.call('HMGET', job, 'type', 'status', 'worker')\n"                           \
    "  local ours = not f[1] or not f[2] or f[2] == 'queued'\n"                                    \
    "    or (f[2] == 'running' and f[3] == worker)\n"                                              \
    "  if seen[id] or not ours then return false, f[1] or '' end\n"                                \
    "  seen[id] = true\n"                                                                          \
    "  redis.call('RPUSH', queue_of(queues, f[1]), id)\n"                                          \
    "  if f[1] then\n"                                                                             \
    "    redis.call('HSET', job, 'status', 'queued')\n"                                            \
    "    if f[2] == 'running' then redis.call('HINCRBY', job, 'lease', 1) end\n"                   \
    "  end\n"                                                                                      \
    "  return true, f[1] or ''\n"                                                                  \
    "end\n"

/* The take: up to ARGV[7] ids move from the queue (KEYS[1]) to our list
 * (KEYS[2]) one LMOVE each, and every id, those and any ARGV[8..] a BLMOVE
 * already moved there, is started in the same script. start() is the start
 * of one id: checked in our list (the orphan check may have put it back) and
 * waiting to run, it is marked running under a new lease with its attempt
 * counted; an id without a readable hash goes to the dead list. */
const char script_take[] =
    LUA_DEAD_PUSH
    "local function start(id)\n"
    "  local job = ARGV[6] .. id\n"
    "  if not redis.call('LPOS', KEYS[2], id) then return 'stale' end\n"
    "  local f = redis.call('HMGET', job, 'type', 'status', 'params', 'created_at')\n"
    "  if not f[1] then\n"
    "    redis.call('HSET', job, 'status', 'dead', 'error', ARGV[4], 'finished_at', ARGV[2])\n"
    "    redis.call('EXPIRE', job, ARGV[3])\n"
    "    redis.call('LREM', KEYS[2], 1, id)\n"
    "    dead_push(KEYS[3], id, ARGV[5])\n"
    "    return 'missing'\n"
    "  end\n"
    /* Running under another take, waiting for a retry, or ended: not ours to
     * run; the orphan check deals with our list's entry. */
    "  if f[2] and f[2] ~= 'queued' then return 'stale ' .. f[1] end\n"
    "  local lease = redis.call('HINCRBY', job, 'lease', 1)\n"
    "  local attempts = redis.call('HINCRBY', job, 'attempts', 1)\n"
    "  redis.call('HSET', job, 'status', 'running', 'started_at', ARGV[2], 'worker', ARGV[1])\n"
    "  redis.call('HDEL', job, 'retry_at')\n"
    "  return {f[1], f[3] or '', tostring(attempts), f[4] or '', tostring(lease)}\n"
    "end\n"
    "local out, empty = {}, 0\n"
    "for i = 8, #ARGV do out[#out + 1] = {ARGV[i], start(ARGV[i])} end\n"
    "for _ = 1, tonumber(ARGV[7]) do\n"
    "  local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')\n"
    "  if not id then empty = 1 break end\n"
    "  out[#out + 1] = {id, start(id)}\n"
    "end\n"
    "return {empty, out}\n";

/* The outcomes, one Lua function each: K holds the keys, A the arguments
 * (scripts.h, script_outcomes). Each changes the job only while it runs
 * under the lease A[2]; a copy of the same call that ran before finds its
 * own write and answers what it recorded, written 0. */
#define LUA_SUCCEED                                                                                \
    "local function succeed(K, A)\n"                                                               \
    "  local f = redis.call('HMGET', K[1], 'lease', 'status')\n"                                   \
    "  if f[1] ~= A[2] then return {'stale', 0} end\n"                                             \
    "  if f[2] == 'succeeded' then return {'succeeded', 0} end\n"                                  \
    "  if f[2] ~= 'running' then return {'stale', 0} end\n"                                        \
    "  redis.call('HSET', K[1], 'status', 'succeeded', 'result', A[3], 'finished_at', A[4])\n"     \
    "  redis.call('HDEL', K[1], 'error', 'retry_at')\n"                                            \
    "  redis.call('EXPIRE', K[1], A[5])\n"                                                         \
    "  redis.call('LREM', K[2], 1, A[1])\n"                                                        \
    "  return {'succeeded', 1}\n"                                                                  \
    "end\n"

#define LUA_FAIL                                                                                   \
    "local function fail(K, A)\n"                                                                  \
    "  local f = redis.call('HMGET', K[1], 'lease', 'status', 'retry_at', 'attempts')\n"           \
    "  if f[1] ~= A[2] then return {'stale', 0} end\n"                                             \
    "  if f[2] == 'running' then\n"                                                                \
    "    local outcome\n"                                                                          \
    "    redis.call('HSET', K[1], 'error', A[3], 'finished_at', A[4])\n"                           \
    "    if A[7] == '0' then\n"                                                                    \
    "      redis.call('HSET', K[1], 'status', 'failed')\n"                                         \
    "      redis.call('EXPIRE', K[1], A[5])\n"                                                     \
    "      outcome = 'failed'\n"                                                                   \
    "    elseif A[9] == '1' and tonumber(f[4] or '0') >= tonumber(A[6]) then\n"                    \
    "      redis.call('HSET', K[1], 'status', 'dead')\n"                                           \
    "      redis.call('EXPIRE', K[1], A[5])\n"                                                     \
    "      dead_push(K[4], A[1], A[8])\n"                                                          \
    "      outcome = 'dead'\n"                                                                     \
    "    else\n"                                                                                   \
    "      redis.call('HSET', K[1], 'status', 'failed', 'retry_at', A[7])\n"                       \
    "      redis.call('ZADD', K[3], A[7], A[1])\n"                                                 \
    "      outcome = 'retry'\n"                                                                    \
    "    end\n"                                                                                    \
    "    redis.call('LREM', K[2], 1, A[1])\n"                                                      \
    "    return {outcome, 1}\n"                                                                    \
    "  end\n"                                                                                      \
    /* Same lease, no longer running: a copy of this call ran before. A retry \
     * may already have come due (queued) under the same lease. */                                 \
    "  if f[2] == 'dead' then return {'dead', 0} end\n"                                            \
    "  if f[2] == 'failed' then return {f[3] and 'retry' or 'failed', 0} end\n"                    \
    "  if f[2] == 'queued' then return {'retry', 0} end\n"                                         \
    "  return {'stale', 0}\n"                                                                      \
    "end\n"

#define LUA_REQUEUE                                                                                \
    "local function requeue(K, A)\n"                                                               \
    "  local f = redis.call('HMGET', K[1], 'lease', 'status')\n"                                   \
    "  if f[1] ~= A[2] then return {'stale', 0} end\n"                                             \
    "  if f[2] == 'queued' then return {'requeued', 0} end\n"                                      \
    "  if f[2] ~= 'running' then return {'stale', 0} end\n"                                        \
    "  redis.call('LREM', K[2], 1, A[1])\n"                                                        \
    "  redis.call('RPUSH', K[3], A[1])\n"                                                          \
    "  redis.call('HSET', K[1], 'status', 'queued')\n"                                             \
    "  redis.call('HINCRBY', K[1], 'attempts', -1)\n"                                              \
    "  return {'requeued', 1}\n"                                                                   \
    "end\n"

/* Each entry of ARGV: the kind, the number of fields that follow, then the
 * kind's keys (how many: kinds) and its arguments. */
const char script_outcomes[] =
    LUA_DEAD_PUSH
    LUA_SUCCEED
    LUA_FAIL
    LUA_REQUEUE
    "local kinds = {succeed = {succeed, 2}, fail = {fail, 4}, requeue = {requeue, 3}}\n"
    "local out, i = {}, 1\n"
    "while i <= #ARGV do\n"
    "  local k, n = kinds[ARGV[i]], tonumber(ARGV[i + 1])\n"
    "  local K = {unpack(ARGV, i + 2, i + 1 + k[2])}\n"
    "  local A = {unpack(ARGV, i + 2 + k[2], i + 1 + n)}\n"
    "  out[#out + 1] = k[1](K, A)\n"
    "  i = i + 2 + n\n"
    "end\n"
    "return out\n";

const char script_promote[] =
    LUA_QUEUE_OF
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)\n"
    "local moved = 0\n"
    "for _, id in ipairs(ids) do\n"
    "  redis.call('ZREM', KEYS[1], id)\n"
    /* Only a job that still waits for its retry goes back: never an id twice. */
    "  local job = ARGV[2] .. id\n"
    "  local f = redis.call('HMGET', job, 'status', 'type')\n"
    "  if f[1] == 'failed' then\n"
    "    redis.call('HSET', job, 'status', 'queued')\n"
    "    redis.call('LPUSH', queue_of(ARGV[3], f[2]), id)\n"
    "    moved = moved + 1\n"
    "  end\n"
    "end\n"
    "return moved\n";

const char script_recover[] =
    LUA_PUT_BACK
    "if ARGV[1] == 'dead' and redis.call('EXISTS', KEYS[1]) == 1 then return {0, {}} end\n"
    "local moved, stale, seen = 0, {}, {}\n"
    "while true do\n"
    "  local id = redis.call('RPOP', KEYS[2])\n"
    "  if not id then break end\n"
    "  local back, type = put_back(id, ARGV[2] .. id, ARGV[4], ARGV[3], seen)\n"
    "  if back then moved = moved + 1 else stale[#stale + 1] = type end\n"
    "end\n"
    "if ARGV[1] ~= 'start' then redis.call('ZREM', KEYS[3], ARGV[3]) end\n"
    "if ARGV[1] == 'exit' then redis.call('DEL', KEYS[1]) end\n"
    "return {moved, stale}\n";

const char script_orphan[] =
    LUA_PUT_BACK
    "if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return {0, {}} end\n"
    "local back, type = put_back(ARGV[1], ARGV[2] .. ARGV[1], ARGV[4], ARGV[3], {})\n"
    "if back then return {1, {}} end\n"
    "return {0, {type}}\n";

const char script_beat[] =
    "redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])\n"
    "return redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])\n";

const char script_prune_dead[] =
    "local dropped = 0\n"
    "while dropped < 100 do\n"
    "  local id = redis.call('LINDEX', KEYS[1], -1)\n"
    "  if not id or redis.call('EXISTS', ARGV[1] .. id) == 1 then break end\n"
    "  redis.call('RPOP', KEYS[1])\n"
    "  dropped = dropped + 1\n"
    "end\n"
    "redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)\n"
    "return dropped\n";

const char script_migrate[] =
    LUA_QUEUE_OF
    "local ids = {}\n"
    "while #ids < 100 do\n"
    "  local id = redis.call('RPOP', KEYS[1])\n"
    "  if not id then break end\n"
    "  ids[#ids + 1] = id\n"
    "end\n"
    /* The oldest (popped first) ends at the end of its queue taken first. */
    "for i = #ids, 1, -1 do\n"
    "  local t = redis.call('HGET', ARGV[1] .. ids[i], 'type')\n"
    "  redis.call('RPUSH', queue_of(ARGV[2], t), ids[i])\n"
    "end\n"
    "return #ids\n";
