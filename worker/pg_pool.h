/* pg_pool: a few PostgreSQL connections driven by libpq's asynchronous API
 * on the libuv loop, so several queries are in flight without threads.
 * Each connection prepares the statements given at creation. Queries wait in
 * a FIFO for a free connection; every query ends in exactly one callback.
 * Every step has a deadline: a query fails once query_timeout_ms have passed
 * since pg_pool_exec, whether it waited for a connection or ran; a connection
 * that is not connected and prepared within query_timeout_ms starts over. */
#ifndef SURGE_PG_POOL_H
#define SURGE_PG_POOL_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <uv.h>

struct pg_pool;

/* res is NULL on failure, with err saying why (connection lost, timeout,
 * no connection). res is borrowed: valid only during the callback. */
typedef void (*pg_result_fn)(PGresult *res, const char *err, void *arg);

struct pg_statement {
    const char *name;
    const char *sql;
    int nparams;
};

/* Opens size connections to dsn and keeps them open (reconnecting with
 * backoff). statements must outlive the pool. */
struct pg_pool *pg_pool_create(uv_loop_t *loop, const char *dsn, int size,
                               const struct pg_statement *statements, int n_statements,
                               int query_timeout_ms);
/* Runs a prepared statement with text parameters. */
void pg_pool_exec(struct pg_pool *pool, const char *statement, int nparams,
                  const char *const *values, pg_result_fn cb, void *arg);
/* Connections open and ready now. */
int pg_pool_ready(const struct pg_pool *pool);
/* Why the last connection broke (connect or prepare timed out, the server
 * went away...), or "none yet". */
const char *pg_pool_last_error(const struct pg_pool *pool);
/* cb(up, arg) whenever pg_pool_ready() goes from 0 to more (up) or back to 0. */
void pg_pool_on_ready(struct pg_pool *pool, void (*cb)(bool up, void *arg), void *arg);
/* Fails waiting queries, closes every connection; done(arg) when all is freed. */
void pg_pool_close(struct pg_pool *pool, void (*done)(void *), void *arg);

#endif
