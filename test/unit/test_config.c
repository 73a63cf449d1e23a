/* Unit tests for common/config.c: defaults, integer ranges, enums, the Redis
 * URL, error lines, and the burn default/max cross-check. The environment is
 * a table read through a fake getenv. */
#include "suites.h"

#include "config.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

/* ---- the fake environment ---- */

struct env_var {
    const char *name;
    const char *value;
};

static struct env_var env[16];
static size_t env_count;

static void env_clear(void)
{
    env_count = 0;
}

static void env_set(const char *name, const char *value)
{
    ck_assert_uint_lt(env_count, ARRAY_LEN(env));
    env[env_count].name = name;
    env[env_count].value = value;
    env_count++;
}

static const char *fake_getenv(const char *name)
{
    for (size_t i = 0; i < env_count; i++)
        if (!strcmp(env[i].name, name))
            return env[i].value;
    return NULL;
}

/* Loads with only name=value set; returns cfg_load's result. */
static int load_one(struct cfg *cfg, const char *name, const char *value, char *err,
                    size_t errlen)
{
    env_clear();
    env_set(name, value);
    return cfg_load(cfg, fake_getenv, err, errlen);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (*s == '\n')
            n++;
    return n;
}

/* ---- defaults (docs/architecture.md, "Configuration") ---- */

START_TEST(defaults_match_the_documented_table)
{
    struct cfg cfg;
    char err[512];
    env_clear();
    ck_assert_int_eq(cfg_load(&cfg, fake_getenv, err, sizeof err), 0);
    ck_assert_str_eq(err, "");
    ck_assert_str_eq(cfg.redis_url, "redis://127.0.0.1:6379/0");
    ck_assert_str_eq(cfg.redis_host, "127.0.0.1");
    ck_assert_int_eq(cfg.redis_port, 6379);
    ck_assert_int_eq(cfg.redis_db, 0);
    ck_assert_str_eq(cfg.redis_username, "");
    ck_assert_str_eq(cfg.redis_password, "");
    ck_assert_int_eq(cfg.redis_timeout_ms, 1000);
    ck_assert_str_eq(cfg.pg_dsn, "host=127.0.0.1 port=5432 dbname=surge user=surge");
    ck_assert_str_eq(cfg.bind_address, "0.0.0.0");
    ck_assert_int_eq(cfg.http_port, 8080);
    ck_assert_int_eq(cfg.admin_port, 9090);
    ck_assert_int_eq(cfg.burn_concurrency, 1);
    ck_assert_int_eq(cfg.read_concurrency, 4);
    ck_assert_int_eq(cfg.burn_default_seconds, 180);
    ck_assert_int_eq(cfg.burn_max_seconds, 600);
    ck_assert_int_eq(cfg.max_attempts, 5);
    ck_assert_int_eq(cfg.result_ttl_seconds, 86400);
    ck_assert_int_eq(cfg.max_body_bytes, 16384);
    ck_assert_int_eq(cfg.max_connections, 1024);
    ck_assert_int_eq(cfg.header_timeout_seconds, 10);
    ck_assert_int_eq(cfg.idle_timeout_seconds, 60);
    ck_assert_int_eq(cfg.shutdown_grace_seconds, 30);
    ck_assert_int_eq(cfg.dead_list_max, 10000);
    ck_assert_int_eq(cfg.log_level, LOG_INFO);
    ck_assert_int_eq(cfg.log_format, LOG_FORMAT_JSON);
    ck_assert_str_eq(cfg.key_prefix, "surge:");
    cfg_free(&cfg);
}
END_TEST

START_TEST(values_from_the_environment_are_used)
{
    struct cfg cfg;
    char err[512];
    env_clear();
    env_set("SURGE_HTTP_PORT", "18080");
    env_set("SURGE_ADMIN_PORT", "19090");
    env_set("SURGE_WORKER_BURN_CONCURRENCY", "3");
    env_set("SURGE_WORKER_READ_CONCURRENCY", "16");
    env_set("SURGE_BURN_DEFAULT_SECONDS", "2");
    env_set("SURGE_BURN_MAX_SECONDS", "30");
    env_set("SURGE_REDIS_USERNAME", "app");
    env_set("SURGE_REDIS_PASSWORD", "pw");
    env_set("SURGE_PG_DSN", "host=db dbname=x");
    env_set("SURGE_BIND_ADDRESS", "127.0.0.1");
    env_set("SURGE_KEY_PREFIX", "test:");
    ck_assert_int_eq(cfg_load(&cfg, fake_getenv, err, sizeof err), 0);
    ck_assert_int_eq(cfg.http_port, 18080);
    ck_assert_int_eq(cfg.admin_port, 19090);
    ck_assert_int_eq(cfg.burn_concurrency, 3);
    ck_assert_int_eq(cfg.read_concurrency, 16);
    ck_assert_int_eq(cfg.burn_default_seconds, 2);
    ck_assert_int_eq(cfg.burn_max_seconds, 30);
    ck_assert_str_eq(cfg.redis_username, "app");
    ck_assert_str_eq(cfg.redis_password, "pw");
    ck_assert_str_eq(cfg.pg_dsn, "host=db dbname=x");
    ck_assert_str_eq(cfg.bind_address, "127.0.0.1");
    ck_assert_str_eq(cfg.key_prefix, "test:");
    cfg_free(&cfg);
}
END_TEST

/* ---- integer variables ---- */

/* Every integer variable with the bounds config.c gives it. */
static const struct {
    const char *name;
    long min, max;
} int_vars[] = {
    {"SURGE_REDIS_TIMEOUT_MS", 10, 60000},
    {"SURGE_HTTP_PORT", 1, 65535},
    {"SURGE_ADMIN_PORT", 1, 65535},
    {"SURGE_WORKER_BURN_CONCURRENCY", 1, 256},
    {"SURGE_WORKER_READ_CONCURRENCY", 1, 256},
    {"SURGE_BURN_DEFAULT_SECONDS", 1, 86400},
    {"SURGE_BURN_MAX_SECONDS", 1, 86400},
    {"SURGE_MAX_ATTEMPTS", 1, 100},
    {"SURGE_RESULT_TTL_SECONDS", 1, 31536000},
    {"SURGE_MAX_BODY_BYTES", 64, 1048576},
    {"SURGE_MAX_CONNECTIONS", 1, 1000000},
    {"SURGE_HEADER_TIMEOUT_SECONDS", 1, 3600},
    {"SURGE_IDLE_TIMEOUT_SECONDS", 1, 3600},
    {"SURGE_SHUTDOWN_GRACE_SECONDS", 0, 3600},
    {"SURGE_HEARTBEAT_SECONDS", 3, 600},
    {"SURGE_JOB_TIMEOUT_SECONDS", 1, 86400},
    {"SURGE_DEAD_LIST_MAX", 1, 10000000},
};

/* Values no integer variable accepts, whatever its range. */
static const char *const not_integers[] = {
    "abc", "", "12x", "x12", "1.5", "1e3", "0x10", "-1", "99999999999", "99999999999999999999999",
};

/* How the error line quotes a value: credentials in a URL are masked. */
static const char *shown(const char *name, const char *value)
{
    return strcmp(name, "SURGE_REDIS_URL") == 0 && strchr(value, '@') ? "***" : value;
}

static void expect_rejected(const char *name, const char *value)
{
    struct cfg cfg;
    char err[512];
    char want[128];
    int bad = load_one(&cfg, name, value, err, sizeof err);
    ck_assert_msg(bad == 1, "%s=\"%s\": cfg_load returned %d, expected 1", name, value, bad);
    /* The line names the variable and quotes the value. */
    snprintf(want, sizeof want, "%s: \"%s\" ", name, shown(name, value));
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s=\"%s\": error line is \"%s\"", name,
                  value, err);
    ck_assert_uint_eq(count_lines(err), 1);
    cfg_free(&cfg);
}

START_TEST(each_integer_variable_rejects_non_numbers)
{
    for (size_t k = 0; k < ARRAY_LEN(not_integers); k++)
        expect_rejected(int_vars[_i].name, not_integers[k]);
}
END_TEST

START_TEST(each_integer_variable_rejects_out_of_range)
{
    char below[32], above[32];
    snprintf(below, sizeof below, "%ld", int_vars[_i].min - 1);
    snprintf(above, sizeof above, "%ld", int_vars[_i].max + 1);
    expect_rejected(int_vars[_i].name, below);
    expect_rejected(int_vars[_i].name, above);
}
END_TEST

START_TEST(each_integer_variable_accepts_its_bounds)
{
    const char *name = int_vars[_i].name;
    long bounds[2] = {int_vars[_i].min, int_vars[_i].max};
    for (int k = 0; k < 2; k++) {
        struct cfg cfg;
        char err[512], value[32];
        snprintf(value, sizeof value, "%ld", bounds[k]);
        env_clear();
        env_set(name, value);
        /* Keep the burn cross-check out of the way of the bound under test. */
        if (!strcmp(name, "SURGE_BURN_DEFAULT_SECONDS"))
            env_set("SURGE_BURN_MAX_SECONDS", "86400");
        if (!strcmp(name, "SURGE_BURN_MAX_SECONDS"))
            env_set("SURGE_BURN_DEFAULT_SECONDS", "1");
        int bad = cfg_load(&cfg, fake_getenv, err, sizeof err);
        ck_assert_msg(bad == 0, "%s=%s refused: %s", name, value, err);
        cfg_free(&cfg);
    }
}
END_TEST

START_TEST(port_error_line_matches_the_documentation)
{
    struct cfg cfg;
    char err[512];
    ck_assert_int_eq(load_one(&cfg, "SURGE_HTTP_PORT", "abc", err, sizeof err), 1);
    ck_assert_str_eq(err, "SURGE_HTTP_PORT: \"abc\" is not a whole number between 1 and 65535\n");
    cfg_free(&cfg);
}
END_TEST

/* ---- log level and format ---- */

START_TEST(log_format_json_text_and_xml)
{
    struct cfg cfg;
    char err[512];
    ck_assert_int_eq(load_one(&cfg, "SURGE_LOG_FORMAT", "json", err, sizeof err), 0);
    ck_assert_int_eq(cfg.log_format, LOG_FORMAT_JSON);
    cfg_free(&cfg);
    ck_assert_int_eq(load_one(&cfg, "SURGE_LOG_FORMAT", "text", err, sizeof err), 0);
    ck_assert_int_eq(cfg.log_format, LOG_FORMAT_TEXT);
    cfg_free(&cfg);
    ck_assert_int_eq(load_one(&cfg, "SURGE_LOG_FORMAT", "xml", err, sizeof err), 1);
    ck_assert_ptr_nonnull(strstr(err, "SURGE_LOG_FORMAT: \"xml\""));
    cfg_free(&cfg);
    ck_assert_int_eq(load_one(&cfg, "SURGE_LOG_FORMAT", "", err, sizeof err), 1);
    ck_assert_ptr_nonnull(strstr(err, "SURGE_LOG_FORMAT"));
    cfg_free(&cfg);
}
END_TEST

START_TEST(log_level_names)
{
    static const struct {
        const char *name;
        enum log_level level;
    } levels[] = {
        {"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"warn", LOG_WARN}, {"error", LOG_ERROR}};
    struct cfg cfg;
    char err[512];
    for (size_t k = 0; k < ARRAY_LEN(levels); k++) {
        ck_assert_int_eq(load_one(&cfg, "SURGE_LOG_LEVEL", levels[k].name, err, sizeof err), 0);
        ck_assert_int_eq(cfg.log_level, levels[k].level);
        cfg_free(&cfg);
    }
    static const char *const bad[] = {"verbose", "", "warning", "info "};
    for (size_t k = 0; k < ARRAY_LEN(bad); k++) {
        ck_assert_int_eq(load_one(&cfg, "SURGE_LOG_LEVEL", bad[k], err, sizeof err), 1);
        ck_assert_ptr_nonnull(strstr(err, "SURGE_LOG_LEVEL: \""));
        cfg_free(&cfg);
    }
}
END_TEST

/* ---- SURGE_REDIS_URL ---- */

START_TEST(redis_url_host_port_db)
{
    static const struct {
        const char *url;
        const char *host;
        int port, db;
    } ok[] = {
        {"redis://cache.local:6380/3", "cache.local", 6380, 3},
        {"redis://redis", "redis", 6379, 0},
        {"redis://redis:7000", "redis", 7000, 0},
        {"redis://10.0.0.5/15", "10.0.0.5", 6379, 15},
        {"redis://redis.surge-data.svc:6379/0", "redis.surge-data.svc", 6379, 0},
        {"redis://h:1/", "h", 1, 0},
    };
    for (size_t k = 0; k < ARRAY_LEN(ok); k++) {
        struct cfg cfg;
        char err[512];
        int bad = load_one(&cfg, "SURGE_REDIS_URL", ok[k].url, err, sizeof err);
        ck_assert_msg(bad == 0, "%s refused: %s", ok[k].url, err);
        ck_assert_str_eq(cfg.redis_url, ok[k].url);
        ck_assert_str_eq(cfg.redis_host, ok[k].host);
        ck_assert_int_eq(cfg.redis_port, ok[k].port);
        ck_assert_int_eq(cfg.redis_db, ok[k].db);
        cfg_free(&cfg);
    }
}
END_TEST

static const char *const bad_redis_urls[] = {
    "http://x",      "redis://",         "redis://u:p@h",     "redis://h:0",
    "redis://h:abc", "redis://h:",       "redis://h:65536",   "redis://h:6379x/0",
    "redis://:6379", "redis://h/16",     "redis://h/x",       "redis://h:6379/0/1",
    "",              "rediss://h:6379/0", "redis://h:123456789/0",
};

START_TEST(redis_url_rejected)
{
    expect_rejected("SURGE_REDIS_URL", bad_redis_urls[_i]);
}
END_TEST

START_TEST(redis_password_never_echoed)
{
    struct cfg cfg;
    char err[512];
    /* Credentials in the URL are refused, and the refusal must not print them. */
    int bad = load_one(&cfg, "SURGE_REDIS_URL", "redis://app:hunter2secret@redis:6379/0", err,
                       sizeof err);
    ck_assert_int_eq(bad, 1);
    ck_assert_ptr_nonnull(strstr(err, "SURGE_REDIS_URL"));
    ck_assert_msg(strstr(err, "hunter2secret") == NULL, "the password is echoed: %s", err);
    cfg_free(&cfg);
}
END_TEST

START_TEST(redis_password_variable_not_echoed_with_other_errors)
{
    struct cfg cfg;
    char err[1024];
    env_clear();
    env_set("SURGE_REDIS_PASSWORD", "topsecretpw");
    env_set("SURGE_HTTP_PORT", "abc");
    env_set("SURGE_REDIS_URL", "http://x");
    ck_assert_int_eq(cfg_load(&cfg, fake_getenv, err, sizeof err), 2);
    ck_assert_ptr_null(strstr(err, "topsecretpw"));
    cfg_free(&cfg);
}
END_TEST

/* ---- several errors, error buffer ---- */

START_TEST(every_bad_variable_is_reported)
{
    struct cfg cfg;
    char err[2048];
    env_clear();
    env_set("SURGE_HTTP_PORT", "abc");
    env_set("SURGE_LOG_FORMAT", "xml");
    env_set("SURGE_MAX_ATTEMPTS", "0");
    env_set("SURGE_REDIS_URL", "http://x");
    env_set("SURGE_LOG_LEVEL", "loud");
    ck_assert_int_eq(cfg_load(&cfg, fake_getenv, err, sizeof err), 5);
    ck_assert_uint_eq(count_lines(err), 5);
    ck_assert_ptr_nonnull(strstr(err, "SURGE_HTTP_PORT: \"abc\""));
    ck_assert_ptr_nonnull(strstr(err, "SURGE_LOG_FORMAT: \"xml\""));
    ck_assert_ptr_nonnull(strstr(err, "SURGE_MAX_ATTEMPTS: \"0\""));
    ck_assert_ptr_nonnull(strstr(err, "SURGE_REDIS_URL: \"http://x\""));
    ck_assert_ptr_nonnull(strstr(err, "SURGE_LOG_LEVEL: \"loud\""));
    cfg_free(&cfg);
}
END_TEST

START_TEST(small_or_missing_error_buffer)
{
    struct cfg cfg;
    char err[24];
    memset(err, 'z', sizeof err);
    env_clear();
    env_set("SURGE_HTTP_PORT", "abc");
    env_set("SURGE_ADMIN_PORT", "abc");
    env_set("SURGE_MAX_ATTEMPTS", "abc");
    /* Truncated, but NUL-terminated inside the buffer (ASan checks the bounds). */
    ck_assert_int_eq(cfg_load(&cfg, fake_getenv, err, sizeof err), 3);
    ck_assert_ptr_nonnull(memchr(err, '\0', sizeof err));
    ck_assert_int_eq(strncmp(err, "SURGE_HTTP_PORT", 15), 0);
    cfg_free(&cfg);
    ck_assert_int_eq(cfg_load(&cfg, fake_getenv, NULL, 0), 3);
    cfg_free(&cfg);
}
END_TEST

/* ---- burn default against burn max ---- */

START_TEST(burn_default_above_max_is_refused)
{
    struct cfg cfg;
    char err[512];
    env_clear();
    env_set("SURGE_BURN_DEFAULT_SECONDS", "10");
    env_set("SURGE_BURN_MAX_SECONDS", "5");
    ck_assert_int_eq(cfg_load(&cfg, fake_getenv, err, sizeof err), 1);
    ck_assert_ptr_nonnull(strstr(err, "SURGE_BURN_DEFAULT_SECONDS"));
    ck_assert_ptr_nonnull(strstr(err, "SURGE_BURN_MAX_SECONDS"));
    cfg_free(&cfg);

    /* The default alone above the default maximum (600). */
    ck_assert_int_eq(load_one(&cfg, "SURGE_BURN_DEFAULT_SECONDS", "700", err, sizeof err), 1);
    ck_assert_ptr_nonnull(strstr(err, "SURGE_BURN_DEFAULT_SECONDS"));
    cfg_free(&cfg);

    /* Equal is fine. */
    env_clear();
    env_set("SURGE_BURN_DEFAULT_SECONDS", "5");
    env_set("SURGE_BURN_MAX_SECONDS", "5");
    ck_assert_int_eq(cfg_load(&cfg, fake_getenv, err, sizeof err), 0);
    cfg_free(&cfg);
}
END_TEST

/* ---- a retired variable ---- */

START_TEST(the_retired_concurrency_variable_is_refused_whatever_its_value)
{
    struct cfg cfg;
    char err[512];
    static const char *const values[] = {"4", "1", "", "many"};
    for (size_t i = 0; i < ARRAY_LEN(values); i++) {
        ck_assert_int_eq(load_one(&cfg, "SURGE_WORKER_CONCURRENCY", values[i], err, sizeof err),
                         1);
        char want[64];
        snprintf(want, sizeof want, "SURGE_WORKER_CONCURRENCY: \"%s\" is no longer read: ",
                 values[i]);
        ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "error line is \"%s\"", err);
        ck_assert_ptr_nonnull(strstr(err, "SURGE_WORKER_BURN_CONCURRENCY"));
        ck_assert_ptr_nonnull(strstr(err, "SURGE_WORKER_READ_CONCURRENCY"));
        ck_assert_uint_eq(count_lines(err), 1);
        cfg_free(&cfg);
    }
    /* Absent, it changes nothing: the defaults load. */
    env_clear();
    ck_assert_int_eq(cfg_load(&cfg, fake_getenv, err, sizeof err), 0);
    cfg_free(&cfg);
}
END_TEST

START_TEST(key_prefix_limits)
{
    struct cfg cfg;
    char err[512];
    char long_prefix[80];
    memset(long_prefix, 'p', 65);
    long_prefix[65] = '\0';
    ck_assert_int_eq(load_one(&cfg, "SURGE_KEY_PREFIX", long_prefix, err, sizeof err), 1);
    ck_assert_ptr_nonnull(strstr(err, "SURGE_KEY_PREFIX"));
    cfg_free(&cfg);
    ck_assert_int_eq(load_one(&cfg, "SURGE_KEY_PREFIX", "a b:", err, sizeof err), 1);
    cfg_free(&cfg);
    long_prefix[64] = '\0';
    ck_assert_int_eq(load_one(&cfg, "SURGE_KEY_PREFIX", long_prefix, err, sizeof err), 0);
    ck_assert_str_eq(cfg.key_prefix, long_prefix);
    cfg_free(&cfg);
    ck_assert_int_eq(load_one(&cfg, "SURGE_KEY_PREFIX", "Surge_2.test-a:", err, sizeof err), 0);
    ck_assert_str_eq(cfg.key_prefix, "Surge_2.test-a:");
    cfg_free(&cfg);
    ck_assert_int_eq(load_one(&cfg, "SURGE_KEY_PREFIX", "", err, sizeof err), 0);
    cfg_free(&cfg);
}
END_TEST

/* Glob syntax, quotes and the like in a key name (a prefix such as "s[1]:"
 * once kept a dead worker's jobs from ever being recovered). */
static const char *const bad_prefixes[] = {
    "s[1]:", "s*:", "s?:", "s\\:", "s{a}:", "s\"q:", "s'q:", "s/x:", "s\xc3\xa9:", "s^:",
};

START_TEST(key_prefix_characters)
{
    const char *value = bad_prefixes[_i];
    struct cfg cfg;
    char err[512], want[128];
    ck_assert_int_eq(load_one(&cfg, "SURGE_KEY_PREFIX", value, err, sizeof err), 1);
    snprintf(want, sizeof want, "SURGE_KEY_PREFIX: \"%s\" must be at most 64 characters among "
                                "A-Z a-z 0-9 _ . : -\n",
             value);
    ck_assert_str_eq(err, want);
    cfg_free(&cfg);
}
END_TEST

START_TEST(cfg_free_twice_is_harmless)
{
    struct cfg cfg;
    env_clear();
    ck_assert_int_eq(cfg_load(&cfg, fake_getenv, NULL, 0), 0);
    cfg_free(&cfg);
    ck_assert_ptr_null(cfg.redis_url);
    ck_assert_ptr_null(cfg.redis_host);
    cfg_free(&cfg);
}
END_TEST

Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("defaults");
    tcase_add_test(tc, defaults_match_the_documented_table);
    tcase_add_test(tc, values_from_the_environment_are_used);
    tcase_add_test(tc, cfg_free_twice_is_harmless);
    suite_add_tcase(s, tc);

    tc = tcase_create("integers");
    tcase_add_loop_test(tc, each_integer_variable_rejects_non_numbers, 0, (int)ARRAY_LEN(int_vars));
    tcase_add_loop_test(tc, each_integer_variable_rejects_out_of_range, 0,
                        (int)ARRAY_LEN(int_vars));
    tcase_add_loop_test(tc, each_integer_variable_accepts_its_bounds, 0, (int)ARRAY_LEN(int_vars));
    tcase_add_test(tc, port_error_line_matches_the_documentation);
    suite_add_tcase(s, tc);

    tc = tcase_create("logging");
    tcase_add_test(tc, log_format_json_text_and_xml);
    tcase_add_test(tc, log_level_names);
    suite_add_tcase(s, tc);

    tc = tcase_create("redis_url");
    tcase_add_test(tc, redis_url_host_port_db);
    tcase_add_loop_test(tc, redis_url_rejected, 0, (int)ARRAY_LEN(bad_redis_urls));
    tcase_add_test(tc, redis_password_never_echoed);
    tcase_add_test(tc, redis_password_variable_not_echoed_with_other_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, every_bad_variable_is_reported);
    tcase_add_test(tc, small_or_missing_error_buffer);
    tcase_add_test(tc, burn_default_above_max_is_refused);
    tcase_add_test(tc, the_retired_concurrency_variable_is_refused_whatever_its_value);
    tcase_add_test(tc, key_prefix_limits);
    tcase_add_loop_test(tc, key_prefix_characters, 0, (int)ARRAY_LEN(bad_prefixes));
    suite_add_tcase(s, tc);
    return s;
}
