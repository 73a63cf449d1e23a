/* Unit tests for common/http_parse.c: every prefix of a valid request is
 * incomplete, never an error; byte-by-byte and split feeding give the same
 * request; pipelining; the header, body and length limits; timeouts; the
 * Content-Type check. Input is copied to buffers of exactly its size so
 * ASan sees any read past the end. */
#include "suites.h"

#include "http_parse.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEADER 8192
#define MAX_BODY 16384

/* Feeds data[0..len) from a heap copy of exactly len bytes. */
static enum http_parse_result feed_copy(struct http_parse *p, const char *data, size_t len,
                                        size_t *used)
{
    char *copy = xmalloc(len);
    if (len)
        memcpy(copy, data, len);
    enum http_parse_result r = http_parse_feed(p, copy, len, used);
    free(copy);
    return r;
}

static enum http_parse_result feed_str(struct http_parse *p, const char *s, size_t *used)
{
    return feed_copy(p, s, strlen(s), used);
}

/* ---- valid requests ---- */

struct valid_request {
    const char *raw;
    enum llhttp_method method;
    const char *path;
    const char *body;
    bool has_content_type;
    bool json;
    bool keep_alive;
};

static const struct valid_request valid[] = {
    {"GET /jobs/01JDXABCDEFGHJKMNPQRSTVWXY HTTP/1.1\r\n"
     "Host: api.example.com\r\n"
     "Accept: application/json\r\n"
     "User-Agent: unit-test/1.0\r\n"
     "X-Request-Id: 1234\r\n"
     "\r\n",
     HTTP_GET, "/jobs/01JDXABCDEFGHJKMNPQRSTVWXY", "", false, false, true},
    {"POST /jobs HTTP/1.1\r\n"
     "Host: x\r\n"
     "Content-Type: application/json\r\n"
     "Content-Length: 39\r\n"
     "\r\n"
     "{\"type\":\"read\",\"params\":{\"item_id\":42}}",
     HTTP_POST, "/jobs", "{\"type\":\"read\",\"params\":{\"item_id\":42}}", true, true, true},
    {"POST /jobs/read HTTP/1.1\r\n"
     "Host: x\r\n"
     "content-type: application/json; charset=utf-8\r\n"
     "Transfer-Encoding: chunked\r\n"
     "\r\n"
     "6\r\n{\"item\r\n"
     "8\r\n_id\":42}\r\n"
     "0\r\n"
     "\r\n",
     HTTP_POST, "/jobs/read", "{\"item_id\":42}", true, true, true},
    {"GET /healthz HTTP/1.0\r\n"
     "\r\n",
     HTTP_GET, "/healthz", "", false, false, false},
    {"POST /jobs/burn HTTP/1.0\r\n"
     "Content-Type: application/json\r\n"
     "Content-Length: 13\r\n"
     "\r\n"
     "{\"seconds\":2}",
     HTTP_POST, "/jobs/burn", "{\"seconds\":2}", true, true, false},
    {"GET /jobs/abc?verbose=1&x=%20y HTTP/1.1\r\n"
     "Host: x\r\n"
     "Connection: close\r\n"
     "\r\n",
     HTTP_GET, "/jobs/abc", "", false, false, false},
    {"GET /metrics#frag HTTP/1.1\r\n"
     "Host: x\r\n"
     "\r\n",
     HTTP_GET, "/metrics", "", false, false, true},
    {"GET http://api.example.com:8080/jobs/xyz?q=1 HTTP/1.1\r\n"
     "Host: api.example.com:8080\r\n"
     "\r\n",
     HTTP_GET, "/jobs/xyz", "", false, false, true},
    {"HEAD /jobs/01JDX HTTP/1.1\r\n"
     "Host: x\r\n"
     "\r\n",
     HTTP_HEAD, "/jobs/01JDX", "", false, false, true},
    {"POST /jobs HTTP/1.1\r\n"
     "Host: x\r\n"
     "Content-Type: text/plain\r\n"
     "Content-Length: 5\r\n"
     "Connection: keep-alive\r\n"
     "\r\n"
     "hello",
     HTTP_POST, "/jobs", "hello", true, false, true},
    {"POST /jobs HTTP/1.1\r\n"
     "Host: x\r\n"
     "Content-Length: 0\r\n"
     "\r\n",
     HTTP_POST, "/jobs", "", false, false, true},
};

static void check_parsed(struct http_parse *p, const struct valid_request *v)
{
    struct http_parsed req;
    ck_assert_int_eq(http_parse_take(p, &req), 0);
    ck_assert_int_eq(req.method, v->method);
    ck_assert_str_eq(req.path, v->path);
    ck_assert_uint_eq(req.path_len, strlen(v->path));
    ck_assert_uint_eq(req.body_len, strlen(v->body));
    ck_assert_mem_eq(req.body, v->body, req.body_len);
    ck_assert_int_eq(req.body[req.body_len], '\0');
    ck_assert_int_eq(req.has_content_type, v->has_content_type);
    ck_assert_int_eq(req.json_content_type, v->json);
    ck_assert_int_eq(req.keep_alive, v->keep_alive);
    /* The server leaves the body out of every answer to a HEAD. */
    ck_assert_int_eq(p->head, v->method == HTTP_HEAD);
}

START_TEST(every_prefix_is_incomplete)
{
    const char *raw = valid[_i].raw;
    size_t n = strlen(raw);
    for (size_t len = 0; len < n; len++) {
        struct http_parse p;
        size_t used = 12345;
        http_parse_init(&p, MAX_HEADER, MAX_BODY);
        enum http_parse_result r = feed_copy(&p, raw, len, &used);
        ck_assert_msg(r == HTTP_PARSE_INCOMPLETE, "request %d, prefix of %zu bytes: result %d (%d)",
                      _i, len, (int)r, p.error_status);
        ck_assert_msg(used == len, "request %d, prefix of %zu bytes: used %zu", _i, len, used);
        http_parse_free(&p);
    }
}
END_TEST

START_TEST(whole_request_is_done)
{
    struct http_parse p;
    size_t used;
    http_parse_init(&p, MAX_HEADER, MAX_BODY);
    ck_assert_int_eq(feed_str(&p, valid[_i].raw, &used), HTTP_PARSE_DONE);
    ck_assert_uint_eq(used, strlen(valid[_i].raw));
    check_parsed(&p, &valid[_i]);
    http_parse_free(&p);
}
END_TEST

START_TEST(byte_by_byte_gives_the_same_request)
{
    const char *raw = valid[_i].raw;
    size_t n = strlen(raw);
    struct http_parse p;
    http_parse_init(&p, MAX_HEADER, MAX_BODY);
    for (size_t k = 0; k < n; k++) {
        size_t used = 0;
        enum http_parse_result r = feed_copy(&p, raw + k, 1, &used);
        enum http_parse_result want = k + 1 < n ? HTTP_PARSE_INCOMPLETE : HTTP_PARSE_DONE;
        ck_assert_msg(r == want, "request %d, byte %zu: result %d, expected %d", _i, k, (int)r,
                      (int)want);
        ck_assert_uint_eq(used, 1);
    }
    check_parsed(&p, &valid[_i]);
    http_parse_free(&p);
}
END_TEST

START_TEST(split_in_two_gives_the_same_request)
{
    const char *raw = valid[_i].raw;
    size_t n = strlen(raw);
    for (size_t k = 1; k < n; k++) {
        struct http_parse p;
        size_t used;
        http_parse_init(&p, MAX_HEADER, MAX_BODY);
        ck_assert_int_eq(feed_copy(&p, raw, k, &used), HTTP_PARSE_INCOMPLETE);
        ck_assert_uint_eq(used, k);
        ck_assert_msg(feed_copy(&p, raw + k, n - k, &used) == HTTP_PARSE_DONE,
                      "request %d split at %zu", _i, k);
        ck_assert_uint_eq(used, n - k);
        check_parsed(&p, &valid[_i]);
        http_parse_free(&p);
    }
}
END_TEST

/* ---- pipelining ---- */

START_TEST(pipelined_requests)
{
    static const char first[] = "GET /jobs/AAA HTTP/1.1\r\nHost: x\r\n\r\n";
    static const char second[] = "POST /jobs/burn HTTP/1.1\r\nHost: x\r\n"
                                 "Content-Type: application/json\r\nContent-Length: 13\r\n\r\n"
                                 "{\"seconds\":1}";
    char both[sizeof first + sizeof second];
    snprintf(both, sizeof both, "%s%s", first, second);
    size_t n = strlen(both);

    struct http_parse p;
    struct http_parsed req;
    size_t used;
    http_parse_init(&p, MAX_HEADER, MAX_BODY);
    ck_assert_int_eq(feed_copy(&p, both, n, &used), HTTP_PARSE_DONE);
    ck_assert_uint_eq(used, strlen(first));
    ck_assert_int_eq(http_parse_take(&p, &req), 0);
    ck_assert_int_eq(req.method, HTTP_GET);
    ck_assert_str_eq(req.path, "/jobs/AAA");
    ck_assert_uint_eq(req.body_len, 0);

    http_parse_next(&p);
    size_t off = used;
    ck_assert_int_eq(feed_copy(&p, both + off, n - off, &used), HTTP_PARSE_DONE);
    ck_assert_uint_eq(off + used, n);
    ck_assert_int_eq(http_parse_take(&p, &req), 0);
    ck_assert_int_eq(req.method, HTTP_POST);
    ck_assert_str_eq(req.path, "/jobs/burn");
    ck_assert_str_eq(req.body, "{\"seconds\":1}");
    ck_assert(req.json_content_type);
    http_parse_free(&p);
}
END_TEST

START_TEST(pipelined_second_request_arrives_later)
{
    static const char data[] = "POST /jobs HTTP/1.1\r\nContent-Type: application/json\r\n"
                               "Content-Length: 2\r\n\r\n{}GET /jo";
    struct http_parse p;
    struct http_parsed req;
    size_t used;
    http_parse_init(&p, MAX_HEADER, MAX_BODY);
    ck_assert_int_eq(feed_str(&p, data, &used), HTTP_PARSE_DONE);
    ck_assert_uint_eq(used, strlen(data) - strlen("GET /jo"));
    ck_assert_int_eq(http_parse_take(&p, &req), 0);
    ck_assert_str_eq(req.body, "{}");
    http_parse_next(&p);
    /* Nothing of the second request yet: no timeout to answer. */
    ck_assert(!http_parse_timed_out(&p));
    ck_assert_int_eq(feed_str(&p, "GET /jo", &used), HTTP_PARSE_INCOMPLETE);
    ck_assert_uint_eq(used, 7);
    ck_assert_int_eq(feed_str(&p, "bs/B HTTP/1.1\r\n\r\n", &used), HTTP_PARSE_DONE);
    ck_assert_int_eq(http_parse_take(&p, &req), 0);
    ck_assert_str_eq(req.path, "/jobs/B");
    ck_assert_uint_eq(req.body_len, 0);
    ck_assert(!req.json_content_type);
    http_parse_free(&p);
}
END_TEST

/* An error answered before the request is complete (431) still knows it
 * answers a HEAD; the flag does not leak into the next request. */
START_TEST(head_is_known_early_and_does_not_leak)
{
    static const char data[] = "HEAD /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n";
    struct http_parse p;
    struct http_parsed req;
    size_t used;
    http_parse_init(&p, MAX_HEADER, MAX_BODY);
    ck_assert_int_eq(feed_str(&p, "HEAD /health", &used), HTTP_PARSE_INCOMPLETE);
    ck_assert(p.head);
    http_parse_free(&p);

    http_parse_init(&p, MAX_HEADER, MAX_BODY);
    ck_assert_int_eq(feed_str(&p, data, &used), HTTP_PARSE_DONE);
    ck_assert_int_eq(http_parse_take(&p, &req), 0);
    ck_assert_int_eq(req.method, HTTP_HEAD);
    ck_assert(p.head);
    http_parse_next(&p);
    ck_assert(!p.head);
    ck_assert_int_eq(feed_str(&p, data + used, &used), HTTP_PARSE_DONE);
    ck_assert_int_eq(http_parse_take(&p, &req), 0);
    ck_assert_int_eq(req.method, HTTP_GET);
    ck_assert(!p.head);
    http_parse_free(&p);
}
END_TEST

START_TEST(header_limit_counts_each_request_alone)
{
    /* Each request is under the header limit; any two together are over it. */
    static const char one[] =
        "GET /jobs/AAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\nX-Pad: 0123456789\r\n\r\n";
    struct http_parse p;
    struct http_parsed req;
    size_t used;
    http_parse_init(&p, 64, MAX_BODY);
    for (int k = 0; k < 3; k++) {
        ck_assert_msg(feed_str(&p, one, &used) == HTTP_PARSE_DONE, "request %d: error %d", k,
                      p.error_status);
        ck_assert_uint_eq(used, strlen(one));
        ck_assert_int_eq(http_parse_take(&p, &req), 0);
        ck_assert_str_eq(req.path, "/jobs/AAAAAAAAAAAAAAAAAAAA");
        http_parse_next(&p);
    }
    http_parse_free(&p);
}
END_TEST

/* ---- limits ---- */

static void expect_error(struct http_parse *p, const char *data, size_t len, int status,
                         const char *code)
{
    size_t used;
    enum http_parse_result r = feed_copy(p, data, len, &used);
    ck_assert_msg(r == HTTP_PARSE_ERROR, "result %d, expected an error %d", (int)r, status);
    ck_assert_int_eq(p->error_status, status);
    ck_assert_str_eq(p->error_code, code);
    ck_assert_ptr_nonnull(p->error_message);
    /* Once in error it stays there. */
    ck_assert_int_eq(feed_copy(p, "GET / HTTP/1.1\r\n\r\n", 18, &used), HTTP_PARSE_ERROR);
}

START_TEST(headers_over_the_limit_431)
{
    struct http_parse p;
    struct buf req = {0};
    buf_puts(&req, "GET /jobs HTTP/1.1\r\nHost: x\r\nX-Big: ");
    for (int k = 0; k < 2000; k++)
        buf_puts(&req, "a");
    buf_puts(&req, "\r\n\r\n");
    http_parse_init(&p, 1024, MAX_BODY);
    expect_error(&p, req.data, req.len, 431, "headers_too_large");
    http_parse_free(&p);
    buf_free(&req);
}
END_TEST

START_TEST(many_small_headers_over_the_limit_431)
{
    struct http_parse p;
    struct buf req = {0};
    buf_puts(&req, "GET /jobs HTTP/1.1\r\n");
    for (int k = 0; k < 400; k++)
        buf_printf(&req, "X-H%d: v\r\n", k);
    buf_puts(&req, "\r\n");
    http_parse_init(&p, 1024, MAX_BODY);
    expect_error(&p, req.data, req.len, 431, "headers_too_large");
    http_parse_free(&p);
    buf_free(&req);
}
END_TEST

START_TEST(long_url_over_the_limit_431)
{
    struct http_parse p;
    struct buf req = {0};
    buf_puts(&req, "GET /jobs/");
    for (int k = 0; k < 1100; k++)
        buf_puts(&req, "A");
    buf_puts(&req, " HTTP/1.1\r\n\r\n");
    http_parse_init(&p, 1024, MAX_BODY);
    expect_error(&p, req.data, req.len, 431, "headers_too_large");
    http_parse_free(&p);
    buf_free(&req);
}
END_TEST

START_TEST(headers_over_the_limit_byte_by_byte_431)
{
    struct http_parse p;
    struct buf req = {0};
    buf_puts(&req, "GET /jobs HTTP/1.1\r\nX-Big: ");
    for (int k = 0; k < 300; k++)
        buf_puts(&req, "b");
    buf_puts(&req, "\r\n\r\n");
    http_parse_init(&p, 256, MAX_BODY);
    enum http_parse_result r = HTTP_PARSE_INCOMPLETE;
    size_t k = 0, used;
    for (; k < req.len && r == HTTP_PARSE_INCOMPLETE; k++)
        r = feed_copy(&p, req.data + k, 1, &used);
    ck_assert_int_eq(r, HTTP_PARSE_ERROR);
    ck_assert_int_eq(p.error_status, 431);
    /* Refused while the headers were still arriving. */
    ck_assert_uint_lt(k, req.len);
    http_parse_free(&p);
    buf_free(&req);
}
END_TEST

START_TEST(headers_under_the_limit_pass)
{
    struct http_parse p;
    struct buf req = {0};
    size_t used;
    buf_puts(&req, "GET /jobs HTTP/1.1\r\nX-Big: ");
    for (int k = 0; k < 500; k++)
        buf_puts(&req, "a");
    buf_puts(&req, "\r\n\r\n");
    http_parse_init(&p, 1024, MAX_BODY);
    ck_assert_int_eq(feed_copy(&p, req.data, req.len, &used), HTTP_PARSE_DONE);
    http_parse_free(&p);
    buf_free(&req);
}
END_TEST

START_TEST(content_length_over_the_limit_413_before_the_body)
{
    static const char head[] = "POST /jobs HTTP/1.1\r\nHost: x\r\n"
                               "Content-Type: application/json\r\nContent-Length: 65\r\n\r\n";
    struct http_parse p;
    http_parse_init(&p, MAX_HEADER, 64);
    /* Only the headers: not one byte of the body has been sent. */
    expect_error(&p, head, strlen(head), 413, "payload_too_large");
    http_parse_free(&p);
}
END_TEST

START_TEST(content_length_at_the_limit_passes)
{
    struct http_parse p;
    struct buf req = {0};
    size_t used;
    buf_puts(&req, "POST /jobs HTTP/1.1\r\nContent-Type: application/json\r\n"
                   "Content-Length: 64\r\n\r\n");
    for (int k = 0; k < 64; k++)
        buf_puts(&req, "x");
    http_parse_init(&p, MAX_HEADER, 64);
    ck_assert_int_eq(feed_copy(&p, req.data, req.len, &used), HTTP_PARSE_DONE);
    http_parse_free(&p);
    buf_free(&req);
}
END_TEST

START_TEST(huge_content_length_413)
{
    static const char head[] = "POST /jobs HTTP/1.1\r\nContent-Length: 1000000000000\r\n\r\n";
    struct http_parse p;
    http_parse_init(&p, MAX_HEADER, MAX_BODY);
    expect_error(&p, head, strlen(head), 413, "payload_too_large");
    http_parse_free(&p);
}
END_TEST

START_TEST(chunked_body_over_the_limit_413)
{
    /* Each chunk is under the limit; together they are over it. */
    static const char req[] = "POST /jobs HTTP/1.1\r\nHost: x\r\n"
                              "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "a\r\n0123456789\r\n"
                              "a\r\n0123456789\r\n"
                              "0\r\n\r\n";
    struct http_parse p;
    http_parse_init(&p, MAX_HEADER, 16);
    expect_error(&p, req, strlen(req), 413, "payload_too_large");
    http_parse_free(&p);
}
END_TEST

START_TEST(chunked_body_over_the_limit_byte_by_byte_413)
{
    static const char req[] = "POST /jobs HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "10\r\n0123456789abcdef\r\n"
                              "1\r\nX\r\n"
                              "0\r\n\r\n";
    struct http_parse p;
    size_t used;
    enum http_parse_result r = HTTP_PARSE_INCOMPLETE;
    http_parse_init(&p, MAX_HEADER, 16);
    for (size_t k = 0; req[k] && r == HTTP_PARSE_INCOMPLETE; k++)
        r = feed_copy(&p, req + k, 1, &used);
    ck_assert_int_eq(r, HTTP_PARSE_ERROR);
    ck_assert_int_eq(p.error_status, 413);
    http_parse_free(&p);
}
END_TEST

START_TEST(post_without_length_411)
{
    static const char head[] = "POST /jobs HTTP/1.1\r\nHost: x\r\n"
                               "Content-Type: application/json\r\n\r\n{}";
    struct http_parse p;
    http_parse_init(&p, MAX_HEADER, MAX_BODY);
    expect_error(&p, head, strlen(head), 411, "length_required");
    http_parse_free(&p);
}
END_TEST

static const char *const garbage[] = {
    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "HELLO WORLD\r\n\r\n",
    "GET\r\n\r\n",
    "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    "GET / XTTP/1.1\r\n\r\n",
    "GET /a\x01z HTTP/1.1\r\n\r\n",
    "POST /jobs HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    "POST /jobs HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "\x00\x00\x00\x00",
};

START_TEST(garbage_400)
{
    struct http_parse p;
    const char *g = garbage[_i];
    /* The NUL-only entry is four bytes; the others are strings. */
    size_t len = g[0] ? strlen(g) : 4;
    http_parse_init(&p, MAX_HEADER, MAX_BODY);
    expect_error(&p, g, len, 400, "bad_request");
    http_parse_free(&p);
}
END_TEST

START_TEST(target_that_is_not_a_path_400)
{
    /* An absolute-form target with no path is valid HTTP but routes nowhere. */
    struct http_parse p;
    struct http_parsed req;
    size_t used;
    http_parse_init(&p, MAX_HEADER, MAX_BODY);
    ck_assert_int_eq(feed_str(&p, "GET http://example.com HTTP/1.1\r\nHost: x\r\n\r\n", &used),
                     HTTP_PARSE_DONE);
    ck_assert_int_eq(http_parse_take(&p, &req), -1);
    ck_assert_int_eq(p.error_status, 400);
    http_parse_free(&p);
}
END_TEST

/* ---- timeouts ---- */

START_TEST(timeout_on_a_begun_request_408)
{
    struct http_parse p;
    size_t used;
    http_parse_init(&p, MAX_HEADER, MAX_BODY);
    ck_assert_int_eq(feed_str(&p, "GET /jo", &used), HTTP_PARSE_INCOMPLETE);
    ck_assert(http_parse_timed_out(&p));
    ck_assert_int_eq(p.error_status, 408);
    ck_assert_str_eq(p.error_code, "request_timeout");
    ck_assert_int_eq(feed_str(&p, "bs HTTP/1.1\r\n\r\n", &used), HTTP_PARSE_ERROR);
    http_parse_free(&p);
}
END_TEST

START_TEST(timeout_with_body_missing_408)
{
    struct http_parse p;
    size_t used;
    http_parse_init(&p, MAX_HEADER, MAX_BODY);
    ck_assert_int_eq(feed_str(&p, "POST /jobs HTTP/1.1\r\nContent-Length: 10\r\n\r\n{\"a\"", &used),
                     HTTP_PARSE_INCOMPLETE);
    ck_assert(http_parse_timed_out(&p));
    ck_assert_int_eq(p.error_status, 408);
    http_parse_free(&p);
}
END_TEST

START_TEST(timeout_when_nothing_began)
{
    struct http_parse p;
    size_t used;
    http_parse_init(&p, MAX_HEADER, MAX_BODY);
    ck_assert(!http_parse_timed_out(&p));
    ck_assert_int_eq(p.error_status, 0);
    ck_assert_int_eq(feed_copy(&p, "", 0, &used), HTTP_PARSE_INCOMPLETE);
    ck_assert(!http_parse_timed_out(&p));
    ck_assert_int_eq(p.error_status, 0);
    /* After a complete request, an idle keep-alive connection is not a 408. */
    ck_assert_int_eq(feed_str(&p, "GET / HTTP/1.1\r\n\r\n", &used), HTTP_PARSE_DONE);
    http_parse_next(&p);
    ck_assert(!http_parse_timed_out(&p));
    ck_assert_int_eq(p.error_status, 0);
    http_parse_free(&p);
}
END_TEST

/* ---- Content-Type ---- */

static const struct {
    const char *header; /* the whole header line, or "" for none */
    bool json;
} content_types[] = {
    {"Content-Type: application/json\r\n", true},
    {"Content-Type: application/json; charset=utf-8\r\n", true},
    {"Content-Type: application/json;charset=UTF-8\r\n", true},
    {"CONTENT-TYPE: Application/JSON\r\n", true},
    {"Content-Type: text/plain\r\n", false},
    {"Content-Type: application/jsonx\r\n", false},
    {"Content-Type: application/json-patch+json\r\n", false},
    {"Content-Type: application/jso\r\n", false},
    {"Content-Type: \r\n", false},
    {"Content-Typo: application/json\r\n", false},
    {"Content-Type-Extra: application/json\r\n", false},
    {"X-Content-Type: application/json\r\n", false},
    {"", false},
};

START_TEST(content_type_json_or_not)
{
    struct http_parse p;
    struct http_parsed req;
    struct buf raw = {0};
    size_t used;
    buf_printf(&raw, "POST /jobs HTTP/1.1\r\nHost: x\r\n%sContent-Length: 2\r\n\r\n{}",
               content_types[_i].header);
    http_parse_init(&p, MAX_HEADER, MAX_BODY);
    ck_assert_int_eq(feed_copy(&p, raw.data, raw.len, &used), HTTP_PARSE_DONE);
    ck_assert_int_eq(http_parse_take(&p, &req), 0);
    ck_assert_msg(req.json_content_type == content_types[_i].json, "%s: json_content_type %d",
                  content_types[_i].header, req.json_content_type);
    http_parse_free(&p);
    buf_free(&raw);
}
END_TEST

START_TEST(content_type_does_not_leak_into_the_next_request)
{
    static const char data[] = "POST /jobs HTTP/1.1\r\nContent-Type: application/json\r\n"
                               "Content-Length: 2\r\n\r\n{}"
                               "POST /jobs HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
    struct http_parse p;
    struct http_parsed req;
    size_t used;
    http_parse_init(&p, MAX_HEADER, MAX_BODY);
    ck_assert_int_eq(feed_str(&p, data, &used), HTTP_PARSE_DONE);
    ck_assert_int_eq(http_parse_take(&p, &req), 0);
    ck_assert(req.json_content_type);
    http_parse_next(&p);
    ck_assert_int_eq(feed_str(&p, data + used, &used), HTTP_PARSE_DONE);
    ck_assert_int_eq(http_parse_take(&p, &req), 0);
    ck_assert(!req.json_content_type);
    ck_assert(!req.has_content_type);
    http_parse_free(&p);
}
END_TEST

Suite *http_parse_suite(void)
{
    Suite *s = suite_create("http_parse");
    int nvalid = (int)ARRAY_LEN(valid);
    TCase *tc = tcase_create("valid");
    tcase_add_loop_test(tc, every_prefix_is_incomplete, 0, nvalid);
    tcase_add_loop_test(tc, whole_request_is_done, 0, nvalid);
    tcase_add_loop_test(tc, byte_by_byte_gives_the_same_request, 0, nvalid);
    tcase_add_loop_test(tc, split_in_two_gives_the_same_request, 0, nvalid);
    suite_add_tcase(s, tc);

    tc = tcase_create("pipelining");
    tcase_add_test(tc, pipelined_requests);
    tcase_add_test(tc, pipelined_second_request_arrives_later);
    tcase_add_test(tc, head_is_known_early_and_does_not_leak);
    tcase_add_test(tc, header_limit_counts_each_request_alone);
    suite_add_tcase(s, tc);

    tc = tcase_create("limits");
    tcase_add_test(tc, headers_over_the_limit_431);
    tcase_add_test(tc, many_small_headers_over_the_limit_431);
    tcase_add_test(tc, long_url_over_the_limit_431);
    tcase_add_test(tc, headers_over_the_limit_byte_by_byte_431);
    tcase_add_test(tc, headers_under_the_limit_pass);
    tcase_add_test(tc, content_length_over_the_limit_413_before_the_body);
    tcase_add_test(tc, content_length_at_the_limit_passes);
    tcase_add_test(tc, huge_content_length_413);
    tcase_add_test(tc, chunked_body_over_the_limit_413);
    tcase_add_test(tc, chunked_body_over_the_limit_byte_by_byte_413);
    tcase_add_test(tc, post_without_length_411);
    tcase_add_loop_test(tc, garbage_400, 0, (int)ARRAY_LEN(garbage));
    tcase_add_test(tc, target_that_is_not_a_path_400);
    suite_add_tcase(s, tc);

    tc = tcase_create("timeouts");
    tcase_add_test(tc, timeout_on_a_begun_request_408);
    tcase_add_test(tc, timeout_with_body_missing_408);
    tcase_add_test(tc, timeout_when_nothing_began);
    suite_add_tcase(s, tc);

    tc = tcase_create("content_type");
    tcase_add_loop_test(tc, content_type_json_or_not, 0, (int)ARRAY_LEN(content_types));
    tcase_add_test(tc, content_type_does_not_leak_into_the_next_request);
    suite_add_tcase(s, tc);
    return s;
}
