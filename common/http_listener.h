/* http_listener: a listening TCP socket on libuv with its own accept loop,
 * for http_server. libuv's uv_listen hides what goes wrong on accept: out of
 * descriptors, it accepts and closes the waiting connections without a word.
 * Here every connection is either handed over, refused because the server is
 * at its connection limit, or lost to an accept error; the last two are
 * counted (on_event) and logged at most once per interval, and accepting goes
 * on by itself when there is room again. */
#ifndef SURGE_HTTP_LISTENER_H
#define SURGE_HTTP_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

/* What happened to a connection; reported for metrics. */
enum http_conn_event {
    HTTP_CONN_OPENED,        /* accepted and served */
    HTTP_CONN_CLOSED,        /* a served connection is gone */
    HTTP_CONN_REFUSED,       /* closed at once: the connection limit was reached */
    HTTP_CONN_ACCEPT_FAILED, /* accept failed (err: a libuv error, UV_EMFILE...) */
};

/* server: the server's name ("api", "admin"); open: connections served now. */
typedef void (*http_conn_event_fn)(const char *server, enum http_conn_event ev, int err,
                                   size_t open);

struct http_listener;

struct http_listener_opts {
    const char *name; /* for logs and events */
    const char *address;
    int port;
    size_t max_connections;
    /* Connections served now: past max_connections a new one is refused. */
    size_t (*open_count)(void *arg);
    /* Takes the new connection's descriptor (non-blocking, close-on-exec). */
    void (*on_accept)(int fd, void *arg);
    http_conn_event_fn on_event; /* may be NULL */
    void *arg;
};

/* Binds and listens. Returns 0, or a negative libuv error (logged). */
int http_listener_start(struct http_listener **out, uv_loop_t *loop,
                        const struct http_listener_opts *opts);
/* Stops accepting and closes the socket; done(arg) is called once every
 * handle is closed and the listener freed. */
void http_listener_close(struct http_listener *l, void (*done)(void *), void *arg);

#endif
