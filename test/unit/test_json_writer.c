/* Unit tests for common/json_writer.c: commas in nested objects and arrays,
 * string escaping, raw values, doubles, and that the output parses back. */
#include "suites.h"

#include "json_reader.h"
#include "json_writer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static struct buf out;
static struct json_writer w;

static void setup(void)
{
    memset(&out, 0, sizeof out);
    jw_init(&w, &out);
}

static void teardown(void)
{
    buf_free(&out);
}

static void expect_valid_json(void)
{
    struct json_doc doc;
    const char *why = NULL;
    ck_assert_msg(json_parse(&doc, out.data, out.len, &why) == 0, "not valid JSON (%s): %s", why,
                  out.data);
}

START_TEST(empty_containers)
{
    jw_array_begin(&w);
    jw_object_begin(&w);
    jw_object_end(&w);
    jw_array_begin(&w);
    jw_array_end(&w);
    jw_object_begin(&w);
    jw_object_end(&w);
    jw_array_end(&w);
    ck_assert_str_eq(out.data, "[{},[],{}]");
    ck_assert_uint_eq(out.len, strlen(out.data));
    expect_valid_json();
}
END_TEST

START_TEST(nested_objects_and_arrays)
{
    jw_object_begin(&w);
    jw_key_string(&w, "id", "01JDX");
    jw_key(&w, "params");
    jw_object_begin(&w);
    jw_key_int(&w, "item_id", 42);
    jw_object_end(&w);
    jw_key(&w, "list");
    jw_array_begin(&w);
    jw_int(&w, 1);
    jw_array_begin(&w);
    jw_int(&w, 2);
    jw_int(&w, 3);
    jw_array_end(&w);
    jw_object_begin(&w);
    jw_key(&w, "a");
    jw_bool(&w, true);
    jw_key(&w, "b");
    jw_bool(&w, false);
    jw_object_end(&w);
    jw_null(&w);
    jw_string(&w, "s");
    jw_array_end(&w);
    jw_key_string(&w, "worker", NULL);
    jw_key_int(&w, "min", INT64_MIN);
    jw_key_int(&w, "max", INT64_MAX);
    jw_object_end(&w);
    ck_assert_str_eq(out.data, "{\"id\":\"01JDX\",\"params\":{\"item_id\":42},"
                               "\"list\":[1,[2,3],{\"a\":true,\"b\":false},null,\"s\"],"
                               "\"worker\":null,\"min\":-9223372036854775808,"
                               "\"max\":9223372036854775807}");
    expect_valid_json();
}
END_TEST

START_TEST(deep_nesting)
{
    for (int k = 0; k < 15; k++)
        jw_array_begin(&w);
    jw_int(&w, 1);
    jw_int(&w, 2);
    for (int k = 0; k < 15; k++)
        jw_array_end(&w);
    ck_assert_str_eq(out.data, "[[[[[[[[[[[[[[[1,2]]]]]]]]]]]]]]]");
    expect_valid_json();
}
END_TEST

START_TEST(escaping)
{
    static const char nasty[] = "q\" b\\ n\n r\r t\t one\x01 us\x1f del\x7f caf\xc3\xa9 /";
    jw_object_begin(&w);
    jw_key_string(&w, "k\"ey\\", nasty);
    jw_object_end(&w);
    ck_assert_str_eq(out.data, "{\"k\\\"ey\\\\\":\"q\\\" b\\\\ n\\n r\\r t\\t one\\u0001 us\\u001f "
                               "del\x7f caf\xc3\xa9 /\"}");
    expect_valid_json();

    /* Round trip through the reader. */
    struct json_doc doc;
    const char *why;
    ck_assert_int_eq(json_parse(&doc, out.data, out.len, &why), 0);
    char *key = json_get_string(&doc, 1);
    char *value = json_get_string(&doc, 2);
    ck_assert_str_eq(key, "k\"ey\\");
    ck_assert_str_eq(value, nasty);
    free(key);
    free(value);
}
END_TEST

START_TEST(every_control_character_is_escaped)
{
    char s[32];
    for (int c = 1; c < 32; c++)
        s[c - 1] = (char)c;
    jw_string_n(&w, s, 31);
    for (size_t k = 0; k < out.len; k++)
        ck_assert_msg((unsigned char)out.data[k] >= 0x20, "raw control byte %d at %zu",
                      out.data[k], k);
    expect_valid_json();
    struct json_doc doc;
    const char *why;
    ck_assert_int_eq(json_parse(&doc, out.data, out.len, &why), 0);
    char *back = json_get_string(&doc, 0);
    ck_assert_mem_eq(back, s, 31);
    ck_assert_uint_eq(strlen(back), 31);
    free(back);
}
END_TEST

START_TEST(string_with_nul_and_length)
{
    jw_string_n(&w, "a\0b", 3);
    ck_assert_str_eq(out.data, "\"a\\u0000b\"");
    expect_valid_json();
}
END_TEST

START_TEST(json_escape_string_alone)
{
    json_escape_string(&out, "plain text", 10);
    ck_assert_str_eq(out.data, "\"plain text\"");
    buf_reset(&out);
    json_escape_string(&out, "", 0);
    ck_assert_str_eq(out.data, "\"\"");
    buf_reset(&out);
    json_escape_string(&out, "\"\"", 2);
    ck_assert_str_eq(out.data, "\"\\\"\\\"\"");
}
END_TEST

START_TEST(raw_values)
{
    jw_object_begin(&w);
    jw_key(&w, "result");
    jw_raw(&w, "{\"id\":42,\"name\":\"item-42\"}", 26);
    jw_key(&w, "error");
    jw_raw(&w, "null", 4);
    jw_key(&w, "arr");
    jw_array_begin(&w);
    jw_raw(&w, "1", 1);
    jw_raw(&w, "[2]", 3);
    jw_array_end(&w);
    jw_object_end(&w);
    ck_assert_str_eq(out.data, "{\"result\":{\"id\":42,\"name\":\"item-42\"},\"error\":null,"
                               "\"arr\":[1,[2]]}");
    expect_valid_json();
}
END_TEST

START_TEST(doubles)
{
    jw_array_begin(&w);
    jw_double(&w, 2.0, 3);
    jw_double(&w, 1.9984, 3);
    jw_double(&w, 0.4, 1);
    jw_double(&w, -0.125, 2);
    jw_double(&w, 12.5, 0);
    jw_double(&w, NAN, 3);
    jw_double(&w, INFINITY, 3);
    jw_double(&w, -INFINITY, 3);
    jw_array_end(&w);
    ck_assert_str_eq(out.data, "[2.000,1.998,0.4,-0.12,12,null,null,null]");
    expect_valid_json();
}
END_TEST

START_TEST(burn_result_shape)
{
    jw_object_begin(&w);
    jw_key_int(&w, "seconds_requested", 2);
    jw_key(&w, "wall_seconds");
    jw_double(&w, 2.0004, 3);
    jw_key(&w, "cpu_seconds");
    jw_double(&w, 1.998, 3);
    jw_object_end(&w);
    ck_assert_str_eq(out.data,
                     "{\"seconds_requested\":2,\"wall_seconds\":2.000,\"cpu_seconds\":1.998}");
    expect_valid_json();
}
END_TEST

START_TEST(invalid_utf8_becomes_replacement_character)
{
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"caf\xc3\xa9", "\"caf\xc3\xa9\""},          /* valid: kept as it is */
        {"\xff\xfe", "\"\\ufffd\\ufffd\""},          /* never valid bytes */
        {"a\xc3", "\"a\\ufffd\""},                     /* cut in the middle */
        {"\xc0\xaf", "\"\\ufffd\\ufffd\""},          /* overlong '/' */
        {"\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""}, /* a UTF-16 surrogate */
        {"\xf0\x9f\x98\x80!", "\"\xf0\x9f\x98\x80!\""}, /* 4 bytes, valid */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct buf b = {0};
        json_escape_string(&b, cases[i].in, strlen(cases[i].in));
        ck_assert_str_eq(b.data, cases[i].out);
        struct json_doc doc;
        const char *why;
        ck_assert_int_eq(json_parse(&doc, b.data, b.len, &why), 0);
        buf_free(&b);
    }
}
END_TEST

START_TEST(reader_refuses_invalid_utf8)
{
    static const char *const bad[] = {"\"\xff\"", "{\"\xff\xfe\":1}", "[\"a\xc3\"]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct json_doc doc;
        const char *why;
        ck_assert_int_eq(json_parse(&doc, bad[i], strlen(bad[i]), &why), -1);
    }
}
END_TEST

Suite *json_writer_suite(void)
{
    Suite *s = suite_create("json_writer");
    TCase *tc = tcase_create("writer");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, empty_containers);
    tcase_add_test(tc, nested_objects_and_arrays);
    tcase_add_test(tc, deep_nesting);
    tcase_add_test(tc, escaping);
    tcase_add_test(tc, every_control_character_is_escaped);
    tcase_add_test(tc, string_with_nul_and_length);
    tcase_add_test(tc, json_escape_string_alone);
    tcase_add_test(tc, raw_values);
    tcase_add_test(tc, invalid_utf8_becomes_replacement_character);
    tcase_add_test(tc, reader_refuses_invalid_utf8);
    tcase_add_test(tc, doubles);
    tcase_add_test(tc, burn_result_shape);
    suite_add_tcase(s, tc);
    return s;
}
