/* Unit tests for api/routes.c routes_match: every route with every method,
 * the id in /jobs/{id}, and paths that match nothing. */
#include "suites.h"

#include "../../api/routes.h"
#include "util.h"

#include <string.h>

static const enum llhttp_method methods[] = {HTTP_GET,    HTTP_HEAD,  HTTP_POST,   HTTP_PUT,
                                           HTTP_DELETE, HTTP_PATCH, HTTP_OPTIONS};

static void match(enum llhttp_method method, const char *path, struct route_match *m)
{
    /* Poison first: routes_match must fill in every field. */
    memset(m, 0x5a, sizeof *m);
    routes_match(method, path, strlen(path), m);
}

static const struct {
    const char *path;
    enum api_route route;
    const char *label;
    const char *allow;
} routes[] = {
    {"/jobs", ROUTE_JOBS, "/jobs", "POST"},
    {"/jobs/", ROUTE_JOBS, "/jobs", "POST"},
    {"/jobs/read", ROUTE_JOBS_READ, "/jobs/read", "POST"},
    {"/jobs/burn", ROUTE_JOBS_BURN, "/jobs/burn", "POST"},
    {"/jobs/01JDXABCDEFGHJKMNPQRSTVWXY", ROUTE_JOB, "/jobs/{id}", "GET"},
    {"/jobs/x", ROUTE_JOB, "/jobs/{id}", "GET"},
};

START_TEST(route_with_every_method)
{
    for (size_t k = 0; k < ARRAY_LEN(methods); k++) {
        struct route_match m;
        enum llhttp_method method = methods[k];
        match(method, routes[_i].path, &m);
        ck_assert_int_eq(m.route, routes[_i].route);
        ck_assert_str_eq(m.label, routes[_i].label);
        ck_assert_str_eq(m.allow, routes[_i].allow);
        bool want_ok = routes[_i].route == ROUTE_JOB
                           ? (method == HTTP_GET || method == HTTP_HEAD)
                           : method == HTTP_POST;
        ck_assert_msg(m.method_ok == want_ok, "%s %s: method_ok %d", llhttp_method_name((llhttp_method_t)method),
                      routes[_i].path, m.method_ok);
    }
}
END_TEST

START_TEST(jobs_post_ok_get_not)
{
    struct route_match m;
    match(HTTP_POST, "/jobs", &m);
    ck_assert_int_eq(m.route, ROUTE_JOBS);
    ck_assert(m.method_ok);
    match(HTTP_GET, "/jobs", &m);
    ck_assert_int_eq(m.route, ROUTE_JOBS);
    ck_assert(!m.method_ok);
    ck_assert_str_eq(m.allow, "POST");
}
END_TEST

START_TEST(job_id_points_into_the_path)
{
    static const char path[] = "/jobs/01JDXABCDEFGHJKMNPQRSTVWXY";
    struct route_match m;
    routes_match(HTTP_GET, path, strlen(path), &m);
    ck_assert_int_eq(m.route, ROUTE_JOB);
    ck_assert(m.method_ok);
    ck_assert_ptr_eq(m.id, path + 6);
    ck_assert_uint_eq(m.id_len, 26);
    routes_match(HTTP_HEAD, path, strlen(path), &m);
    ck_assert(m.method_ok);
    ck_assert_ptr_eq(m.id, path + 6);
    routes_match(HTTP_POST, path, strlen(path), &m);
    ck_assert_int_eq(m.route, ROUTE_JOB);
    ck_assert(!m.method_ok);
    ck_assert_str_eq(m.allow, "GET");
    routes_match(HTTP_DELETE, path, strlen(path), &m);
    ck_assert(!m.method_ok);
}
END_TEST

START_TEST(path_length_is_respected)
{
    /* Only the first path_len bytes count: "/jobs/readXYZ" cut to 10 is /jobs/read. */
    static const char path[] = "/jobs/readXYZ";
    struct route_match m;
    routes_match(HTTP_POST, path, 10, &m);
    ck_assert_int_eq(m.route, ROUTE_JOBS_READ);
    routes_match(HTTP_POST, path, 5, &m);
    ck_assert_int_eq(m.route, ROUTE_JOBS);
    routes_match(HTTP_GET, path, 8, &m);
    ck_assert_int_eq(m.route, ROUTE_JOB);
    ck_assert_uint_eq(m.id_len, 2);
}
END_TEST

static const char *const unknown_paths[] = {
    "/",          "",           "/job",          "/jobs/a/b",     "/jobsx",
    "/jobs//",    "/JOBS",      "/jobs/read/",   "/jobs/burn/x",  "jobs",
    "//jobs",     "/healthz",   "/metrics",      "/jobs/a/",      "/api/jobs",
};

START_TEST(unknown_paths_match_nothing)
{
    for (size_t k = 0; k < ARRAY_LEN(methods); k++) {
        struct route_match m;
        match(methods[k], unknown_paths[_i], &m);
        ck_assert_msg(m.route == ROUTE_NONE, "%s \"%s\": route %d", llhttp_method_name(methods[k]),
                      unknown_paths[_i], (int)m.route);
        ck_assert_str_eq(m.label, "unknown");
    }
}
END_TEST

Suite *routes_suite(void)
{
    Suite *s = suite_create("routes");
    TCase *tc = tcase_create("match");
    tcase_add_loop_test(tc, route_with_every_method, 0, (int)ARRAY_LEN(routes));
    tcase_add_test(tc, jobs_post_ok_get_not);
    tcase_add_test(tc, job_id_points_into_the_path);
    tcase_add_test(tc, path_length_is_respected);
    tcase_add_loop_test(tc, unknown_paths_match_nothing, 0, (int)ARRAY_LEN(unknown_paths));
    suite_add_tcase(s, tc);
    return s;
}
