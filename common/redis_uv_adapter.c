/* redis_uv_adapter: hiredis 0.14's event hooks (addRead, delRead, addWrite,
 * delWrite, cleanup) on a uv_poll_t and a uv_prepare_t. */
#include "redis_uv_adapter.h"
#include "util.h"

#include <stdbool.h>
#include <stdlib.h>

struct adapter {
    redisAsyncContext *ac; /* NULL once hiredis has let go of us */
    uv_poll_t poll;
    uv_prepare_t flush; /* one write per loop turn, before the loop waits */
    int polled;         /* events last given to uv_poll_start; 0: stopped */
    bool want_read;
    bool want_write; /* poll for UV_WRITABLE: connecting, or a write left data */
    bool flushing;   /* inside redisAsyncHandleWrite */
    int handles_open;
};

static void on_poll(uv_poll_t *h, int status, int events);

/* Restarts the poll only when the events change: libuv turns every
 * uv_poll_start into epoll_ctl calls, even with the same events. */
static void set_events(struct adapter *a)
{
    int want = (a->want_read ? UV_READABLE : 0) | (a->want_write ? UV_WRITABLE : 0);
    if (want == a->polled)
        return;
    if (want)
        uv_poll_start(&a->poll, want, on_poll);
    else
        uv_poll_stop(&a->poll);
    a->polled = want;
}

static void handle_write(struct adapter *a)
{
    a->flushing = true;
    redisAsyncHandleWrite(a->ac); /* may free ac: then cleanup ran, a->ac is NULL */
    a->flushing = false;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct adapter *a = h->data;
    if (!a->ac)
        return;
    if (status < 0) {
        /* libuv stopped the handle (a socket error): let hiredis read the
         * error (or finish a failed connect), then poll again if it goes on. */
        a->polled = 0;
        if (a->ac->c.flags & REDIS_CONNECTED)
            redisAsyncHandleRead(a->ac);
        else
            handle_write(a);
        if (a->ac)
            set_events(a);
        return;
    }
    if (events & UV_READABLE)
        redisAsyncHandleRead(a->ac);
    if (a->ac && (events & UV_WRITABLE))
        handle_write(a);
}

static void on_flush(uv_prepare_t *h)
{
    struct adapter *a = h->data;
    uv_prepare_stop(h);
    if (a->ac && !a->want_write)
        handle_write(a);
}

static void add_read(void *data)
{
    struct adapter *a = data;
    a->want_read = true;
    set_events(a);
}

static void del_read(void *data)
{
    struct adapter *a = data;
    a->want_read = false;
    set_events(a);
}

/* hiredis calls this after queueing a command, and from inside
 * redisAsyncHandleWrite when the socket took only part of the buffer. */
static void add_write(void *data)
{
    struct adapter *a = data;
    if (a->flushing || !(a->ac->c.flags & REDIS_CONNECTED)) {
        /* Until connected, writing waits for the socket (hiredis finishes the
         * connect in redisAsyncHandleWrite); after a partial write, the rest
         * waits for room in the socket. */
        a->want_write = true;
        set_events(a);
    } else if (!a->want_write) {
        uv_prepare_start(&a->flush, on_flush);
    }
}

static void del_write(void *data)
{
    struct adapter *a = data;
    a->want_write = false;
    set_events(a);
}

static void on_closed(uv_handle_t *h)
{
    struct adapter *a = h->data;
    if (--a->handles_open == 0)
        free(a);
}

static void cleanup(void *data)
{
    struct adapter *a = data;
    a->ac->ev.data = NULL;
    a->ac = NULL;
    uv_close((uv_handle_t *)&a->poll, on_closed);
    uv_close((uv_handle_t *)&a->flush, on_closed);
}

int redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    if (ac->ev.data)
        return -1;
    struct adapter *a = xcalloc(1, sizeof *a);
    if (uv_poll_init(loop, &a->poll, ac->c.fd) != 0) {
        free(a);
        return -1;
    }
    uv_prepare_init(loop, &a->flush);
    a->poll.data = a->flush.data = a;
    a->handles_open = 2;
    a->ac = ac;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    ac->ev.data = a;
    return 0;
}
