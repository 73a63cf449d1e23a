/* Unit tests for api/idempotency.c and the Idempotency-Key header in
 * common/http_parse.c: which values are keys, the quoted and bare forms, the
 * limits, repeated headers, and the Redis key name. */
#include "suites.h"

#include "../../api/idempotency.h"
#include "http_parse.h"

#include <stdio.h>
#include <string.h>

static int parse(const char *value, int count, char out[IDEM_KEY_MAX + 1])
{
    struct job_error err;
    memset(&err, 0, sizeof err);
    int rc = idem_parse_header(value, strlen(value), count, out, &err);
    if (rc) {
        ck_assert_int_eq(err.status, 400);
        ck_assert_str_eq(err.code, "bad_idempotency_key");
        ck_assert_ptr_nonnull(strstr(err.message, "Idempotency-Key"));
    }
    return rc;
}

static const struct {
    const char *value;
    const char *key;
} good[] = {
    {"8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324"},
    {"\"8e03978e-40d5-43e8-bc93-6894a57f9324\"", "8e03978e-40d5-43e8-bc93-6894a57f9324"},
    {"a", "a"},
    {"AZaz09-_.:~+/=", "AZaz09-_.:~+/="},
    {" \tkey-1 \t", "key-1"},
    {" \"key-2\" ", "key-2"},
    {"01M8A4E1EA2HS751PXC6HB2TWS", "01M8A4E1EA2HS751PXC6HB2TWS"},
};

START_TEST(keys_accepted)
{
    char out[IDEM_KEY_MAX + 1];
    ck_assert_int_eq(parse(good[_i].value, 1, out), 0);
    ck_assert_str_eq(out, good[_i].key);
}
END_TEST

static const char *const bad[] = {
    "", " ", "\"\"", "\"", "a b", "a*b", "a?b", "[a]", "a\\b", "a\"b", "\"a", "a\"", "caf\xc3\xa9",
    "a\x01", "a;b", "a,b", "k\x7f",
};

START_TEST(keys_refused)
{
    char out[IDEM_KEY_MAX + 1];
    ck_assert_msg(parse(bad[_i], 1, out) == -1, "\"%s\" was taken as a key", bad[_i]);
}
END_TEST

START_TEST(length_limit)
{
    char value[IDEM_KEY_MAX + 4];
    char out[IDEM_KEY_MAX + 1];
    memset(value, 'k', IDEM_KEY_MAX);
    value[IDEM_KEY_MAX] = '\0';
    ck_assert_int_eq(parse(value, 1, out), 0);
    ck_assert_uint_eq(strlen(out), IDEM_KEY_MAX);
    value[IDEM_KEY_MAX] = 'k';
    value[IDEM_KEY_MAX + 1] = '\0';
    ck_assert_int_eq(parse(value, 1, out), -1);
    /* Quotes do not count towards the limit. */
    value[0] = '"';
    memset(value + 1, 'q', IDEM_KEY_MAX);
    value[IDEM_KEY_MAX + 1] = '"';
    value[IDEM_KEY_MAX + 2] = '\0';
    ck_assert_int_eq(parse(value, 1, out), 0);
    ck_assert_uint_eq(strlen(out), IDEM_KEY_MAX);
}
END_TEST

START_TEST(repeated_header_refused)
{
    char out[IDEM_KEY_MAX + 1];
    ck_assert_int_eq(parse("one", 2, out), -1);
}
END_TEST

START_TEST(redis_key_has_the_prefix)
{
    struct buf b = {0};
    keys_set_prefix("t1:");
    idem_redis_key(&b, "abc");
    ck_assert_str_eq(b.data, "t1:idem:abc");
    buf_free(&b);
    keys_set_prefix("surge:");
}
END_TEST

/* ---- the header as http_parse reads it ---- */

static void take(const char *raw, struct http_parse *p, struct http_parsed *req)
{
    size_t used;
    http_parse_init(p, 8192, 16384);
    ck_assert_int_eq(http_parse_feed(p, raw, strlen(raw), &used), HTTP_PARSE_DONE);
    ck_assert_int_eq(http_parse_take(p, req), 0);
}

START_TEST(header_is_read_whatever_its_case)
{
    struct http_parse p;
    struct http_parsed req;
    take("POST /jobs HTTP/1.1\r\nidempotency-KEY: abc\r\nContent-Length: 0\r\n\r\n", &p, &req);
    ck_assert_int_eq(req.idempotency_keys, 1);
    ck_assert_uint_eq(req.idempotency_key_len, 3);
    ck_assert_str_eq(req.idempotency_key, "abc");
    http_parse_free(&p);
}
END_TEST

START_TEST(header_absent)
{
    struct http_parse p;
    struct http_parsed req;
    take("POST /jobs HTTP/1.1\r\nIdempotency-Keys: abc\r\nX-Idempotency-Key: d\r\n"
         "Content-Length: 0\r\n\r\n",
         &p, &req);
    ck_assert_int_eq(req.idempotency_keys, 0);
    ck_assert_ptr_null(req.idempotency_key);
    http_parse_free(&p);
}
END_TEST

START_TEST(header_empty_is_a_key_of_nothing)
{
    struct http_parse p;
    struct http_parsed req;
    char out[IDEM_KEY_MAX + 1];
    take("POST /jobs HTTP/1.1\r\nIdempotency-Key:\r\nContent-Length: 0\r\n\r\n", &p, &req);
    ck_assert_int_eq(req.idempotency_keys, 1);
    ck_assert_ptr_nonnull(req.idempotency_key);
    ck_assert_uint_eq(req.idempotency_key_len, 0);
    ck_assert_int_eq(parse(req.idempotency_key, req.idempotency_keys, out), -1);
    http_parse_free(&p);
}
END_TEST

START_TEST(header_repeated_is_counted)
{
    struct http_parse p;
    struct http_parsed req;
    take("POST /jobs HTTP/1.1\r\nIdempotency-Key: a\r\nHost: x\r\nIdempotency-Key: b\r\n"
         "Content-Length: 0\r\n\r\n",
         &p, &req);
    ck_assert_int_eq(req.idempotency_keys, 2);
    http_parse_free(&p);
}
END_TEST

START_TEST(header_too_long_is_kept_in_part)
{
    static char raw[4096];
    char value[1001];
    memset(value, 'v', 1000);
    value[1000] = '\0';
    snprintf(raw, sizeof raw,
             "POST /jobs HTTP/1.1\r\nIdempotency-Key: %s\r\nContent-Length: 0\r\n\r\n", value);
    struct http_parse p;
    struct http_parsed req;
    char out[IDEM_KEY_MAX + 1];
    take(raw, &p, &req);
    ck_assert_uint_eq(req.idempotency_key_len, HTTP_PARSE_IDEM_BYTES);
    ck_assert_int_eq(parse(req.idempotency_key, 1, out), -1);
    http_parse_free(&p);
}
END_TEST

START_TEST(header_does_not_leak_into_the_next_request)
{
    static const char raw[] = "POST /jobs HTTP/1.1\r\nIdempotency-Key: k1\r\nContent-Length: 0\r\n\r\n"
                              "POST /jobs HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    struct http_parse p;
    struct http_parsed req;
    size_t used;
    http_parse_init(&p, 8192, 16384);
    ck_assert_int_eq(http_parse_feed(&p, raw, strlen(raw), &used), HTTP_PARSE_DONE);
    ck_assert_int_eq(http_parse_take(&p, &req), 0);
    ck_assert_str_eq(req.idempotency_key, "k1");
    http_parse_next(&p);
    size_t off = used;
    ck_assert_int_eq(http_parse_feed(&p, raw + off, strlen(raw) - off, &used), HTTP_PARSE_DONE);
    ck_assert_int_eq(http_parse_take(&p, &req), 0);
    ck_assert_int_eq(req.idempotency_keys, 0);
    ck_assert_ptr_null(req.idempotency_key);
    http_parse_free(&p);
}
END_TEST

Suite *idempotency_suite(void)
{
    Suite *s = suite_create("idempotency");
    TCase *tc = tcase_create("key");
    tcase_add_loop_test(tc, keys_accepted, 0, (int)(sizeof good / sizeof good[0]));
    tcase_add_loop_test(tc, keys_refused, 0, (int)(sizeof bad / sizeof bad[0]));
    tcase_add_test(tc, length_limit);
    tcase_add_test(tc, repeated_header_refused);
    tcase_add_test(tc, redis_key_has_the_prefix);
    suite_add_tcase(s, tc);
    tc = tcase_create("header");
    tcase_add_test(tc, header_is_read_whatever_its_case);
    tcase_add_test(tc, header_absent);
    tcase_add_test(tc, header_empty_is_a_key_of_nothing);
    tcase_add_test(tc, header_repeated_is_counted);
    tcase_add_test(tc, header_too_long_is_kept_in_part);
    tcase_add_test(tc, header_does_not_leak_into_the_next_request);
    suite_add_tcase(s, tc);
    return s;
}
