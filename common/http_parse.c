/* http_parse: llhttp callbacks and limits. See http_parse.h.
 *
 * llhttp is compiled in strict mode (the Makefile): besides what it always
 * refuses (Content-Length with Transfer-Encoding, a repeated Content-Length,
 * invalid chunk sizes, a CR alone, an LF alone inside the headers), it
 * refuses white space between a header name and its colon. Refused here:
 * obsolete line folding, which llhttp would join to the line before (RFC
 * 9112 5.2 allows either; joining lets a proxy in front read the headers
 * another way), and a Transfer-Encoding that does not end in chunked. */
#include "http_parse.h"

#include <string.h>
#include <strings.h>

/* Records the first error of the request. */
static void record(struct http_parse *p, int status, const char *code, const char *msg)
{
    if (!p->error_status) {
        p->error_status = status;
        p->error_code = code;
        p->error_message = msg;
    }
}

/* From a callback: records the error and stops llhttp there. */
static int fail(struct http_parse *p, int status, const char *code, const char *msg)
{
    record(p, status, code, msg);
    llhttp_set_error_reason(&p->parser, msg);
    return HPE_USER;
}

static int count_header_bytes(struct http_parse *p, size_t n)
{
    p->header_bytes += n;
    if (p->header_bytes > p->max_header_bytes)
        return fail(p, 431, "headers_too_large", "the request line and headers are too large");
    return 0;
}

static struct http_parse *of(llhttp_t *hp)
{
    return hp->data;
}

static int on_message_begin(llhttp_t *hp)
{
    of(hp)->begun = true;
    return 0;
}

static int on_url(llhttp_t *hp, const char *at, size_t n)
{
    struct http_parse *p = of(hp);
    p->begun = true;
    p->head = hp->method == HTTP_HEAD; /* the method is known once the target starts */
    if (count_header_bytes(p, n))
        return HPE_USER;
    buf_append(&p->url, at, n);
    return 0;
}

static int on_header_field(llhttp_t *hp, const char *at, size_t n)
{
    struct http_parse *p = of(hp);
    if (count_header_bytes(p, n))
        return HPE_USER;
    /* Names longer than the buffer are none we read; keep counting. */
    size_t room = p->field_len < sizeof p->field ? sizeof p->field - p->field_len : 0;
    if (room > 0)
        memcpy(p->field + p->field_len, at, n < room ? n : room);
    p->field_len += n;
    return 0;
}

static int on_header_field_complete(llhttp_t *hp)
{
    struct http_parse *p = of(hp);
    if (p->field_len == 12 && strncasecmp(p->field, "content-type", 12) == 0)
        p->field_kind = FIELD_CONTENT_TYPE;
    else if (p->field_len == 15 && strncasecmp(p->field, "idempotency-key", 15) == 0)
        p->field_kind = FIELD_IDEMPOTENCY_KEY;
    else
        p->field_kind = FIELD_OTHER;
    p->field_len = 0;
    return 0;
}

static int on_header_value(llhttp_t *hp, const char *at, size_t n)
{
    struct http_parse *p = of(hp);
    if (count_header_bytes(p, n))
        return HPE_USER;
    if (p->field_kind == FIELD_CONTENT_TYPE && p->content_type.len + n <= 256) {
        buf_append(&p->content_type, at, n);
    } else if (p->field_kind == FIELD_IDEMPOTENCY_KEY) {
        size_t room = HTTP_PARSE_IDEM_BYTES - p->idem_key.len;
        buf_append(&p->idem_key, at, n < room ? n : room);
    }
    return 0;
}

static int on_header_value_complete(llhttp_t *hp)
{
    struct http_parse *p = of(hp);
    if (p->field_kind == FIELD_IDEMPOTENCY_KEY)
        p->idem_keys++;
    p->field_kind = FIELD_OTHER;
    return 0;
}

static int on_headers_complete(llhttp_t *hp)
{
    struct http_parse *p = of(hp);
    bool chunked = (hp->flags & F_CHUNKED) != 0;
    bool has_length = (hp->flags & F_CONTENT_LENGTH) != 0;
    bool needs_body = hp->method == HTTP_POST || hp->method == HTTP_PUT || hp->method == HTTP_PATCH;
    if ((hp->flags & F_TRANSFER_ENCODING) && !chunked) {
        /* A body whose end nobody can find (RFC 9112 6.3). */
        record(p, 400, "bad_request", "Transfer-Encoding must end with chunked");
        return -1;
    }
    if (needs_body && !chunked && !has_length) {
        record(p, 411, "length_required", "a Content-Length header is required");
        return -1;
    }
    if (has_length && hp->content_length > p->max_body_bytes) {
        /* Refused before a byte of the body is read. */
        record(p, 413, "payload_too_large", "the body is larger than the limit");
        return -1;
    }
    return 0;
}

static int on_body(llhttp_t *hp, const char *at, size_t n)
{
    struct http_parse *p = of(hp);
    if (p->body.len + n > p->max_body_bytes)
        return fail(p, 413, "payload_too_large", "the body is larger than the limit");
    buf_append(&p->body, at, n);
    return 0;
}

static int on_message_complete(llhttp_t *hp)
{
    struct http_parse *p = of(hp);
    p->complete = true;
    /* After a request that asks to switch protocols (Upgrade, CONNECT), which
     * we never do, what follows is not HTTP: answer it and close. */
    p->keep_alive = llhttp_should_keep_alive(hp) != 0 && !hp->upgrade;
    /* Stop here: the next pipelined request waits until this one is answered. */
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void http_parse_init(struct http_parse *p, size_t max_header_bytes, size_t max_body_bytes)
{
    memset(p, 0, sizeof *p);
    llhttp_init(&p->parser, HTTP_REQUEST, &settings);
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

/* Looks for obsolete line folding in the header section: a line that starts
 * with SP or HTAB. Keeps its place across calls (p->scan); stops at the end
 * of the headers, so a body is never looked at. Returns true on a fold. */
static bool has_fold(struct http_parse *p, const char *d, size_t n)
{
    size_t i = 0;
    while (i < n) {
        switch (p->scan) {
        case SCAN_START: /* empty lines before the request line are skipped */
            if (d[i] != '\r' && d[i] != '\n') {
                p->scan = SCAN_LINE;
                continue;
            }
            i++;
            break;
        case SCAN_LINE: {
            const char *lf = memchr(d + i, '\n', n - i);
            if (!lf)
                return false;
            i = (size_t)(lf - d) + 1;
            p->scan = SCAN_LINE_START;
            break;
        }
        case SCAN_LINE_START:
            if (d[i] == ' ' || d[i] == '\t')
                return true;
            p->scan = d[i] == '\r' ? SCAN_CR : d[i] == '\n' ? SCAN_DONE : SCAN_LINE;
            i++;
            break;
        case SCAN_CR:
            p->scan = d[i] == '\n' ? SCAN_DONE : SCAN_LINE;
            i++;
            break;
        case SCAN_DONE:
            return false;
        }
    }
    return false;
}

enum http_parse_result http_parse_feed(struct http_parse *p, const char *data, size_t len,
                                       size_t *used)
{
    *used = 0;
    if (p->error_status)
        return HTTP_PARSE_ERROR;
    if (p->complete)
        return HTTP_PARSE_DONE;
    if (has_fold(p, data, len)) {
        record(p, 400, "bad_request", "obsolete line folding is not accepted");
        return HTTP_PARSE_ERROR;
    }
    llhttp_errno_t err = llhttp_execute(&p->parser, data, len);
    if (err == HPE_OK) {
        *used = len;
    } else {
        const char *pos = llhttp_get_error_pos(&p->parser);
        *used = pos && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
    }
    if (p->error_status)
        return HTTP_PARSE_ERROR;
    if (err == HPE_PAUSED && p->complete) {
        llhttp_resume(&p->parser);
        return HTTP_PARSE_DONE;
    }
    if (err != HPE_OK) {
        /* Refused by llhttp; PRI (the HTTP/2 preface) included. */
        record(p, 400, "bad_request", llhttp_get_error_reason(&p->parser));
        return HTTP_PARSE_ERROR;
    }
    return HTTP_PARSE_INCOMPLETE;
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

static bool scheme_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '-' || c == '.';
}

/* Where the path of a request target starts and how long it is: the whole
 * origin form ("/jobs/x?q") up to its query or fragment, or the part of an
 * absolute form ("http://host:8080/jobs/x") after the authority. Returns -1
 * for a target with no path ("*", "host:443", "http://host"). */
static int target_path(const char *t, size_t n, size_t *off, size_t *len)
{
    size_t start = 0;
    if (n == 0)
        return -1;
    if (t[0] != '/') {
        /* absolute form: scheme "://" authority path */
        if (!((t[0] >= 'a' && t[0] <= 'z') || (t[0] >= 'A' && t[0] <= 'Z')))
            return -1;
        size_t i = 1;
        while (i < n && scheme_char(t[i]))
            i++;
        if (n - i < 3 || memcmp(t + i, "://", 3) != 0)
            return -1;
        size_t host = i + 3;
        start = host;
        while (start < n && t[start] != '/' && t[start] != '?' && t[start] != '#')
            start++;
        if (start == host || start == n || t[start] != '/')
            return -1; /* no host, or no path */
    }
    size_t end = start;
    while (end < n && t[end] != '?' && t[end] != '#')
        end++;
    *off = start;
    *len = end - start;
    return 0;
}

int http_parse_take(struct http_parse *p, struct http_parsed *out)
{
    size_t off, len;
    if (!p->url.data || target_path(p->url.data, p->url.len, &off, &len) < 0) {
        record(p, 400, "bad_request", "the request target is not a valid path");
        return -1;
    }
    memset(out, 0, sizeof *out);
    /* Cut the path out in place: it ends where the query or fragment starts. */
    out->path = p->url.data + off;
    out->path[len] = '\0';
    out->path_len = len;
    out->method = (enum llhttp_method)p->parser.method;
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
    p->scan = SCAN_START;
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
    record(p, 408, "request_timeout", "the request was not received in time");
    return true;
}
