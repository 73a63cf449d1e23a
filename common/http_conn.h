/* http_conn: the connections of http_server, shared by its two files:
 * http_server.c (accepting, reading, parsing, dispatching, timers) and
 * http_output.c (answers: formatting, writing, the output limit, closing
 * after the last answer). Nothing else includes it.
 *
 * Life of a connection: IDLE (between requests) -> READING (a request has
 * begun) -> HANDLING (the handler owns the request; nothing is parsed, so
 * pipelined requests wait in `in` and are answered in order; reading goes on
 * while `in` holds less than INPUT_LIMIT, so that the socket's poll is not
 * changed for every request) -> IDLE again, or CLOSING. The struct is freed only when both handles are closed and no
 * request or write refers to it (`refs`). */
#ifndef SURGE_HTTP_CONN_H
#define SURGE_HTTP_CONN_H

#include "buf.h"
#include "http_listener.h"
#include "http_parse.h"
#include "http_server.h"

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

enum conn_state { CONN_IDLE, CONN_READING, CONN_HANDLING, CONN_CLOSING };
enum timer_purpose { TIMER_NONE, TIMER_IDLE, TIMER_HEADERS, TIMER_LINGER };

#define READ_CHUNK 4096
#define LINGER_MS 1000 /* time a closing connection is read from */
/* Memory held by answers not yet sent above which a connection is not read.
 * 1 024 connections (SURGE_MAX_CONNECTIONS) at the worst case stay under the
 * 32 MiB the api promises; test_limits.py measures it. */
#define OUTPUT_LIMIT (16 * 1024)
/* Unparsed input above which a connection whose handler is still working is
 * not read further: what the client sends next waits in the kernel. */
#define INPUT_LIMIT (16 * 1024)

struct http_conn {
    uv_tcp_t tcp; /* first: the handle's address is the connection's */
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    struct http_server *server;
    struct http_conn *prev, *next;
    struct http_parse parse;
    enum conn_state state;
    enum timer_purpose timer_purpose;
    int refs; /* open handles + outstanding request + writes in flight */
    bool in_process;
    bool in_lent; /* `in` is the server's read buffer, for one on_read */
    bool keep_alive;
    bool lingering;
    bool writing;            /* a write is in flight */
    bool close_after_output; /* shut down once `out` and the write are done */
    bool out_blocked;        /* reading stopped until the output drains */
    bool peer_done;          /* the client half-closed while a request was handled */
    size_t out_writing;      /* memory held by the write in flight */
    struct buf in;           /* received, not yet parsed */
    struct buf out;          /* answers not handed to libuv yet */
    struct http_request req;
};

struct http_server {
    struct http_listener *listener;
    char read_buf[READ_CHUNK]; /* lent to one connection at a time (on_alloc) */
    bool read_buf_lent;
    struct buf scratch; /* an answer being written at once (http_output.c) */
    uv_loop_t *loop;
    struct http_server_opts opts;
    struct http_conn *conns;
    size_t n_conns;
    size_t in_flight;
    bool draining;
    bool listener_closed;
    void (*done)(void *);
    void *done_arg;
};

/* ---- http_server.c ---- */

/* Drops a reference (handles, the request, writes); the last one frees the
 * connection. */
void http_conn_unref(struct http_conn *c);
/* Closes both handles, once; pending writes are cancelled. */
void http_conn_close(struct http_conn *c);
/* (Re)starts the connection's one timer for that purpose. */
void http_conn_timer_start(struct http_conn *c, enum timer_purpose purpose, int ms);
/* Parses what is buffered and dispatches complete requests one at a time;
 * reads on, or stops reading, as the state and the output limit say. */
void http_conn_process_input(struct http_conn *c);

/* ---- http_output.c ---- */

/* Memory the connection holds for answers not yet sent. */
size_t http_conn_output_held(const struct http_conn *c);
/* Closes now, or once the answers already queued are sent. */
void http_conn_close_when_sent(struct http_conn *c);
/* Queues one answer (no body after a HEAD); with close_after, the connection
 * is shut down once it is sent. */
void http_conn_send_response(struct http_conn *c, int status, const char *content_type,
                             const char *extra_headers, const char *body, size_t body_len,
                             bool close_after);
/* Answers an error found before any handler ran, then closes. */
void http_conn_send_early_error(struct http_conn *c, int status, const char *code,
                                const char *msg);

#endif
