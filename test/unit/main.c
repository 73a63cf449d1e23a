/* unit-tests: runs every suite; each test runs in a forked child (CK_FORK),
 * so a crash or a sanitizer report is pinned to one test. The exit status is
 * non-zero when any test fails. */
#include "suites.h"

#include <stdlib.h>

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_add_suite(sr, http_parse_suite());
    srunner_add_suite(sr, http_smuggling_suite());
    srunner_add_suite(sr, routes_suite());
    srunner_add_suite(sr, idempotency_suite());
    srunner_add_suite(sr, json_reader_suite());
    srunner_add_suite(sr, json_writer_suite());
    srunner_add_suite(sr, job_suite());
    srunner_add_suite(sr, burn_suite());
    srunner_add_suite(sr, util_suite());
    srunner_add_suite(sr, buf_suite());
    srunner_add_suite(sr, resp_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
