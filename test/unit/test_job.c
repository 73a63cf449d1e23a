/* Unit tests for common/job.c: ids, type and status names, request and
 * params validation, and the Redis key names. */
#include "suites.h"

#include "job.h"
#include "util.h"

#include <string.h>

#define BURN_DEFAULT 180
#define BURN_MAX 600

/* ---- ids ---- */

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

START_TEST(new_id_is_26_crockford_characters)
{
    char id[JOB_ID_LEN + 1];
    memset(id, 'x', sizeof id);
    job_new_id(id);
    ck_assert_uint_eq(strlen(id), 26);
    for (size_t k = 0; k < 26; k++)
        ck_assert_msg(id[k] && strchr(crockford, id[k]), "bad character '%c' in %s", id[k], id);
    ck_assert(job_id_valid(id, strlen(id)));
}
END_TEST

START_TEST(new_ids_strictly_increase)
{
    char prev[JOB_ID_LEN + 1], cur[JOB_ID_LEN + 1];
    job_new_id(prev);
    for (int k = 0; k < 1000; k++) {
        job_new_id(cur);
        ck_assert(job_id_valid(cur, JOB_ID_LEN));
        ck_assert_msg(strcmp(prev, cur) < 0, "call %d: %s is not after %s", k, cur, prev);
        memcpy(prev, cur, sizeof cur);
    }
}
END_TEST

START_TEST(id_valid_accepts)
{
    ck_assert(job_id_valid("01ARZ3NDEKTSV4RRFFQ69G5FAV", 26));
    ck_assert(job_id_valid("00000000000000000000000000", 26));
    ck_assert(job_id_valid("7ZZZZZZZZZZZZZZZZZZZZZZZZZ", 26));
    /* Only the first n bytes are looked at. */
    ck_assert(job_id_valid("01ARZ3NDEKTSV4RRFFQ69G5FAV/rest", 26));
}
END_TEST

START_TEST(id_valid_refuses)
{
    static const char good[] = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    ck_assert(!job_id_valid(good, 25));
    ck_assert(!job_id_valid("01ARZ3NDEKTSV4RRFFQ69G5FA", 25));
    ck_assert(!job_id_valid("01ARZ3NDEKTSV4RRFFQ69G5FAVV", 27));
    ck_assert(!job_id_valid("", 0));
    /* Letters Crockford leaves out, at the start, middle and end. */
    static const char excluded[] = "ILOU";
    for (size_t c = 0; c < 4; c++) {
        static const size_t positions[] = {1, 13, 25};
        for (size_t p = 0; p < 3; p++) {
            char id[JOB_ID_LEN + 1];
            memcpy(id, good, sizeof id);
            id[positions[p]] = excluded[c];
            ck_assert_msg(!job_id_valid(id, 26), "accepted %s", id);
        }
    }
    /* Lower case is refused (ids are made upper case). */
    ck_assert(!job_id_valid("01arz3ndektsv4rrffq69g5fav", 26));
    ck_assert(!job_id_valid("01ARZ3NDEKTSV4RRFFQ69G5FAv", 26));
    /* Punctuation, spaces, a NUL inside. */
    ck_assert(!job_id_valid("01ARZ3NDEKTSV4RRFFQ69G5FA-", 26));
    ck_assert(!job_id_valid("01ARZ3NDEKTSV4RR FQ69G5FAV", 26));
    ck_assert(!job_id_valid("01ARZ3NDEKTSV4RR\0FQ69G5FAV", 26));
    ck_assert(!job_id_valid("../../../../../../../etc/p", 26));
    /* 26 digits hold 130 bits: a first digit above 7 overflows 128. */
    ck_assert(!job_id_valid("8ZZZZZZZZZZZZZZZZZZZZZZZZZ", 26));
    ck_assert(!job_id_valid("ZZZZZZZZZZZZZZZZZZZZZZZZZZ", 26));
}
END_TEST

/* ---- names ---- */

START_TEST(type_and_status_names)
{
    ck_assert_str_eq(job_type_name(JOB_READ), "read");
    ck_assert_str_eq(job_type_name(JOB_BURN), "burn");
    ck_assert_str_eq(job_type_name(JOB_TYPE_UNKNOWN), "unknown");
    ck_assert_int_eq(job_type_parse("read", 4), JOB_READ);
    ck_assert_int_eq(job_type_parse("burn", 4), JOB_BURN);
    ck_assert_int_eq(job_type_parse("rea", 3), JOB_TYPE_UNKNOWN);
    ck_assert_int_eq(job_type_parse("reads", 5), JOB_TYPE_UNKNOWN);
    ck_assert_int_eq(job_type_parse("READ", 4), JOB_TYPE_UNKNOWN);
    ck_assert_int_eq(job_type_parse("", 0), JOB_TYPE_UNKNOWN);
    ck_assert_int_eq(job_type_parse("readXYZ", 4), JOB_READ);
    ck_assert_str_eq(job_status_name(JOB_QUEUED), "queued");
    ck_assert_str_eq(job_status_name(JOB_RUNNING), "running");
    ck_assert_str_eq(job_status_name(JOB_SUCCEEDED), "succeeded");
    ck_assert_str_eq(job_status_name(JOB_FAILED), "failed");
    ck_assert_str_eq(job_status_name(JOB_DEAD), "dead");
    ck_assert_str_eq(job_status_name(JOB_STATUS_COUNT), "unknown");
}
END_TEST

/* ---- request validation ---- */

struct request_case {
    const char *body;
    enum job_type forced;
    const char *code; /* NULL: accepted */
    enum job_type type;
    const char *params_json;
};

#define OK(body, forced, type, params) {body, forced, NULL, type, params}
#define BAD(body, forced, code) {body, forced, code, JOB_TYPE_UNKNOWN, NULL}
#define ANY JOB_TYPE_UNKNOWN

static const struct request_case requests[] = {
    /* POST /jobs */
    OK("{\"type\":\"read\",\"params\":{\"item_id\":42}}", ANY, JOB_READ, "{\"item_id\":42}"),
    OK(" { \"params\" : { \"item_id\" : 7 } , \"type\" : \"read\" } ", ANY, JOB_READ,
       "{\"item_id\":7}"),
    OK("{\"type\":\"read\",\"params\":{\"item_id\":9223372036854775807}}", ANY, JOB_READ,
       "{\"item_id\":9223372036854775807}"),
    OK("{\"type\":\"burn\",\"params\":{\"seconds\":5}}", ANY, JOB_BURN, "{\"seconds\":5}"),
    OK("{\"type\":\"burn\",\"params\":{\"seconds\":600}}", ANY, JOB_BURN, "{\"seconds\":600}"),
    OK("{\"type\":\"burn\",\"params\":{\"seconds\":1}}", ANY, JOB_BURN, "{\"seconds\":1}"),
    OK("{\"type\":\"burn\"}", ANY, JOB_BURN, "{\"seconds\":180}"),
    OK("{\"type\":\"burn\",\"params\":{}}", ANY, JOB_BURN, "{\"seconds\":180}"),
    BAD("{\"type\":\"write\",\"params\":{}}", ANY, "unknown_type"),
    BAD("{\"type\":\"READ\",\"params\":{\"item_id\":1}}", ANY, "unknown_type"),
    BAD("{\"type\":\"\",\"params\":{\"item_id\":1}}", ANY, "unknown_type"),
    BAD("{\"type\":5,\"params\":{\"item_id\":1}}", ANY, "unknown_type"),
    BAD("{\"type\":null,\"params\":{\"item_id\":1}}", ANY, "unknown_type"),
    BAD("{\"params\":{\"item_id\":42}}", ANY, "unknown_type"),
    BAD("{}", ANY, "unknown_type"),
    BAD("{\"type\":\"read\",\"params\":[1]}", ANY, "bad_params"),
    BAD("{\"type\":\"read\",\"params\":\"item_id=1\"}", ANY, "bad_params"),
    BAD("{\"type\":\"read\",\"params\":null}", ANY, "bad_params"),
    BAD("{\"type\":\"read\",\"params\":42}", ANY, "bad_params"),
    BAD("{\"type\":\"read\"}", ANY, "bad_params"),
    BAD("{\"type\":\"read\",\"params\":{}}", ANY, "bad_params"),
    BAD("{\"type\":\"read\",\"params\":{\"item_id\":0}}", ANY, "bad_params"),
    BAD("{\"type\":\"read\",\"params\":{\"item_id\":-1}}", ANY, "bad_params"),
    BAD("{\"type\":\"read\",\"params\":{\"item_id\":\"5\"}}", ANY, "bad_params"),
    BAD("{\"type\":\"read\",\"params\":{\"item_id\":1.5}}", ANY, "bad_params"),
    BAD("{\"type\":\"read\",\"params\":{\"item_id\":1e3}}", ANY, "bad_params"),
    BAD("{\"type\":\"read\",\"params\":{\"item_id\":true}}", ANY, "bad_params"),
    BAD("{\"type\":\"read\",\"params\":{\"item_id\":null}}", ANY, "bad_params"),
    BAD("{\"type\":\"read\",\"params\":{\"item_id\":9223372036854775808}}", ANY, "bad_params"),
    BAD("{\"type\":\"read\",\"params\":{\"item_id\":1,\"extra\":2}}", ANY, "bad_params"),
    BAD("{\"type\":\"read\",\"params\":{\"extra\":2,\"item_id\":1}}", ANY, "bad_params"),
    BAD("{\"type\":\"read\",\"params\":{\"seconds\":2}}", ANY, "bad_params"),
    BAD("{\"type\":\"burn\",\"params\":{\"item_id\":2}}", ANY, "bad_params"),
    BAD("{\"type\":\"read\",\"params\":{\"item_id\":1},\"priority\":1}", ANY, "bad_json"),
    BAD("{\"id\":\"x\",\"type\":\"read\",\"params\":{\"item_id\":1}}", ANY, "bad_json"),
    BAD("{\"type\":\"burn\",\"params\":{\"seconds\":601}}", ANY, "bad_params"),
    BAD("{\"type\":\"burn\",\"params\":{\"seconds\":0}}", ANY, "bad_params"),
    BAD("{\"type\":\"burn\",\"params\":{\"seconds\":-5}}", ANY, "bad_params"),
    BAD("{\"type\":\"burn\",\"params\":{\"seconds\":1.5}}", ANY, "bad_params"),
    BAD("{\"type\":\"burn\",\"params\":{\"seconds\":\"5\"}}", ANY, "bad_params"),
    BAD("{\"type\":\"burn\",\"params\":{\"seconds\":4294967297}}", ANY, "bad_params"),
    BAD("{\"type\":\"burn\",\"params\":{\"seconds\":99999999999999999999}}", ANY, "bad_params"),
    BAD("{\"type\":\"read\",", ANY, "bad_json"),
    BAD("{\"type\":\"read\",\"params\":{\"item_id\":42},}", ANY, "bad_json"),
    BAD("", ANY, "bad_json"),
    BAD("null", ANY, "bad_json"),
    BAD("[1]", ANY, "bad_json"),
    BAD("\"read\"", ANY, "bad_json"),
    BAD("{\"type\":\"read\"} {}", ANY, "bad_json"),
    /* POST /jobs/read and /jobs/burn: the body is the params */
    OK("{\"item_id\":7}", JOB_READ, JOB_READ, "{\"item_id\":7}"),
    OK("{\"seconds\":3}", JOB_BURN, JOB_BURN, "{\"seconds\":3}"),
    OK("{}", JOB_BURN, JOB_BURN, "{\"seconds\":180}"),
    BAD("{}", JOB_READ, "bad_params"),
    BAD("{\"item_id\":7,\"x\":1}", JOB_READ, "bad_params"),
    BAD("{\"item_id\":0}", JOB_READ, "bad_params"),
    BAD("[]", JOB_READ, "bad_params"),
    BAD("\"item_id\"", JOB_READ, "bad_params"),
    BAD("[7]", JOB_READ, "bad_params"),
    BAD("{\"type\":\"read\",\"params\":{\"item_id\":1}}", JOB_READ, "bad_params"),
    BAD("{\"type\":\"burn\",\"params\":{\"seconds\":3}}", JOB_BURN, "bad_params"),
    BAD("{\"seconds\":700}", JOB_BURN, "bad_params"),
    BAD("{\"item_id\":", JOB_READ, "bad_json"),
    BAD("", JOB_BURN, "bad_json"),
};

START_TEST(parse_request_cases)
{
    const struct request_case *c = &requests[_i];
    struct job_request jr;
    struct job_error err;
    memset(&err, 0, sizeof err);
    int rc = job_parse_request(c->body, strlen(c->body), c->forced, BURN_DEFAULT, BURN_MAX, &jr,
                               &err);
    if (!c->code) {
        ck_assert_msg(rc == 0, "%s refused: %s %s", c->body, err.code, err.message);
        ck_assert_int_eq(jr.type, c->type);
        ck_assert_str_eq(jr.params_json, c->params_json);
        return;
    }
    ck_assert_msg(rc == -1, "%s accepted as %s", c->body, jr.params_json);
    ck_assert_int_eq(err.status, 400);
    ck_assert_ptr_nonnull(err.code);
    ck_assert_msg(!strcmp(err.code, c->code), "%s: code %s, expected %s", c->body, err.code,
                  c->code);
    ck_assert_ptr_nonnull(memchr(err.message, '\0', sizeof err.message));
    ck_assert_uint_gt(strlen(err.message), 0);
}
END_TEST

START_TEST(parse_request_fields)
{
    struct job_request jr;
    struct job_error err;
    static const char read_body[] = "{\"type\":\"read\",\"params\":{\"item_id\":42}}";
    ck_assert_int_eq(job_parse_request(read_body, strlen(read_body), JOB_TYPE_UNKNOWN,
                                       BURN_DEFAULT, BURN_MAX, &jr, &err),
                     0);
    ck_assert_int_eq(jr.type, JOB_READ);
    ck_assert_int_eq(jr.item_id, 42);
    static const char burn_body[] = "{\"type\":\"burn\",\"params\":{\"seconds\":12}}";
    ck_assert_int_eq(job_parse_request(burn_body, strlen(burn_body), JOB_TYPE_UNKNOWN,
                                       BURN_DEFAULT, BURN_MAX, &jr, &err),
                     0);
    ck_assert_int_eq(jr.type, JOB_BURN);
    ck_assert_int_eq(jr.seconds, 12);
    /* The default and the maximum come from the caller. */
    static const char none[] = "{\"type\":\"burn\"}";
    ck_assert_int_eq(job_parse_request(none, strlen(none), JOB_TYPE_UNKNOWN, 2, 5, &jr, &err), 0);
    ck_assert_int_eq(jr.seconds, 2);
    ck_assert_str_eq(jr.params_json, "{\"seconds\":2}");
    static const char six[] = "{\"seconds\":6}";
    ck_assert_int_eq(job_parse_request(six, strlen(six), JOB_BURN, 2, 5, &jr, &err), -1);
    ck_assert_str_eq(err.code, "bad_params");
    ck_assert_ptr_nonnull(strstr(err.message, "5"));
}
END_TEST

START_TEST(parse_request_uses_only_len_bytes)
{
    /* The body is not NUL-terminated at len: what follows must be ignored. */
    static const char body[] = "{\"type\":\"burn\",\"params\":{\"seconds\":3}}GARBAGE";
    struct job_request jr;
    struct job_error err;
    ck_assert_int_eq(job_parse_request(body, strlen(body) - 7, JOB_TYPE_UNKNOWN, BURN_DEFAULT,
                                       BURN_MAX, &jr, &err),
                     0);
    ck_assert_int_eq(jr.seconds, 3);
}
END_TEST

START_TEST(long_unknown_parameter_name_is_cut_in_the_message)
{
    struct buf body = {0};
    struct job_request jr;
    struct job_error err;
    buf_puts(&body, "{\"");
    for (int k = 0; k < 300; k++)
        buf_puts(&body, "k");
    buf_puts(&body, "\":1}");
    ck_assert_int_eq(
        job_parse_request(body.data, body.len, JOB_READ, BURN_DEFAULT, BURN_MAX, &jr, &err), -1);
    ck_assert_str_eq(err.code, "bad_params");
    ck_assert_uint_lt(strlen(err.message), sizeof err.message);
    buf_free(&body);
}
END_TEST

START_TEST(parse_params)
{
    struct job_request jr;
    struct job_error err;
    ck_assert_int_eq(job_parse_params(JOB_READ, "{\"item_id\":42}", 14, BURN_DEFAULT, BURN_MAX,
                                      &jr, &err),
                     0);
    ck_assert_int_eq(jr.type, JOB_READ);
    ck_assert_int_eq(jr.item_id, 42);
    ck_assert_str_eq(jr.params_json, "{\"item_id\":42}");
    ck_assert_int_eq(
        job_parse_params(JOB_BURN, "{\"seconds\":2}", 13, BURN_DEFAULT, BURN_MAX, &jr, &err), 0);
    ck_assert_int_eq(jr.type, JOB_BURN);
    ck_assert_int_eq(jr.seconds, 2);
    ck_assert_int_eq(job_parse_params(JOB_BURN, "{}", 2, 7, BURN_MAX, &jr, &err), 0);
    ck_assert_int_eq(jr.seconds, 7);
    /* Stored params over a lower maximum are refused. */
    ck_assert_int_eq(job_parse_params(JOB_BURN, "{\"seconds\":2}", 13, 1, 1, &jr, &err), -1);
    ck_assert_str_eq(err.code, "bad_params");
    ck_assert_int_eq(
        job_parse_params(JOB_READ, "{\"item_id\":-3}", 14, BURN_DEFAULT, BURN_MAX, &jr, &err), -1);
    ck_assert_str_eq(err.code, "bad_params");
    ck_assert_int_eq(
        job_parse_params(JOB_READ, "{\"item_id\"", 10, BURN_DEFAULT, BURN_MAX, &jr, &err), -1);
    ck_assert_str_eq(err.code, "bad_json");
    ck_assert_int_eq(err.status, 400);
}
END_TEST

/* ---- key names ---- */

START_TEST(default_key_names)
{
    /* A fresh process (Check forks each test) that never set a prefix. */
    struct buf b = {0};
    ck_assert_str_eq(key_queue(JOB_READ), "surge:queue:read");
    ck_assert_str_eq(key_queue(JOB_BURN), "surge:queue:burn");
    ck_assert_str_eq(key_queue_prefix(), "surge:queue:");
    ck_assert_str_eq(key_shared_queue(), "surge:queue");
    ck_assert_str_eq(key_retry(), "surge:retry");
    ck_assert_str_eq(key_dead(), "surge:dead");
    ck_assert_str_eq(keys_prefix(), "surge:");
    key_job(&b, "01ARZ3NDEKTSV4RRFFQ69G5FAV");
    ck_assert_str_eq(b.data, "surge:job:01ARZ3NDEKTSV4RRFFQ69G5FAV");
    buf_free(&b);
}
END_TEST

START_TEST(default_job_key_before_any_list_key)
{
    struct buf b = {0};
    key_job(&b, "ID");
    ck_assert_str_eq(b.data, "surge:job:ID");
    buf_free(&b);
    key_processing(&b, "host-1");
    ck_assert_str_eq(b.data, "surge:processing:host-1");
    buf_free(&b);
    key_heartbeat(&b, "host-1");
    ck_assert_str_eq(b.data, "surge:worker:host-1");
    buf_free(&b);
}
END_TEST

START_TEST(custom_prefix)
{
    struct buf b = {0};
    keys_set_prefix("x:");
    ck_assert_str_eq(keys_prefix(), "x:");
    ck_assert_str_eq(key_queue(JOB_READ), "x:queue:read");
    ck_assert_str_eq(key_queue(JOB_BURN), "x:queue:burn");
    ck_assert_str_eq(key_queue_prefix(), "x:queue:");
    ck_assert_str_eq(key_shared_queue(), "x:queue");
    ck_assert_str_eq(key_retry(), "x:retry");
    ck_assert_str_eq(key_dead(), "x:dead");
    key_job(&b, "01ARZ3NDEKTSV4RRFFQ69G5FAV");
    ck_assert_str_eq(b.data, "x:job:01ARZ3NDEKTSV4RRFFQ69G5FAV");
    buf_free(&b);
    key_processing(&b, "w1");
    ck_assert_str_eq(b.data, "x:processing:w1");
    buf_free(&b);
    key_heartbeat(&b, "w1");
    ck_assert_str_eq(b.data, "x:worker:w1");
    buf_free(&b);

    keys_set_prefix("surge:");
    ck_assert_str_eq(keys_prefix(), "surge:");
    ck_assert_str_eq(key_queue(JOB_BURN), "surge:queue:burn");
    ck_assert_str_eq(key_dead(), "surge:dead");
    key_job(&b, "ID");
    ck_assert_str_eq(b.data, "surge:job:ID");
    buf_free(&b);
}
END_TEST

START_TEST(empty_and_long_prefix)
{
    char prefix[65];
    memset(prefix, 'p', 64);
    prefix[63] = ':';
    prefix[64] = '\0';
    keys_set_prefix(prefix);
    ck_assert_str_eq(keys_prefix(), prefix);
    ck_assert_uint_eq(strlen(key_queue(JOB_READ)), 64 + 10);
    ck_assert_int_eq(strncmp(key_queue(JOB_READ), prefix, 64), 0);
    ck_assert_str_eq(key_queue(JOB_READ) + 64, "queue:read");
    ck_assert_str_eq(key_shared_queue() + 64, "queue");
    keys_set_prefix("");
    ck_assert_str_eq(key_queue(JOB_BURN), "queue:burn");
    keys_set_prefix("surge:");
}
END_TEST

Suite *job_suite(void)
{
    Suite *s = suite_create("job");
    TCase *tc = tcase_create("ids");
    tcase_add_test(tc, new_id_is_26_crockford_characters);
    tcase_add_test(tc, new_ids_strictly_increase);
    tcase_add_test(tc, id_valid_accepts);
    tcase_add_test(tc, id_valid_refuses);
    tcase_add_test(tc, type_and_status_names);
    suite_add_tcase(s, tc);

    tc = tcase_create("requests");
    tcase_add_loop_test(tc, parse_request_cases, 0, (int)ARRAY_LEN(requests));
    tcase_add_test(tc, parse_request_fields);
    tcase_add_test(tc, parse_request_uses_only_len_bytes);
    tcase_add_test(tc, long_unknown_parameter_name_is_cut_in_the_message);
    tcase_add_test(tc, parse_params);
    suite_add_tcase(s, tc);

    tc = tcase_create("keys");
    tcase_add_test(tc, default_key_names);
    tcase_add_test(tc, default_job_key_before_any_list_key);
    tcase_add_test(tc, custom_prefix);
    tcase_add_test(tc, empty_and_long_prefix);
    suite_add_tcase(s, tc);
    return s;
}
