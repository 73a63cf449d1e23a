/* Unit tests for common/http_parse.c against request smuggling: requests that
 * a proxy in front and surge could delimit differently (RFC 9112 sections
 * 2.2, 5.2, 6.1, 6.3, 7.1) are refused with 400 bad_request, whether they
 * arrive whole, byte by byte or cut in two anywhere, and nothing of them
 * reaches a handler. Input is copied to buffers of exactly its size so ASan
 * sees any read past the end. */
#include "suites.h"

#include "http_parse.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

struct smuggle {
    const char *what;
    const char *raw;
};

static const struct smuggle cases[] = {
    /* Two framings at once: either one could be believed. */
    {"Content-Length then Transfer-Encoding",
     "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
     "0\r\n\r\nGET /jobs/x HTTP/1.1\r\n\r\n"},
    {"Transfer-Encoding then Content-Length",
     "POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
     "0\r\n\r\nGET /jobs/x HTTP/1.1\r\n\r\n"},
    {"Content-Length twice, different",
     "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 30\r\n\r\n{}"},
    {"Content-Length twice, equal",
     "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}"},
    {"Content-Length as a list", "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\n{}"},
    {"Content-Length with a sign", "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n{}"},
    {"Content-Length with a space inside",
     "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 1 2\r\n\r\n{}"},
    {"Content-Length past 64 bits",
     "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551617\r\n\r\n{}"},
    /* Transfer-Encoding whose last coding is not chunked, or unknown. */
    {"chunked not last", "POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"},
    {"no chunked at all", "POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{}"},
    {"a coding that only looks like chunked",
     "POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"},
    /* Chunk sizes that are not plain hexadecimal. */
    {"negative chunk size",
     "POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n0\r\n\r\n"},
    {"0x chunk size",
     "POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n"},
    {"chunk size and a space",
     "POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\n{}\r\n0\r\n\r\n"},
    {"chunk size past 64 bits",
     "POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     "10000000000000002\r\n{}\r\n0\r\n\r\n"},
    {"chunk data longer than its size",
     "POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{}\r\n0\r\n\r\n"},
    /* Line endings: a CR alone, an LF alone inside the headers. (An LF alone
     * ending the request line or the header section is read as CRLF, which
     * RFC 9112 2.2 allows, as nginx does.) */
    {"LF alone ends a header", "GET /jobs/x HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n"},
    {"LF alone ends Transfer-Encoding",
     "POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\nContent-Length: 2\r\n\r\n{}"},
    {"CR alone in the request line", "GET /jobs/x HTTP/1.1\rHost: x\r\n\r\n"},
    {"CR alone in a header value", "GET /jobs/x HTTP/1.1\r\nX-A: a\rb\r\n\r\n"},
    {"CR alone after a chunk size",
     "POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r{}\r\n0\r\n\r\n"},
    /* White space between a header name and its colon. */
    {"space before the colon of Transfer-Encoding",
     "POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 2\r\n\r\n{}"},
    {"space before the colon of Content-Length",
     "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length : 2\r\n\r\n{}"},
    {"tab before the colon", "GET /jobs/x HTTP/1.1\r\nHost\t: x\r\n\r\n"},
    /* Obsolete line folding: a value continued on the next line. */
    {"folded Transfer-Encoding",
     "POST /jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"},
    {"folded value", "GET /jobs/x HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"},
    {"folded with a tab", "GET /jobs/x HTTP/1.1\r\nX-A: a\r\n\tb\r\nHost: x\r\n\r\n"},
    {"folded Content-Length",
     "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n 0\r\n\r\n{}"},
    /* A header line that starts with white space before any header. */
    {"first header folded", "GET /jobs/x HTTP/1.1\r\n Host: x\r\n\r\n"},
};

/* Feeds raw in pieces of at most `piece` bytes (0: all at once, or cut at
 * `cut`), each from a heap copy of exactly its size. Returns the result of
 * the last feed; *dispatched counts complete requests. */
static enum http_parse_result feed(struct http_parse *p, const char *raw, size_t piece, size_t cut,
                                   int *dispatched)
{
    size_t n = strlen(raw), off = 0;
    enum http_parse_result r = HTTP_PARSE_INCOMPLETE;
    *dispatched = 0;
    while (off < n) {
        size_t end = piece ? off + piece : cut && off < cut ? cut : n;
        size_t len = (end < n ? end : n) - off;
        char *copy = xmalloc(len);
        memcpy(copy, raw + off, len);
        size_t used = 0;
        r = http_parse_feed(p, copy, len, &used);
        free(copy);
        ck_assert_uint_le(used, len);
        if (r == HTTP_PARSE_ERROR)
            return r;
        if (r == HTTP_PARSE_DONE) {
            struct http_parsed req;
            if (http_parse_take(p, &req) < 0)
                return HTTP_PARSE_ERROR;
            (*dispatched)++;
            http_parse_next(p);
        }
        off += used;
        if (used == 0 && r != HTTP_PARSE_DONE)
            break;
    }
    return r;
}

static void expect_refused(const struct smuggle *s, size_t piece, size_t cut)
{
    struct http_parse p;
    int dispatched;
    http_parse_init(&p, 8192, 16384);
    enum http_parse_result r = feed(&p, s->raw, piece, cut, &dispatched);
    ck_assert_msg(r == HTTP_PARSE_ERROR, "%s (pieces of %zu, cut at %zu): result %d, %d dispatched",
                  s->what, piece, cut, (int)r, dispatched);
    ck_assert_msg(dispatched == 0, "%s: %d request(s) reached a handler", s->what, dispatched);
    ck_assert_int_eq(p.error_status, 400);
    ck_assert_str_eq(p.error_code, "bad_request");
    ck_assert_ptr_nonnull(p.error_message);
    http_parse_free(&p);
}

START_TEST(refused_whole)
{
    expect_refused(&cases[_i], 0, 0);
}
END_TEST

START_TEST(refused_byte_by_byte)
{
    expect_refused(&cases[_i], 1, 0);
}
END_TEST

START_TEST(refused_cut_anywhere)
{
    size_t n = strlen(cases[_i].raw);
    for (size_t cut = 1; cut < n; cut++)
        expect_refused(&cases[_i], 0, cut);
}
END_TEST

/* What must still pass: a value that only arrives in two pieces is not
 * folding, and white space inside or around a value is not either. */
START_TEST(split_values_are_not_folding)
{
    static const char raw[] = "POST /jobs HTTP/1.1\r\nHost: x\r\nX-A: a b  c\r\n"
                              "Content-Type: application/json; charset=utf-8\r\n"
                              "Content-Length: 2\r\n\r\n{}";
    size_t n = strlen(raw);
    for (size_t cut = 0; cut < n; cut++) {
        struct http_parse p;
        int dispatched;
        http_parse_init(&p, 8192, 16384);
        enum http_parse_result r = feed(&p, raw, 0, cut, &dispatched);
        ck_assert_msg(dispatched == 1, "cut at %zu: result %d (%s)", cut, (int)r,
                      p.error_message ? p.error_message : "");
        http_parse_free(&p);
    }
}
END_TEST

Suite *http_smuggling_suite(void)
{
    Suite *s = suite_create("http_smuggling");
    TCase *tc = tcase_create("refused");
    int n = (int)ARRAY_LEN(cases);
    tcase_add_loop_test(tc, refused_whole, 0, n);
    tcase_add_loop_test(tc, refused_byte_by_byte, 0, n);
    tcase_add_loop_test(tc, refused_cut_anywhere, 0, n);
    tcase_add_test(tc, split_values_are_not_folding);
    suite_add_tcase(s, tc);
    return s;
}
