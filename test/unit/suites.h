/* suites: one Check suite per module under test; main.c runs them all. */
#ifndef SURGE_TEST_UNIT_SUITES_H
#define SURGE_TEST_UNIT_SUITES_H

#include <check.h>

Suite *config_suite(void);
Suite *http_parse_suite(void);
Suite *http_smuggling_suite(void);
Suite *routes_suite(void);
Suite *idempotency_suite(void);
Suite *json_reader_suite(void);
Suite *json_writer_suite(void);
Suite *job_suite(void);
Suite *burn_suite(void);
Suite *util_suite(void);
Suite *buf_suite(void);
Suite *resp_suite(void);

#endif
