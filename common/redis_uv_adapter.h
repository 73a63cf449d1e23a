/* redis_uv_adapter: drives a hiredis 0.14 async context from a libuv loop,
 * in place of hiredis/adapters/libuv.h.
 *
 * The socket is polled for reading only. Commands queued during one loop
 * turn leave together in one write, made from a uv_prepare_t just before the
 * loop waits; the socket is polled for writing only while connecting or when
 * that write could not send everything. uv_poll_start is called only when the
 * polled events change (each call costs epoll_ctl system calls). */
#ifndef SURGE_REDIS_UV_ADAPTER_H
#define SURGE_REDIS_UV_ADAPTER_H

#include <hiredis/async.h>
#include <uv.h>

/* Attaches ac (connecting, not yet attached) to loop. Returns 0, or -1 when
 * the socket cannot be polled (nothing is left attached: the caller frees ac).
 * The adapter's state is released by hiredis's cleanup hook when ac is freed;
 * its handles close on the loop, so the loop must run once more after that. */
int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
