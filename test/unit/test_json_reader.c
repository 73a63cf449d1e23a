/* Unit tests for common/json_reader.c: what is valid JSON and what is not,
 * the token limit, object lookup and skipping, integers and strings. Inputs
 * are copied to buffers of exactly their size so ASan sees over-reads. */
#include "suites.h"

#include "buf.h"
#include "json_reader.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct json_doc doc;
static char *text; /* heap copy of the document under test */

static int parse_n(const char *s, size_t n)
{
    const char *why = NULL;
    free(text);
    text = xmalloc(n);
    if (n)
        memcpy(text, s, n);
    int rc = json_parse(&doc, text, n, &why);
    if (rc)
        ck_assert_msg(why && *why, "no reason given for a refusal");
    return rc;
}

static int parse(const char *s)
{
    return parse_n(s, strlen(s));
}

static void teardown(void)
{
    free(text);
    text = NULL;
}

/* ---- valid documents ---- */

static const char *const valid_docs[] = {
    "{}",
    "[]",
    "[0,-0,42,-17,3.25,-0.5e-3,1E+2,6.02e23,true,false,null]",
    "\"\"",
    "\"text\"",
    "\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\uDE00\"",
    "  {\"a\" : 1 }\n",
    "\t[ 1 , 2 ,\r\n 3 ]",
    "{\"type\":\"read\",\"params\":{\"item_id\":42}}",
    "{\"a\":[1,2.5,-3e10,true,false,null,\"s\",{}],\"b\":{\"c\":{\"d\":[]}}}",
    "[[[[[[[[[[1]]]]]]]]]]",
    "{\"\":0}",
    "{\"a\":1,\"a\":2}",
    "\"caf\xc3\xa9\"",
    "[\"\x7f\"]",
    "0 ",
    "true\n",
};

START_TEST(valid_documents_parse)
{
    ck_assert_msg(parse(valid_docs[_i]) == 0, "refused: %s", valid_docs[_i]);
    ck_assert_int_gt(doc.count, 0);
}
END_TEST

START_TEST(top_level_scalars_parse)
{
    /* RFC 8259 allows any value at the top level; with trailing whitespace
     * these already parse, so the document end must not matter. */
    static const char *const scalars[] = {"0",    "-0",   "42",    "-17",  "3.25",
                                          "1E+2", "true", "false", "null", "-0.5e-3"};
    char refused[256] = "";
    for (size_t k = 0; k < ARRAY_LEN(scalars); k++)
        if (parse(scalars[k]) != 0) {
            strncat(refused, " ", sizeof refused - strlen(refused) - 1);
            strncat(refused, scalars[k], sizeof refused - strlen(refused) - 1);
        }
    ck_assert_msg(refused[0] == '\0', "refused:%s", refused);
}
END_TEST

/* ---- invalid documents ---- */

static const char *const invalid_docs[] = {
    /* trailing and doubled commas */
    "[1,2,]",
    "{\"a\":1,}",
    "[,1]",
    "[1,,2]",
    "{,}",
    "{\"a\":1,,\"b\":2}",
    /* missing or misplaced separators */
    "{\"a\" 1}",
    "{\"a\":1 \"b\":2}",
    "[1 2]",
    "{\"a\"}",
    "{\"a\":}",
    "{\"a\"::1}",
    "{\"a\":1:2}",
    "[\"a\":1]",
    "{\"a\",1}",
    /* unquoted keys and strings */
    "{a:1}",
    "{'a':1}",
    "['a']",
    "{1:2}",
    "{null:1}",
    /* literals */
    "tru",
    "truex",
    "nul",
    "True",
    "NaN",
    "Infinity",
    "undefined",
    /* numbers */
    "01",
    "-01",
    "1.",
    ".5",
    "-",
    "1e",
    "1e+",
    "1.5.5",
    "+1",
    "0x10",
    "1_000",
    "--1",
    /* strings */
    "\"a\x01" "b\"",
    "\"tab\there\"",
    "\"new\nline\"",
    "\"\\x\"",
    "\"\\u12G4\"",
    "\"\\u12\"",
    "\"abc",
    /* more than one value, trailing text */
    "1 2",
    "{} {}",
    "{} x",
    "[1] ,",
    "\"a\" \"b\"",
    "{}}",
    "[1]]",
    /* unbalanced */
    "[1",
    "{\"a\":1",
    "[[1]",
    "{\"a\":[1}",
    "[1}",
    "{]",
    "]",
    "}",
    /* empty */
    "",
    "   ",
    "\n",
};

START_TEST(invalid_documents_are_refused)
{
    ck_assert_msg(parse(invalid_docs[_i]) != 0, "accepted: %s", invalid_docs[_i]);
}
END_TEST

START_TEST(nul_bytes_are_refused)
{
    ck_assert_int_ne(parse_n("[1]\0", 4), 0);
    ck_assert_int_ne(parse_n("\"a\0b\"", 5), 0);
    ck_assert_int_ne(parse_n("{\"a\":1}\0 ", 9), 0);
}
END_TEST

START_TEST(token_limit)
{
    /* An array of k numbers is k + 1 tokens. */
    struct buf b = {0};
    buf_puts(&b, "[0");
    for (int k = 1; k < JSON_MAX_TOKENS - 1; k++)
        buf_puts(&b, ",0");
    buf_puts(&b, "]");
    ck_assert_int_eq(parse_n(b.data, b.len), 0);
    ck_assert_int_eq(doc.count, JSON_MAX_TOKENS);
    buf_free(&b);

    buf_puts(&b, "[0");
    for (int k = 1; k < JSON_MAX_TOKENS; k++)
        buf_puts(&b, ",0");
    buf_puts(&b, "]");
    ck_assert_int_ne(parse_n(b.data, b.len), 0);
    buf_free(&b);

    /* Far more, as an object. */
    buf_puts(&b, "{");
    for (int k = 0; k < 500; k++)
        buf_printf(&b, "%s\"k%d\":%d", k ? "," : "", k, k);
    buf_puts(&b, "}");
    ck_assert_int_ne(parse_n(b.data, b.len), 0);
    buf_free(&b);
}
END_TEST

/* ---- object lookup and skipping ---- */

START_TEST(object_get_and_skip_nested)
{
    static const char s[] =
        "{\"a\":{\"x\":[1,{\"c\":2}],\"z\":\"q\"},\"b\":[{\"c\":1},[]],\"c\":3,\"d\":{}}";
    ck_assert_int_eq(parse(s), 0);
    int64_t v;

    /* Top-level "c" is 3, not the nested ones. */
    int c = json_object_get(&doc, 0, "c");
    ck_assert_int_ge(c, 0);
    ck_assert_int_eq(json_get_int64(&doc, c, &v), 0);
    ck_assert_int_eq(v, 3);

    int a = json_object_get(&doc, 0, "a");
    ck_assert_int_eq(a, 2);
    ck_assert_int_eq(doc.tok[a].type, JSMN_OBJECT);
    int z = json_object_get(&doc, a, "z");
    ck_assert(json_string_equals(&doc, z, "q"));
    int x = json_object_get(&doc, a, "x");
    ck_assert_int_eq(doc.tok[x].type, JSMN_ARRAY);
    ck_assert_int_eq(json_object_get(&doc, a, "c"), -1);

    /* Skipping "a"'s value lands on the key "b". */
    int after_a = json_skip(&doc, a);
    ck_assert(json_string_equals(&doc, after_a, "b"));
    ck_assert_int_eq(json_skip(&doc, after_a + 1), c - 1);
    /* Skipping a scalar moves one token. */
    ck_assert_int_eq(json_skip(&doc, c), c + 1);
    /* Skipping the last value (an empty object) ends the document. */
    int d = json_object_get(&doc, 0, "d");
    ck_assert_int_eq(json_skip(&doc, d), doc.count);
    /* Skipping the root ends the document. */
    ck_assert_int_eq(json_skip(&doc, 0), doc.count);

    int b = json_object_get(&doc, 0, "b");
    ck_assert_int_eq(doc.tok[b].type, JSMN_ARRAY);
    int inner = json_object_get(&doc, b + 1, "c");
    ck_assert_int_eq(json_get_int64(&doc, inner, &v), 0);
    ck_assert_int_eq(v, 1);

    ck_assert_int_eq(json_object_get(&doc, 0, "missing"), -1);
    ck_assert_int_eq(json_object_get(&doc, 0, ""), -1);
    /* Not an object, or out of range. */
    ck_assert_int_eq(json_object_get(&doc, b, "c"), -1);
    ck_assert_int_eq(json_object_get(&doc, -1, "a"), -1);
    ck_assert_int_eq(json_object_get(&doc, doc.count, "a"), -1);
}
END_TEST

START_TEST(object_get_does_not_match_values)
{
    /* "k" appears as a value before it appears as a key. */
    ck_assert_int_eq(parse("{\"x\":\"k\",\"y\":[\"k\"],\"k\":7}"), 0);
    int k = json_object_get(&doc, 0, "k");
    int64_t v;
    ck_assert_int_eq(json_get_int64(&doc, k, &v), 0);
    ck_assert_int_eq(v, 7);
}
END_TEST

START_TEST(string_equals)
{
    ck_assert_int_eq(parse("[\"read\",\"rea\",\"reads\",1,\"\"]"), 0);
    ck_assert(json_string_equals(&doc, 1, "read"));
    ck_assert(!json_string_equals(&doc, 2, "read"));
    ck_assert(!json_string_equals(&doc, 3, "read"));
    ck_assert(!json_string_equals(&doc, 4, "1"));
    ck_assert(json_string_equals(&doc, 5, ""));
}
END_TEST

/* ---- integers ---- */

START_TEST(get_int64)
{
    ck_assert_int_eq(parse("[-5,0,9223372036854775807,-9223372036854775808,42]"), 0);
    int64_t v = 1;
    ck_assert_int_eq(json_get_int64(&doc, 1, &v), 0);
    ck_assert_int_eq(v, -5);
    ck_assert_int_eq(json_get_int64(&doc, 2, &v), 0);
    ck_assert_int_eq(v, 0);
    ck_assert_int_eq(json_get_int64(&doc, 3, &v), 0);
    ck_assert(v == INT64_MAX);
    ck_assert_int_eq(json_get_int64(&doc, 4, &v), 0);
    ck_assert(v == INT64_MIN);
    ck_assert_int_eq(json_get_int64(&doc, 5, &v), 0);
    ck_assert_int_eq(v, 42);
    /* Out of range token indexes. */
    ck_assert_int_eq(json_get_int64(&doc, -1, &v), -1);
    ck_assert_int_eq(json_get_int64(&doc, doc.count, &v), -1);
}
END_TEST

static const char *const not_int64[] = {
    "1.5",  "1e3",   "1E3",  "-1.0", "\"5\"", "true", "null",
    "{}",   "[]",    "9223372036854775808",   "-9223372036854775809",
    "99999999999999999999999999", "-0.0", "1e-0",
};

START_TEST(get_int64_refuses)
{
    /* Inside an array: the value is token 1. */
    char wrapped[64];
    snprintf(wrapped, sizeof wrapped, "[%s]", not_int64[_i]);
    ck_assert_msg(parse(wrapped) == 0, "refused as JSON: %s", wrapped);
    int64_t v = 77;
    ck_assert_msg(json_get_int64(&doc, 1, &v) == -1, "%s read as an integer", not_int64[_i]);
    ck_assert_int_eq(v, 77);
}
END_TEST

/* ---- strings ---- */

START_TEST(get_string_unescapes)
{
    ck_assert_int_eq(parse("[\"a\\nb\",\"q\\\"q\",\"b\\\\s\",\"caf\\u00e9\",\"\\/\\t\\r\\b\\f\","
                           "\"\\u0041\\u20AC\",\"plain\",\"\",5]"),
                     0);
    char *s = json_get_string(&doc, 1);
    ck_assert_str_eq(s, "a\nb");
    free(s);
    s = json_get_string(&doc, 2);
    ck_assert_str_eq(s, "q\"q");
    free(s);
    s = json_get_string(&doc, 3);
    ck_assert_str_eq(s, "b\\s");
    free(s);
    s = json_get_string(&doc, 4);
    ck_assert_uint_eq(strlen(s), 5);
    ck_assert_mem_eq(s, "caf\xc3\xa9", 5);
    free(s);
    s = json_get_string(&doc, 5);
    ck_assert_str_eq(s, "/\t\r\b\f");
    free(s);
    s = json_get_string(&doc, 6);
    ck_assert_str_eq(s, "A\xe2\x82\xac");
    free(s);
    s = json_get_string(&doc, 7);
    ck_assert_str_eq(s, "plain");
    free(s);
    s = json_get_string(&doc, 8);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "");
    free(s);
    ck_assert_ptr_null(json_get_string(&doc, 9));
    ck_assert_ptr_null(json_get_string(&doc, 0));
    ck_assert_ptr_null(json_get_string(&doc, -1));
    ck_assert_ptr_null(json_get_string(&doc, doc.count));
}
END_TEST

Suite *json_reader_suite(void)
{
    Suite *s = suite_create("json_reader");
    TCase *tc = tcase_create("validity");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_loop_test(tc, valid_documents_parse, 0, (int)ARRAY_LEN(valid_docs));
    tcase_add_loop_test(tc, invalid_documents_are_refused, 0, (int)ARRAY_LEN(invalid_docs));
    tcase_add_test(tc, top_level_scalars_parse);
    tcase_add_test(tc, nul_bytes_are_refused);
    tcase_add_test(tc, token_limit);
    suite_add_tcase(s, tc);

    tc = tcase_create("access");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, object_get_and_skip_nested);
    tcase_add_test(tc, object_get_does_not_match_values);
    tcase_add_test(tc, string_equals);
    tcase_add_test(tc, get_int64);
    tcase_add_loop_test(tc, get_int64_refuses, 0, (int)ARRAY_LEN(not_int64));
    tcase_add_test(tc, get_string_unescapes);
    suite_add_tcase(s, tc);
    return s;
}
