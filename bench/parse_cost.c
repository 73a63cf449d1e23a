/* parse-cost: what parsing a request costs, for callgrind. Feeds typical
 * requests (the POST of `make bench`, a GET of a job, a probe of the admin
 * port) N times each through http_parse as surge-api does (feed, take,
 * next), in parse_requests() alone, so that
 *   valgrind --tool=callgrind --toggle-collect=parse_requests build/release/parse-cost N
 * counts the instructions of parsing and nothing else; `make parse-cost`
 * prints them per request. */
#include "http_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const requests[] = {
    /* wrk with bench/post_job.lua */
    "POST /jobs HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n"
    "Content-Length: 39\r\n\r\n{\"type\":\"read\",\"params\":{\"item_id\":42}}",
    /* a client following its job */
    "GET /jobs/01M8A4E1EA2HS751PXC6HB2TWS HTTP/1.1\r\nHost: api.example.com\r\n"
    "User-Agent: surgectl/1.0\r\nAccept: application/json\r\nConnection: keep-alive\r\n\r\n",
    /* the kubelet's probe */
    "GET /healthz HTTP/1.1\r\nHost: 10.0.0.12:9090\r\nUser-Agent: kube-probe/1.29\r\n"
    "Accept: */*\r\n\r\n",
};

/* Parses every request n times; returns how many were complete. */
long parse_requests(struct http_parse *p, long n);
long parse_requests(struct http_parse *p, long n)
{
    long done = 0;
    for (long i = 0; i < n; i++) {
        for (size_t r = 0; r < sizeof requests / sizeof requests[0]; r++) {
            size_t len = strlen(requests[r]), used;
            struct http_parsed req;
            if (http_parse_feed(p, requests[r], len, &used) == HTTP_PARSE_DONE &&
                http_parse_take(p, &req) == 0)
                done++;
            http_parse_next(p);
        }
    }
    return done;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
    long each = (long)(sizeof requests / sizeof requests[0]);
    long done = 0;
    /* A connection per round, as keep-alive clients come and go. */
    for (long k = 0; k < 10; k++) {
        struct http_parse p;
        http_parse_init(&p, 8192, 16384);
        done += parse_requests(&p, n / 10);
        http_parse_free(&p);
    }
    if (done != n / 10 * 10 * each) {
        fprintf(stderr, "parse-cost: %ld of %ld requests parsed\n", done, n / 10 * 10 * each);
        return 1;
    }
    printf("parse-cost: %ld requests parsed\n", done);
    return 0;
}
