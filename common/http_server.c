/* http_server: HTTP/1.1 on libuv, parsed by http_parse. See http_server.h;
 * the connections' state is in http_conn.h, their answers in http_output.c. */
#include "http_conn.h"
#include "log.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void maybe_finish_shutdown(struct http_server *s);

/* ---- bookkeeping ---- */

void http_conn_unref(struct http_conn *c)
{
    if (--c->refs > 0)
        return;
    struct http_server *s = c->server;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
    if (s->opts.on_conn_event)
        s->opts.on_conn_event(s->opts.name, HTTP_CONN_CLOSED, 0, s->n_conns);
    buf_free(&c->in);
    buf_free(&c->out);
    http_parse_free(&c->parse);
    free(c);
    maybe_finish_shutdown(s);
}

static void on_handle_closed(uv_handle_t *h)
{
    http_conn_unref(h->data);
}

void http_conn_close(struct http_conn *c)
{
    if (c->state == CONN_CLOSING && uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    c->state = CONN_CLOSING;
    uv_timer_stop(&c->timer);
    if (!uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

/* ---- timers ---- */

static void on_timer(uv_timer_t *t)
{
    struct http_conn *c = t->data;
    if (c->out_blocked) {
        /* Its answers have not been read for that long: give up on it. */
        http_conn_close(c);
        return;
    }
    switch (c->timer_purpose) {
    case TIMER_HEADERS:
        if (c->state != CONN_HANDLING && http_parse_timed_out(&c->parse)) {
            http_conn_process_input(c);
            return;
        }
        http_conn_close(c);
        return;
    case TIMER_IDLE:
    case TIMER_LINGER:
        http_conn_close(c);
        return;
    case TIMER_NONE:
        return;
    }
}

void http_conn_timer_start(struct http_conn *c, enum timer_purpose purpose, int ms)
{
    c->timer_purpose = purpose;
    uv_timer_start(&c->timer, on_timer, (uint64_t)ms, 0);
}

/* ---- dispatch ---- */

/* Hands the complete request to the handler. Returns -1 if it was not valid. */
static int dispatch(struct http_conn *c)
{
    struct http_server *s = c->server;
    struct http_parsed parsed;
    if (http_parse_take(&c->parse, &parsed) < 0)
        return -1;
    struct http_request *r = &c->req;
    memset(r, 0, sizeof *r);
    r->method = parsed.method;
    r->path = parsed.path;
    r->path_len = parsed.path_len;
    r->body = parsed.body;
    r->body_len = parsed.body_len;
    r->has_content_type = parsed.has_content_type;
    r->json_content_type = parsed.json_content_type;
    r->idempotency_key = parsed.idempotency_key;
    r->idempotency_key_len = parsed.idempotency_key_len;
    r->idempotency_keys = parsed.idempotency_keys;
    r->route = "other";
    r->started = util_mono_seconds();
    r->conn = c;
    c->keep_alive = parsed.keep_alive;

    c->state = CONN_HANDLING;
    c->refs++; /* the request */
    s->in_flight++;
    uv_timer_stop(&c->timer);
    c->timer_purpose = TIMER_NONE;
    s->opts.handler(r, s->opts.ctx);
    return 0;
}

/* ---- reading ---- */

/* A connection with nothing buffered reads into the server's one read
 * buffer: the parser copies what it keeps, so only bytes left unparsed (a
 * request cut short, pipelined requests waiting) need memory of the
 * connection's own. libuv calls on_read right after on_alloc, before any
 * other connection reads. */
static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *b)
{
    (void)size;
    struct http_conn *c = h->data;
    struct http_server *s = c->server;
    if (c->in.len == 0 && !s->read_buf_lent) {
        s->read_buf_lent = true;
        *b = uv_buf_init(s->read_buf, sizeof s->read_buf);
        return;
    }
    /* One byte less than the chunk: with buf's terminating NUL an empty
     * buffer then takes exactly READ_CHUNK bytes. */
    *b = uv_buf_init(buf_reserve(&c->in, READ_CHUNK - 1), READ_CHUNK - 1);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
    struct http_conn *c = stream->data;
    struct http_server *s = c->server;
    bool lent = b->base == s->read_buf;
    if (nread > 0 && lent) {
        /* Parse from the shared buffer, then keep what is left. */
        c->in = (struct buf){.data = s->read_buf, .len = (size_t)nread, .cap = sizeof s->read_buf};
        c->in_lent = true;
        http_conn_process_input(c);
        struct buf rest = {0};
        if (c->in.len)
            buf_append(&rest, c->in.data, c->in.len);
        c->in = rest;
        c->in_lent = false;
    } else if (nread > 0) {
        c->in.len += (size_t)nread;
        http_conn_process_input(c);
    }
    if (lent)
        s->read_buf_lent = false;
    if (nread == UV_EOF && c->state == CONN_HANDLING) {
        /* A half-closed client (shutdown(SHUT_WR) after its request) still
         * waits for its answers: read nothing more, answer what it sent, the
         * last answer with Connection: close, then close. */
        c->peer_done = true;
        uv_read_stop(stream);
    } else if (nread < 0) {
        /* EOF or error. A handler still working will find CLOSING. */
        http_conn_close(c);
    }
}

/* Parses what is buffered, dispatching complete requests one at a time. */
void http_conn_process_input(struct http_conn *c)
{
    if (c->in_process)
        return; /* called back from inside the loop below; it goes on by itself */
    c->in_process = true;
    c->refs++; /* keep c alive even if a handler closes it */
    while (c->state == CONN_IDLE || c->state == CONN_READING) {
        if (http_conn_output_held(c) >= OUTPUT_LIMIT) {
            /* The client does not read its answers: read nothing more from
             * it until they drain (on_write resumes). */
            c->out_blocked = true;
            break;
        }
        size_t used;
        enum http_parse_result r = http_parse_feed(&c->parse, c->in.data, c->in.len, &used);
        buf_consume(&c->in, used);
        if (r == HTTP_PARSE_INCOMPLETE) {
            if (c->parse.begun && c->state == CONN_IDLE) {
                /* A request has begun: it must be complete by the deadline.
                 * The first request's deadline already runs since accept;
                 * restarting it here would give a slow client twice as long. */
                c->state = CONN_READING;
                if (c->timer_purpose != TIMER_HEADERS)
                    http_conn_timer_start(c, TIMER_HEADERS, c->server->opts.header_timeout_ms);
            }
            break;
        }
        if (r == HTTP_PARSE_ERROR || dispatch(c) < 0) {
            http_conn_send_early_error(c, c->parse.error_status, c->parse.error_code,
                             c->parse.error_message);
            break;
        }
    }
    bool open = (c->state == CONN_IDLE || c->state == CONN_READING) && !c->out_blocked;
    if (c->state == CONN_HANDLING) {
        /* Reading goes on while the handler works (stopping and starting it
         * costs two epoll_ctl per request); what arrives waits in `in`,
         * unparsed, up to a bound. */
        open = c->in.len < INPUT_LIMIT && http_conn_output_held(c) < OUTPUT_LIMIT;
    }
    if (c->peer_done) {
        /* Everything the client sent is answered: nothing more will come. */
        if (c->state == CONN_IDLE || c->state == CONN_READING)
            http_conn_close_when_sent(c);
        open = false;
    }
    if (open && c->server->draining && c->state == CONN_IDLE && c->in.len == 0) {
        http_conn_close_when_sent(c);
        open = false;
    }
    if (open && !c->lingering) {
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    } else if (!c->lingering && !uv_is_closing((uv_handle_t *)&c->tcp)) {
        /* HANDLING past the bound: pipelined input waits in the kernel;
         * CLOSING or half-closed: nothing more is read; blocked: the client
         * must read its answers first. */
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    if (c->in.len == 0 && !c->in_lent)
        buf_free(&c->in); /* an idle connection holds no input buffer */
    c->in_process = false;
    http_conn_unref(c);
}

/* ---- accepting ---- */

static size_t open_count(void *arg)
{
    return ((struct http_server *)arg)->n_conns;
}

static void on_accept(int fd, void *arg)
{
    struct http_server *s = arg;
    struct http_conn *c = xcalloc(1, sizeof *c);
    c->server = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->refs = 2; /* the two handles */
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    if (s->opts.on_conn_event)
        s->opts.on_conn_event(s->opts.name, HTTP_CONN_OPENED, 0, s->n_conns);
    int rc = uv_tcp_open(&c->tcp, fd);
    if (rc < 0) {
        log_warn("accept_failed", "%s: %s", s->opts.name, uv_strerror(rc));
        close(fd); /* not the handle's yet */
        http_conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    http_parse_init(&c->parse, s->opts.max_header_bytes, s->opts.max_body_bytes);
    c->state = CONN_IDLE;
    /* A new connection must send its request within the headers deadline. */
    http_conn_timer_start(c, TIMER_HEADERS, s->opts.header_timeout_ms);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int http_server_start(struct http_server **out, uv_loop_t *loop,
                      const struct http_server_opts *opts)
{
    struct http_server *s = xcalloc(1, sizeof *s);
    s->loop = loop;
    s->opts = *opts;
    struct http_listener_opts lo = {
        .name = opts->name,
        .address = opts->address,
        .port = opts->port,
        .max_connections = opts->max_connections,
        .open_count = open_count,
        .on_accept = on_accept,
        .on_event = opts->on_conn_event,
        .arg = s,
    };
    int rc = http_listener_start(&s->listener, loop, &lo);
    if (rc < 0) {
        free(s);
        return rc;
    }
    log_info("listening", "%s on %s:%d, at most %zu connections", opts->name, opts->address,
             opts->port, opts->max_connections);
    *out = s;
    return 0;
}

static void maybe_finish_shutdown(struct http_server *s)
{
    if (!s->draining || !s->listener_closed || s->n_conns > 0)
        return;
    void (*done)(void *) = s->done;
    void *arg = s->done_arg;
    s->done = NULL;
    buf_free(&s->scratch);
    free(s);
    if (done)
        done(arg);
}

static void on_listener_closed(void *arg)
{
    struct http_server *s = arg;
    s->listener_closed = true;
    maybe_finish_shutdown(s);
}

void http_server_shutdown(struct http_server *s, void (*done)(void *), void *arg)
{
    if (s->draining)
        return;
    s->draining = true;
    s->done = done;
    s->done_arg = arg;
    for (struct http_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CONN_IDLE && c->in.len == 0) {
            http_conn_close_when_sent(c);
        } else if (c->out_blocked) {
            /* A client that does not read its answers gets the linger time
             * to take them, not the whole grace period. Its requests still
             * unread were never accepted. */
            c->state = CONN_CLOSING;
            c->close_after_output = true;
            http_conn_timer_start(c, TIMER_LINGER, LINGER_MS);
        }
    }
    http_listener_close(s->listener, on_listener_closed, s);
}

size_t http_server_in_flight(const struct http_server *s)
{
    return s->in_flight;
}

size_t http_server_connections(const struct http_server *s)
{
    return s->n_conns;
}
