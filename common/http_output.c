/* http_output: the answers of http_server (see http_conn.h), and the
 * http_respond* functions of http_server.h.
 *
 * An answer to a connection with nothing waiting to be sent is formatted in
 * the server's scratch buffer and written at once (uv_try_write); only what
 * the socket did not take is kept, in the connection's `out`. Answers are
 * appended to `out` while anything waits; one write at a time is handed to
 * libuv, and what piles up meanwhile goes out in the next one. A
 * client that does not read its answers is not served further: while the
 * answers waiting to be sent hold OUTPUT_LIMIT bytes of memory or more,
 * http_conn_process_input reads and dispatches nothing, so a connection
 * holds at most about OUTPUT_LIMIT plus one answer (buffers grow by
 * doubling: 20 KiB at worst for answers of the public port); on_write
 * resumes it as they drain. */
#include "http_conn.h"
#include "json_writer.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define SCRATCH_KEPT (64 * 1024)

struct write_req {
    uv_write_t req;
    struct http_conn *conn;
    struct buf data;
};

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
        http_conn_close(stream->data);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct http_conn *c = req->data;
    if (status < 0 || uv_is_closing((uv_handle_t *)&c->tcp)) {
        http_conn_close(c);
        http_conn_unref(c);
        return;
    }
    /* Read and drop what the client still sends, so that closing does not
     * reset the connection before it has read our answer. */
    c->lingering = true;
    uv_read_start((uv_stream_t *)&c->tcp, linger_read_alloc, linger_read);
    http_conn_timer_start(c, TIMER_LINGER, LINGER_MS);
    http_conn_unref(c);
}

/* Memory this connection holds for answers not yet sent. */
size_t http_conn_output_held(const struct http_conn *c)
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
        http_conn_close(c);
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
        http_conn_close(c);
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
        http_conn_close(c);
    } else {
        flush_output(c);
        if (c->out_blocked && http_conn_output_held(c) < OUTPUT_LIMIT) {
            /* The client reads again: go on with what it sent. */
            c->out_blocked = false;
            http_conn_process_input(c);
        }
    }
    http_conn_unref(c);
}

/* Closes now, or once the answers already queued are sent. */
void http_conn_close_when_sent(struct http_conn *c)
{
    if (http_conn_output_held(c) == 0) {
        http_conn_close(c);
        return;
    }
    c->state = CONN_CLOSING;
    c->close_after_output = true;
}

/* Writes what `b` holds now, as far as the socket takes it, and keeps the
 * rest in `out` for flush_output; empties `b`. An error (the client gone)
 * leaves everything to the queued write, which reports it in on_write: the
 * connection is never closed under its caller's feet. */
static void write_now(struct http_conn *c, struct buf *b)
{
    uv_buf_t ub = uv_buf_init(b->data, (unsigned)b->len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &ub, 1);
    if (n < 0)
        n = 0; /* UV_EAGAIN, or an error seen again by uv_write */
    if ((size_t)n < b->len)
        buf_append(&c->out, b->data + n, b->len - (size_t)n);
    if (b->cap > SCRATCH_KEPT)
        buf_free(b); /* a rare large answer does not stay in memory */
    else
        buf_reset(b);
}

/* Queues one answer. A HEAD answer has the headers of the GET, Content-Length
 * included, and no body: keep-alive clients frame the next answer by it. */
void http_conn_send_response(struct http_conn *c, int status, const char *content_type,
                          const char *extra_headers, const char *body, size_t body_len,
                          bool close_after)
{
    static const char cache_close[] = "Cache-Control: no-store\r\nConnection: close\r\n";
    static const char cache[] = "Cache-Control: no-store\r\n";
    struct http_server *s = c->server;
    bool head = c->parse.head;
    bool at_once = !c->writing && c->out.len == 0 && !uv_is_closing((uv_handle_t *)&c->tcp);
    struct buf *b = at_once ? &s->scratch : &c->out;
    buf_append(b, "HTTP/1.1 ", 9);
    buf_append_uint(b, (unsigned)status);
    buf_append(b, " ", 1);
    buf_puts(b, http_status_text(status));
    buf_append(b, "\r\n", 2);
    buf_append(b, "Content-Type: ", 14);
    buf_puts(b, content_type);
    buf_append(b, "\r\n", 2);
    buf_append(b, "Content-Length: ", 16);
    buf_append_uint(b, body_len);
    buf_append(b, "\r\n", 2);
    if (close_after)
        buf_append(b, cache_close, sizeof cache_close - 1);
    else
        buf_append(b, cache, sizeof cache - 1);
    if (extra_headers)
        buf_puts(b, extra_headers);
    buf_append(b, "\r\n", 2);
    if (body_len && !head)
        buf_append(b, body, body_len);
    if (close_after)
        c->close_after_output = true;
    if (at_once)
        write_now(c, b);
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
void http_conn_send_early_error(struct http_conn *c, int status, const char *code, const char *msg)
{
    struct buf body = {0};
    error_body(&body, code, msg);
    struct http_server *s = c->server;
    uv_timer_stop(&c->timer);
    c->state = CONN_CLOSING;
    http_conn_send_response(c, status, "application/json", NULL, body.data, body.len, true);
    if (s->opts.observe) {
        c->req.route = "invalid";
        s->opts.observe(&c->req, status, s->opts.ctx);
    }
    buf_free(&body);
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
        http_conn_unref(c);
        return;
    }
    /* A half-closed client's last answer (nothing of it left to parse) says
     * Connection: close. */
    bool keep = c->keep_alive && !s->draining && !(c->peer_done && c->in.len == 0);
    http_conn_send_response(c, status, content_type, extra_headers, body, body_len, !keep);
    if (!keep || c->state == CONN_CLOSING) { /* CLOSING: the write could not be queued */
        c->state = CONN_CLOSING;
        http_conn_unref(c);
        return;
    }
    c->state = CONN_IDLE;
    http_parse_next(&c->parse);
    http_conn_timer_start(c, TIMER_IDLE, s->opts.idle_timeout_ms);
    http_conn_unref(c);
    http_conn_process_input(c);
}

void http_respond_error(struct http_request *req, int status, const char *code,
                        const char *message, const char *extra_headers)
{
    struct buf body = {0};
    error_body(&body, code, message);
    http_respond(req, status, extra_headers, body.data, body.len);
    buf_free(&body);
}
