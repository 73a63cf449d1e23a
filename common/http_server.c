/* http_server: HTTP/1.1 on libuv, parsed by http_parse. See http_server.h.
 *
 * Life of a connection: IDLE (between requests) -> READING (a request has
 * begun) -> HANDLING (the handler owns the request; reading is stopped, so
 * pipelined requests wait in `in` and are answered in order) -> IDLE again,
 * or CLOSING. The struct is freed only when both handles are closed and no
 * request or write refers to it (`refs`).
 *
 * Output: answers are appended to `out`; one write at a time is handed to
 * libuv, and what piles up meanwhile goes out in the next one. A client that
 * does not read its answers is not served further: while the answers waiting
 * to be sent hold OUTPUT_LIMIT bytes of memory or more, no request is read or
 * dispatched, so a connection holds at most about OUTPUT_LIMIT plus one answer
 * (buffers grow by doubling: 20 KiB at worst for answers of the public port). */
#include "http_server.h"
#include "buf.h"
#include "http_parse.h"
#include "json_writer.h"
#include "log.h"
#include "util.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum conn_state { CONN_IDLE, CONN_READING, CONN_HANDLING, CONN_CLOSING };
enum timer_purpose { TIMER_NONE, TIMER_IDLE, TIMER_HEADERS, TIMER_LINGER };

#define READ_CHUNK 4096
#define LINGER_MS 1000
/* Memory held by answers not yet sent above which a connection is not read.
 * 1 024 connections (SURGE_MAX_CONNECTIONS) at the worst case stay under the
 * 32 MiB the api promises; test_limits.py measures it. */
#define OUTPUT_LIMIT (16 * 1024)

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
    size_t out_writing;      /* memory held by the write in flight */
    struct buf in;           /* received, not yet parsed */
    struct buf out;          /* answers not handed to libuv yet */
    struct http_request req;
};

struct http_server {
    struct http_listener *listener;
    char read_buf[READ_CHUNK]; /* lent to one connection at a time (on_alloc) */
    bool read_buf_lent;
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

struct write_req {
    uv_write_t req;
    struct http_conn *conn;
    struct buf data;
};

static void conn_close(struct http_conn *c);
static void process_input(struct http_conn *c);
static void maybe_finish_shutdown(struct http_server *s);

/* ---- bookkeeping ---- */

static void conn_unref(struct http_conn *c)
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
    conn_unref(h->data);
}

static void timer_start(struct http_conn *c, enum timer_purpose purpose, int ms);

static void conn_close(struct http_conn *c)
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
        conn_close(c);
        return;
    }
    switch (c->timer_purpose) {
    case TIMER_HEADERS:
        if (c->state != CONN_HANDLING && http_parse_timed_out(&c->parse)) {
            process_input(c);
            return;
        }
        conn_close(c);
        return;
    case TIMER_IDLE:
    case TIMER_LINGER:
        conn_close(c);
        return;
    case TIMER_NONE:
        return;
    }
}

static void timer_start(struct http_conn *c, enum timer_purpose purpose, int ms)
{
    c->timer_purpose = purpose;
    uv_timer_start(&c->timer, on_timer, (uint64_t)ms, 0);
}

/* ---- writing ---- */

const char *http_status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

static void linger_read_alloc(uv_handle_t *h, size_t size, uv_buf_t *b)
{
    (void)h;
    (void)size;
    static char sink[READ_CHUNK];
    *b = uv_buf_init(sink, sizeof sink);
}

static void linger_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
    (void)b;
    if (nread < 0)
        conn_close(stream->data);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct http_conn *c = req->data;
    if (status < 0 || uv_is_closing((uv_handle_t *)&c->tcp)) {
        conn_close(c);
        conn_unref(c);
        return;
    }
    /* Read and drop what the client still sends, so that closing does not
     * reset the connection before it has read our answer. */
    c->lingering = true;
    uv_read_start((uv_stream_t *)&c->tcp, linger_read_alloc, linger_read);
    timer_start(c, TIMER_LINGER, LINGER_MS);
    conn_unref(c);
}

/* Memory this connection holds for answers not yet sent. */
static size_t output_held(const struct http_conn *c)
{
    return c->out.cap + c->out_writing;
}

static void start_shutdown(struct http_conn *c)
{
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->refs++;
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        c->refs--;
        conn_close(c);
    }
}

static void on_write(uv_write_t *req, int status);

/* Hands what `out` holds to libuv unless a write is in flight (on_write comes
 * back here); with nothing left to send, shuts down if that was asked for. */
static void flush_output(struct http_conn *c)
{
    if (c->writing || uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (c->out.len == 0) {
        if (c->close_after_output) {
            c->close_after_output = false;
            start_shutdown(c);
        }
        return;
    }
    struct write_req *w = xcalloc(1, sizeof *w);
    w->conn = c;
    w->data = c->out; /* the write owns these bytes now */
    memset(&c->out, 0, sizeof c->out);
    c->writing = true;
    c->out_writing = w->data.cap;
    uv_buf_t b = uv_buf_init(w->data.data, (unsigned)w->data.len);
    c->refs++;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) {
        /* libuv does not call back when the write could not be queued. */
        c->refs--;
        c->writing = false;
        c->out_writing = 0;
        buf_free(&w->data);
        free(w);
        conn_close(c);
    }
}

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct http_conn *c = w->conn;
    buf_free(&w->data);
    free(w);
    c->writing = false;
    c->out_writing = 0;
    if (status < 0) {
        conn_close(c);
    } else {
        flush_output(c);
        if (c->out_blocked && output_held(c) < OUTPUT_LIMIT) {
            /* The client reads again: go on with what it sent. */
            c->out_blocked = false;
            process_input(c);
        }
    }
    conn_unref(c);
}

/* Closes now, or once the answers already queued are sent. */
static void close_when_sent(struct http_conn *c)
{
    if (output_held(c) == 0) {
        conn_close(c);
        return;
    }
    c->state = CONN_CLOSING;
    c->close_after_output = true;
}

/* Queues one answer. A HEAD answer has the headers of the GET, Content-Length
 * included, and no body: keep-alive clients frame the next answer by it. */
static void send_response(struct http_conn *c, int status, const char *content_type,
                          const char *extra_headers, const char *body, size_t body_len,
                          bool close_after)
{
    bool head = c->parse.head;
    buf_printf(&c->out,
               "HTTP/1.1 %d %s\r\n"
               "Content-Type: %s\r\n"
               "Content-Length: %zu\r\n"
               "Cache-Control: no-store\r\n"
               "%s"
               "%s\r\n",
               status, http_status_text(status), content_type, body_len,
               close_after ? "Connection: close\r\n" : "", extra_headers ? extra_headers : "");
    if (body_len && !head)
        buf_append(&c->out, body, body_len);
    if (close_after)
        c->close_after_output = true;
    flush_output(c);
}

static void error_body(struct buf *out, const char *code, const char *message)
{
    struct json_writer w;
    jw_init(&w, out);
    jw_object_begin(&w);
    jw_key(&w, "error");
    jw_object_begin(&w);
    jw_key_string(&w, "code", code);
    jw_key_string(&w, "message", message);
    jw_object_end(&w);
    jw_object_end(&w);
}

/* Answers an error found before any handler ran, then closes. */
static void send_early_error(struct http_conn *c, int status, const char *code, const char *msg)
{
    struct buf body = {0};
    error_body(&body, code, msg);
    struct http_server *s = c->server;
    uv_timer_stop(&c->timer);
    c->state = CONN_CLOSING;
    send_response(c, status, "application/json", NULL, body.data, body.len, true);
    if (s->opts.observe) {
        c->req.route = "invalid";
        s->opts.observe(&c->req, status, s->opts.ctx);
    }
    buf_free(&body);
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

void http_respond(struct http_request *req, int status, const char *extra_headers,
                  const char *body, size_t body_len)
{
    http_respond_typed(req, status, "application/json", extra_headers, body, body_len);
}

void http_respond_typed(struct http_request *req, int status, const char *content_type,
                        const char *extra_headers, const char *body, size_t body_len)
{
    struct http_conn *c = req->conn;
    struct http_server *s = c->server;
    s->in_flight--;
    if (s->opts.observe)
        s->opts.observe(req, status, s->opts.ctx);
    if (c->state == CONN_CLOSING) {
        /* The client went away while we worked. */
        conn_unref(c);
        return;
    }
    bool keep = c->keep_alive && !s->draining;
    send_response(c, status, content_type, extra_headers, body, body_len, !keep);
    if (!keep) {
        c->state = CONN_CLOSING;
        conn_unref(c);
        return;
    }
    c->state = CONN_IDLE;
    http_parse_next(&c->parse);
    timer_start(c, TIMER_IDLE, s->opts.idle_timeout_ms);
    conn_unref(c);
    process_input(c);
}

void http_respond_error(struct http_request *req, int status, const char *code,
                        const char *message, const char *extra_headers)
{
    struct buf body = {0};
    error_body(&body, code, message);
    http_respond(req, status, extra_headers, body.data, body.len);
    buf_free(&body);
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
        process_input(c);
        struct buf rest = {0};
        if (c->in.len)
            buf_append(&rest, c->in.data, c->in.len);
        c->in = rest;
        c->in_lent = false;
    } else if (nread > 0) {
        c->in.len += (size_t)nread;
        process_input(c);
    }
    if (lent)
        s->read_buf_lent = false;
    if (nread < 0) {
        /* EOF or error. A handler still working will find CLOSING. */
        conn_close(c);
    }
}

/* Parses what is buffered, dispatching complete requests one at a time. */
static void process_input(struct http_conn *c)
{
    if (c->in_process)
        return; /* called back from inside the loop below; it goes on by itself */
    c->in_process = true;
    c->refs++; /* keep c alive even if a handler closes it */
    while (c->state == CONN_IDLE || c->state == CONN_READING) {
        if (output_held(c) >= OUTPUT_LIMIT) {
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
                    timer_start(c, TIMER_HEADERS, c->server->opts.header_timeout_ms);
            }
            break;
        }
        if (r == HTTP_PARSE_ERROR || dispatch(c) < 0) {
            send_early_error(c, c->parse.error_status, c->parse.error_code,
                             c->parse.error_message);
            break;
        }
    }
    bool open = (c->state == CONN_IDLE || c->state == CONN_READING) && !c->out_blocked;
    if (open && c->server->draining && c->state == CONN_IDLE && c->in.len == 0) {
        close_when_sent(c);
        open = false;
    }
    if (open && !c->lingering) {
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    } else if (!c->lingering && !uv_is_closing((uv_handle_t *)&c->tcp)) {
        /* HANDLING: pipelined input waits; CLOSING: nothing more is read;
         * blocked: the client must read its answers first. */
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    if (c->in.len == 0 && !c->in_lent)
        buf_free(&c->in); /* an idle connection holds no input buffer */
    c->in_process = false;
    conn_unref(c);
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
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    http_parse_init(&c->parse, s->opts.max_header_bytes, s->opts.max_body_bytes);
    c->state = CONN_IDLE;
    /* A new connection must send its request within the headers deadline. */
    timer_start(c, TIMER_HEADERS, s->opts.header_timeout_ms);
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
            close_when_sent(c);
        } else if (c->out_blocked) {
            /* A client that does not read its answers gets the linger time
             * to take them, not the whole grace period. Its requests still
             * unread were never accepted. */
            c->state = CONN_CLOSING;
            c->close_after_output = true;
            timer_start(c, TIMER_LINGER, LINGER_MS);
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
