/* http_parse: turns bytes into HTTP/1.1 requests with llhttp (compiled in from
 * Debian's node-llhttp, strict mode), enforcing the limits (header bytes, body
 * bytes, a length on requests with a body) and refusing what could smuggle a
 * request past a proxy that reads it another way.
 * No I/O here: http_server.c feeds it, and unit tests feed it directly. */
#ifndef SURGE_HTTP_PARSE_H
#define SURGE_HTTP_PARSE_H

#include "buf.h"

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>

/* Bytes of an Idempotency-Key value kept: more than any valid key with its
 * quotes and spaces, so a longer one is still seen as too long. */
#define HTTP_PARSE_IDEM_BYTES 512

/* Where http_parse is in the header section, looking for line folding. */
enum http_scan { SCAN_START, SCAN_LINE, SCAN_LINE_START, SCAN_CR, SCAN_DONE };

/* The headers http_parse reads for the routes; every other one is skipped. */
enum http_field { FIELD_OTHER, FIELD_CONTENT_TYPE, FIELD_IDEMPOTENCY_KEY };

enum http_parse_result {
    HTTP_PARSE_INCOMPLETE, /* every byte used; more are needed */
    HTTP_PARSE_DONE,       /* a request is complete; bytes after it are left */
    HTTP_PARSE_ERROR       /* answer error_status and close */
};

struct http_parse {
    llhttp_t parser;
    size_t max_header_bytes;
    size_t max_body_bytes;
    struct buf url;
    struct buf body;
    struct buf content_type;
    struct buf idem_key;
    int idem_keys;  /* Idempotency-Key headers received */
    char field[16]; /* the current header name, enough to spot those we read */
    size_t field_len;
    enum http_field field_kind; /* of the header whose value is being read */
    enum http_scan scan;        /* where the look for line folding is */
    size_t header_bytes;
    bool head;     /* the current request's method is HEAD: answers carry no body */
    bool begun;    /* a byte of the current request has arrived */
    bool complete; /* the current request is complete */
    bool keep_alive;
    int error_status;
    const char *error_code;
    const char *error_message;
};

/* A complete request, pointing into the parser's buffers (valid until
 * http_parse_next or http_parse_free). */
struct http_parsed {
    enum llhttp_method method;
    char *path; /* NUL-terminated, without query or fragment */
    size_t path_len;
    const char *body; /* NUL-terminated */
    size_t body_len;
    bool has_content_type;
    bool json_content_type; /* application/json, parameters allowed */
    bool keep_alive;
    const char *idempotency_key; /* NUL-terminated value as received, NULL if none */
    size_t idempotency_key_len;  /* at most HTTP_PARSE_IDEM_BYTES */
    int idempotency_keys;        /* how many Idempotency-Key headers came */
};

void http_parse_init(struct http_parse *p, size_t max_header_bytes, size_t max_body_bytes);
void http_parse_free(struct http_parse *p);
/* Parses data[0..len); *used says how many bytes were taken. After DONE,
 * call http_parse_take() and then http_parse_next() before feeding more. */
enum http_parse_result http_parse_feed(struct http_parse *p, const char *data, size_t len,
                                       size_t *used);
/* Fills out from the complete request. Returns 0, or -1 (error_status set)
 * if the request target is not a path. */
int http_parse_take(struct http_parse *p, struct http_parsed *out);
/* Gets ready for the next request on the same connection. */
void http_parse_next(struct http_parse *p);
/* The request did not arrive in time: turns into a 408 error if it had begun;
 * returns whether it had. */
bool http_parse_timed_out(struct http_parse *p);

#endif
