/* http_server: the HTTP/1.1 server both binaries use, on libuv, parsing with
 * llhttp (through http_parse). Keep-alive; pipelined requests are handled one at a time per
 * connection, so answers always go out in order. Limits are enforced here
 * before any handler runs: header size (431), body size (413, without reading
 * the body), missing length (411), header deadline (408), idle keep-alive
 * timeout (close), malformed HTTP (400), the number of connections
 * (http_listener.h) and the memory a client that does not read its answers
 * may hold. */
#ifndef SURGE_HTTP_SERVER_H
#define SURGE_HTTP_SERVER_H

#include "http_listener.h"

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct http_server;
struct http_conn;

struct http_request {
    enum llhttp_method method;
    const char *path; /* NUL-terminated, without the query string */
    size_t path_len;
    const char *body; /* NUL-terminated copy; body_len bytes */
    size_t body_len;
    bool has_content_type;
    bool json_content_type; /* application/json, parameters allowed */
    const char *idempotency_key; /* the header's value as received, NULL if none */
    size_t idempotency_key_len;
    int idempotency_keys; /* how many Idempotency-Key headers came */
    const char *route;      /* label for metrics, set by the handler ("other") */
    double started;         /* monotonic seconds when the request was complete */
    struct http_conn *conn; /* private */
};

/* Called once per complete request. The handler must call http_respond()
 * exactly once, now or later (the request stays valid until then, even if the
 * client has gone away). */
typedef void (*http_handler_fn)(struct http_request *req, void *ctx);
/* Called after each answer is queued: for metrics. May be NULL. */
typedef void (*http_observe_fn)(const struct http_request *req, int status, void *ctx);

struct http_server_opts {
    const char *name; /* for logs: "api", "admin" */
    const char *address;
    int port;
    size_t max_connections; /* past it new connections are closed at once */
    size_t max_header_bytes;
    size_t max_body_bytes;
    int header_timeout_ms;
    int idle_timeout_ms;
    http_handler_fn handler;
    http_observe_fn observe;
    http_conn_event_fn on_conn_event; /* connections opened, closed, refused; may be NULL */
    void *ctx;
};

/* Binds and listens. Returns 0, or a negative libuv error (logged). */
int http_server_start(struct http_server **out, uv_loop_t *loop,
                      const struct http_server_opts *opts);
/* Stops accepting, closes idle connections now and the others after their
 * current answer; calls done(arg) once every connection is closed and the
 * server is freed. */
void http_server_shutdown(struct http_server *s, void (*done)(void *), void *arg);
/* Requests handed to the handler and not answered yet. */
size_t http_server_in_flight(const struct http_server *s);
/* Open connections. */
size_t http_server_connections(const struct http_server *s);

/* Sends the answer: status, extra header lines (each ending in "\r\n", may be
 * NULL), a JSON body (may be NULL for none). Copies what it needs. */
void http_respond(struct http_request *req, int status, const char *extra_headers,
                  const char *body, size_t body_len);
/* The same with another Content-Type (the metrics page is text/plain). */
void http_respond_typed(struct http_request *req, int status, const char *content_type,
                        const char *extra_headers, const char *body, size_t body_len);
/* Sends {"error":{"code":...,"message":...}} with the given status. */
void http_respond_error(struct http_request *req, int status, const char *code,
                        const char *message, const char *extra_headers);

/* The reason phrase for a status ("Not Found"). */
const char *http_status_text(int status);

#endif
