/* redis_client: one Redis connection (hiredis async, on libuv through
 * redis_uv_adapter), with what Debian's hiredis 0.14 lacks: a deadline on
 * every request, reconnection with backoff, AUTH/SELECT on every
 * (re)connect, and non-blocking name lookup.
 *
 * Every request ends in exactly one callback: the reply, or NULL with a reason
 * ("timeout", "disconnected"). A request made while disconnected is answered
 * at once, before rc_command returns. Replies are borrowed: valid only during
 * the callback. */
#ifndef SURGE_REDIS_CLIENT_H
#define SURGE_REDIS_CLIENT_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct rc;

/* reply is NULL on failure, with err saying why; a Redis error reply is
 * passed as a reply of type REDIS_REPLY_ERROR. */
typedef void (*rc_reply_fn)(redisReply *reply, const char *err, void *arg);
/* Told when the connection becomes usable (up) or is lost. */
typedef void (*rc_state_fn)(struct rc *rc, bool up, void *arg);

struct rc_opts {
    const char *name; /* for logs: "redis", "redis-fetch" */
    const char *host;
    int port;
    int db;
    const char *username; /* empty: default user */
    const char *password; /* empty: no AUTH */
    int timeout_ms;
    rc_state_fn on_state;
    void *state_arg;
};

/* Creates the client and starts connecting. Never fails (it retries). */
struct rc *rc_create(uv_loop_t *loop, const struct rc_opts *opts);
/* True once connected and authenticated. */
bool rc_is_up(const struct rc *rc);
/* Sends a command (hiredis format string). */
void rc_command(struct rc *rc, rc_reply_fn cb, void *arg, const char *fmt, ...);
/* The same with its own deadline, for blocking commands such as BLMOVE. */
void rc_command_deadline(struct rc *rc, int timeout_ms, rc_reply_fn cb, void *arg,
                         const char *fmt, ...);
/* Sends argc arguments of given lengths (lens NULL: C strings), written in
 * RESP without printf. An EVAL is sent as rc_eval sends it. */
void rc_command_argv(struct rc *rc, rc_reply_fn cb, void *arg, int argc, const char **argv,
                     const size_t *lens);
/* Runs a Lua script: argv holds what EVAL takes after the script (the key
 * count, the keys, the arguments; lens NULL: C strings). Sent as EVAL the
 * first time on a connection (loading the script), then as EVALSHA with the
 * script's SHA-1; on a NOSCRIPT answer (Redis flushed its scripts) sent again
 * as EVAL. The caller gets the answer EVAL would give, in the order of its
 * requests and within its deadline, either way. An "EVAL <script> ..." given
 * to rc_command or rc_command_argv takes the same path. */
void rc_eval(struct rc *rc, rc_reply_fn cb, void *arg, const char *script, int argc,
             const char **argv, const size_t *lens);
/* Closes the connection: pending requests are answered with "closing", then
 * the client frees itself and calls done(arg). */
void rc_close(struct rc *rc, void (*done)(void *), void *arg);

#endif
