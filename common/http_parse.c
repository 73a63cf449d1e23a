/* http_parse: http_parser callbacks and limits. See http_parse.h. */
#include "http_parse.h"

#include <limits.h>
#include <string.h>
#include <strings.h>

static void fail(struct http_parse *p, int status, const char *code, const char *msg)
{
    if (!p->error_status) {
        p->error_status = status;
        p->error_code = code;
        p->error_message = msg;
    }
    /* Stop parsing; http_parser refuses to pause once it is in error. */
    if (HTTP_PARSER_ERRNO(&p->parser) == HPE_OK)
        http_parser_pause(&p->parser, 1);
}

static int count_header_bytes(struct http_parse *p, size_t n)
{
    p->header_bytes += n;
    if (p->header_bytes > p->max_header_bytes) {
        fail(p, 431, "headers_too_large", "the request line and headers are too large");
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *hp)
{
    struct http_parse *p = hp->data;
    p->begun = true;
    return 0;
}

static int on_url(http_parser *hp, const char *at, size_t n)
{
    struct http_parse *p = hp->data;
    p->begun = true;
    p->head = hp->method == HTTP_HEAD; /* the method is known once the target starts */
    if (count_header_bytes(p, n) == 0)
        buf_append(&p->url, at, n);
    return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t n)
{
    struct http_parse *p = hp->data;
    if (count_header_bytes(p, n))
        return 0;
    if (p->last_was_value) {
        p->field_len = 0;
        p->last_was_value = false;
    }
    /* Names longer than the buffer are none we read; keep counting. */
    size_t room = p->field_len < sizeof p->field ? sizeof p->field - p->field_len : 0;
    if (room > 0)
        memcpy(p->field + p->field_len, at, n < room ? n : room);
    p->field_len += n;
    if (p->field_len == 12 && strncasecmp(p->field, "content-type", 12) == 0)
        p->field_kind = FIELD_CONTENT_TYPE;
    else if (p->field_len == 15 && strncasecmp(p->field, "idempotency-key", 15) == 0)
        p->field_kind = FIELD_IDEMPOTENCY_KEY;
    else
        p->field_kind = FIELD_OTHER;
    return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t n)
{
    struct http_parse *p = hp->data;
    if (count_header_bytes(p, n))
        return 0;
    bool first = !p->last_was_value; /* of this header's value */
    p->last_was_value = true;
    if (p->field_kind == FIELD_CONTENT_TYPE && p->content_type.len + n <= 256) {
        buf_append(&p->content_type, at, n);
    } else if (p->field_kind == FIELD_IDEMPOTENCY_KEY) {
        if (first)
            p->idem_keys++;
        size_t room = HTTP_PARSE_IDEM_BYTES - p->idem_key.len;
        buf_append(&p->idem_key, at, n < room ? n : room);
    }
    return 0;
}

static int on_headers_complete(http_parser *hp)
{
    struct http_parse *p = hp->data;
    bool chunked = (hp->flags & F_CHUNKED) != 0;
    bool needs_body = hp->method == HTTP_POST || hp->method == HTTP_PUT || hp->method == HTTP_PATCH;
    if (needs_body && !chunked && hp->content_length == ULLONG_MAX)
        fail(p, 411, "length_required", "a Content-Length header is required");
    else if (hp->content_length != ULLONG_MAX && hp->content_length > p->max_body_bytes)
        /* Refused before a byte of the body is read. */
        fail(p, 413, "payload_too_large", "the body is larger than the limit");
    return 0;
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
    struct http_parse *p = hp->data;
    if (p->body.len + n > p->max_body_bytes) {
        fail(p, 413, "payload_too_large", "the body is larger than the limit");
        return 0;
    }
    buf_append(&p->body, at, n);
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    struct http_parse *p = hp->data;
    p->complete = true;
    p->keep_alive = http_should_keep_alive(hp) != 0;
    /* Stop here: the next pipelined request waits until this one is answered. */
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void http_parse_init(struct http_parse *p, size_t max_header_bytes, size_t max_body_bytes)
{
    memset(p, 0, sizeof *p);
    http_parser_init(&p->parser, HTTP_REQUEST);
    p->parser.data = p;
    p->max_header_bytes = max_header_bytes;
    p->max_body_bytes = max_body_bytes;
}

void http_parse_free(struct http_parse *p)
{
    buf_free(&p->url);
    buf_free(&p->body);
    buf_free(&p->content_type);
    buf_free(&p->idem_key);
}

enum http_parse_result http_parse_feed(struct http_parse *p, const char *data, size_t len,
                                       size_t *used)
{
    *used = 0;
    if (p->error_status)
        return HTTP_PARSE_ERROR;
    if (p->complete)
        return HTTP_PARSE_DONE;
    *used = http_parser_execute(&p->parser, &settings, data, len);
    enum http_errno err = HTTP_PARSER_ERRNO(&p->parser);
    if (err == HPE_PAUSED)
        http_parser_pause(&p->parser, 0);
    else if (err != HPE_OK)
        fail(p, 400, "bad_request", http_errno_description(err));
    if (p->error_status)
        return HTTP_PARSE_ERROR;
    return p->complete ? HTTP_PARSE_DONE : HTTP_PARSE_INCOMPLETE;
}

static bool is_json_type(const struct buf *ct)
{
    static const char json[] = "application/json";
    size_t n = sizeof json - 1;
    if (ct->len < n || strncasecmp(ct->data, json, n) != 0)
        return false;
    /* Parameters are allowed: "application/json; charset=utf-8". */
    return ct->len == n || ct->data[n] == ';' || ct->data[n] == ' ';
}

int http_parse_take(struct http_parse *p, struct http_parsed *out)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (!p->url.data || http_parser_parse_url(p->url.data, p->url.len, 0, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH))) {
        p->error_status = 400;
        p->error_code = "bad_request";
        p->error_message = "the request target is not a valid path";
        return -1;
    }
    memset(out, 0, sizeof *out);
    /* Cut the path out in place: it ends where the query or fragment starts. */
    out->path = p->url.data + u.field_data[UF_PATH].off;
    out->path[u.field_data[UF_PATH].len] = '\0';
    out->path_len = u.field_data[UF_PATH].len;
    out->method = (enum http_method)p->parser.method;
    if (!p->body.data)
        buf_append(&p->body, "", 0);
    out->body = p->body.data;
    out->body_len = p->body.len;
    out->has_content_type = p->content_type.len > 0;
    out->json_content_type = is_json_type(&p->content_type);
    out->keep_alive = p->keep_alive;
    if (p->idem_keys > 0) {
        if (!p->idem_key.data)
            buf_append(&p->idem_key, "", 0); /* an empty value */
        out->idempotency_key = p->idem_key.data;
        out->idempotency_key_len = p->idem_key.len;
        out->idempotency_keys = p->idem_keys;
    }
    return 0;
}

void http_parse_next(struct http_parse *p)
{
    buf_reset(&p->url);
    buf_reset(&p->body);
    buf_reset(&p->content_type);
    buf_reset(&p->idem_key);
    p->idem_keys = 0;
    p->field_len = 0;
    p->field_kind = FIELD_OTHER;
    p->last_was_value = false;
    p->header_bytes = 0;
    p->head = false;
    p->begun = false;
    p->complete = false;
    p->keep_alive = false;
}

bool http_parse_timed_out(struct http_parse *p)
{
    if (!p->begun)
        return false;
    if (!p->error_status) {
        p->error_status = 408;
        p->error_code = "request_timeout";
        p->error_message = "the request was not received in time";
    }
    return true;
}
