/* pg_pool: libpq non-blocking connections on uv_poll handles. */
#include "pg_pool.h"
#include "log.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 5000
#define MAX_PARAMS 4

enum conn_state { PG_DOWN, PG_CONNECTING, PG_PREPARING, PG_IDLE, PG_BUSY };

struct query {
    double deadline; /* monotonic: pg_pool_exec + query_timeout_ms */
    const char *statement;
    int nparams;
    char *values[MAX_PARAMS];
    pg_result_fn cb;
    void *arg;
    struct query *next;
};

struct pg_conn {
    struct pg_pool *pool;
    PGconn *pg;
    uv_poll_t *poll; /* separate allocation: libpq may change socket on connect */
    int fd;
    int events; /* what the poll handle watches now */
    uv_timer_t timer; /* reconnect backoff, or the running query's deadline */
    enum conn_state state;
    int prepared; /* statements prepared so far */
    int backoff_ms;
    struct query *q;
    PGresult *result; /* the first result of the running query */
};

struct pg_pool {
    uv_loop_t *loop;
    char *dsn;
    const struct pg_statement *stmts;
    int n_stmts;
    int query_timeout_ms;
    struct pg_conn *conns;
    int size;
    struct query *head, *tail;
    uv_timer_t wait_timer; /* the deadline of the oldest waiting query */
    void (*on_ready)(bool up, void *arg);
    void *on_ready_arg;
    bool was_ready;
    char last_error[256]; /* why the last connection broke */
    bool closing;
    int open_handles;
    void (*done)(void *);
    void *done_arg;
};

static void conn_start(struct pg_conn *c);
static void pump(struct pg_pool *pool);
static void on_poll(uv_poll_t *h, int status, int events);

static void free_query(struct query *q)
{
    for (int i = 0; i < q->nparams; i++)
        free(q->values[i]);
    free(q);
}

static void finish_query(struct pg_conn *c, PGresult *res, const char *err)
{
    struct query *q = c->q;
    c->q = NULL;
    uv_timer_stop(&c->timer);
    if (q) {
        q->cb(res, err, q->arg);
        free_query(q);
    }
}

static void release(struct pg_pool *pool)
{
    if (--pool->open_handles > 0)
        return;
    void (*done)(void *) = pool->done;
    void *arg = pool->done_arg;
    free(pool->conns);
    free(pool->dsn);
    free(pool);
    if (done)
        done(arg);
}

static void on_poll_closed(uv_handle_t *h)
{
    struct pg_pool *pool = h->data;
    free(h);
    release(pool);
}

static void stop_poll(struct pg_conn *c)
{
    if (!c->poll)
        return;
    c->poll->data = c->pool;
    uv_close((uv_handle_t *)c->poll, on_poll_closed);
    c->poll = NULL;
    c->fd = -1;
}

/* Watches the connection's current socket for the given events. */
static void watch(struct pg_conn *c, int events)
{
    int fd = PQsocket(c->pg);
    if (c->poll && fd != c->fd)
        stop_poll(c);
    if (!c->poll) {
        c->poll = xmalloc(sizeof *c->poll);
        if (uv_poll_init(c->pool->loop, c->poll, fd) < 0) {
            free(c->poll);
            c->poll = NULL;
            return;
        }
        c->pool->open_handles++;
        c->poll->data = c;
        c->fd = fd;
        c->events = 0;
    }
    /* Each uv_poll_start is an epoll_ctl: skip it when nothing changes. */
    if (events == c->events)
        return;
    c->events = events;
    uv_poll_start(c->poll, events, on_poll);
}

static void conn_broken(struct pg_conn *c, const char *why);

/* Tells the owner when the first connection is ready, or the last one lost. */
static void notify_ready(struct pg_pool *pool)
{
    bool ready = pg_pool_ready(pool) > 0;
    if (ready == pool->was_ready)
        return;
    pool->was_ready = ready;
    if (pool->on_ready && !pool->closing)
        pool->on_ready(ready, pool->on_ready_arg);
}

static void on_query_deadline(uv_timer_t *t)
{
    struct pg_conn *c = t->data;
    /* A connect, PREPARE or query that hangs may mean a dead peer or a lock:
     * start over. */
    conn_broken(c, c->state == PG_CONNECTING  ? "connect timed out"
                   : c->state == PG_PREPARING ? "prepare timed out"
                                              : "query timed out");
}

static void on_retry_timer(uv_timer_t *t)
{
    conn_start(t->data);
}

/* Closes a broken connection, fails its query, and tries again later. */
static void conn_broken(struct pg_conn *c, const char *why_in)
{
    /* why often points into libpq's connection (PQerrorMessage), which
     * PQfinish frees below: keep a copy. */
    char why[256];
    snprintf(why, sizeof why, "%s", why_in);
    size_t n = strlen(why);
    while (n > 0 && (why[n - 1] == '\n' || why[n - 1] == ' '))
        why[--n] = '\0';
    bool was_up = c->state == PG_IDLE || c->state == PG_BUSY;
    if (was_up || c->backoff_ms == BACKOFF_MIN_MS)
        log_warn("postgres_down", "%s", why);
    snprintf(c->pool->last_error, sizeof c->pool->last_error, "%s", why);
    stop_poll(c);
    if (c->result) {
        PQclear(c->result);
        c->result = NULL;
    }
    if (c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    c->state = PG_DOWN;
    finish_query(c, NULL, why);
    if (c->pool->closing)
        return;
    notify_ready(c->pool);
    uv_timer_start(&c->timer, on_retry_timer, (uint64_t)c->backoff_ms, 0);
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
    pump(c->pool); /* with fewer connections, waiting queries may have to fail */
}

static void send_prepare(struct pg_conn *c)
{
    const struct pg_statement *s = &c->pool->stmts[c->prepared];
    if (!PQsendPrepare(c->pg, s->name, s->sql, s->nparams, NULL)) {
        conn_broken(c, PQerrorMessage(c->pg));
        return;
    }
    watch(c, UV_READABLE | UV_WRITABLE);
}

static void became_idle(struct pg_conn *c)
{
    if (c->state == PG_PREPARING) {
        /* Connected and prepared: only now is the connection back. */
        if (c->backoff_ms > BACKOFF_MIN_MS)
            log_info("postgres_up", "connection restored");
        c->backoff_ms = BACKOFF_MIN_MS;
    }
    c->state = PG_IDLE;
    uv_timer_stop(&c->timer); /* the connect-and-prepare deadline */
    watch(c, UV_READABLE);    /* to notice the server going away */
    notify_ready(c->pool);
    pump(c->pool);
}

static void drive_connect(struct pg_conn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        watch(c, UV_READABLE);
        return;
    case PGRES_POLLING_WRITING:
        watch(c, UV_WRITABLE);
        return;
    case PGRES_POLLING_OK:
        /* The connect deadline keeps running through the PREPAREs, which
         * wait on any lock on their tables. */
        if (PQsetnonblocking(c->pg, 1) != 0) {
            conn_broken(c, "cannot make the connection non-blocking");
            return;
        }
        c->prepared = 0;
        c->state = PG_PREPARING;
        if (c->pool->n_stmts > 0)
            send_prepare(c);
        else
            became_idle(c);
        return;
    default:
        conn_broken(c, PQerrorMessage(c->pg));
        return;
    }
}

static void conn_start(struct pg_conn *c)
{
    if (c->pool->closing)
        return;
    c->pg = PQconnectStart(c->pool->dsn);
    if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
        conn_broken(c, c->pg ? PQerrorMessage(c->pg) : "out of memory");
        return;
    }
    c->state = PG_CONNECTING;
    /* libpq has no connect timeout in non-blocking mode: keep our own, which
     * also covers preparing the statements. */
    uv_timer_start(&c->timer, on_query_deadline, (uint64_t)c->pool->query_timeout_ms, 0);
    drive_connect(c);
}

/* Reads what arrived; returns true once every result of the command is in. */
static bool read_results(struct pg_conn *c, const char **err)
{
    if (!PQconsumeInput(c->pg)) {
        *err = PQerrorMessage(c->pg);
        return false;
    }
    while (!PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (!r)
            return true;
        if (!c->result)
            c->result = r;
        else
            PQclear(r);
    }
    return false;
}

/* The command sent is written out; returns -1 on a broken connection. */
static int flush(struct pg_conn *c)
{
    int f = PQflush(c->pg);
    if (f < 0)
        return -1;
    watch(c, f == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE);
    return 0;
}

static void on_command_done(struct pg_conn *c)
{
    PGresult *r = c->result;
    c->result = NULL;
    if (c->state == PG_PREPARING) {
        bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok) {
            log_error("postgres_prepare_failed", "%s: %s", c->pool->stmts[c->prepared].name,
                      r ? PQresultErrorMessage(r) : "no result");
            PQclear(r);
            conn_broken(c, "cannot prepare statements");
            return;
        }
        PQclear(r);
        if (++c->prepared < c->pool->n_stmts)
            send_prepare(c);
        else
            became_idle(c);
        return;
    }
    /* PG_BUSY: hand the result over, then take the next query. */
    finish_query(c, r, r ? NULL : "no result");
    PQclear(r);
    if (c->state == PG_BUSY)
        became_idle(c);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct pg_conn *c = h->data;
    if (status < 0) {
        conn_broken(c, uv_strerror(status));
        return;
    }
    if (c->state == PG_CONNECTING) {
        drive_connect(c);
        return;
    }
    if ((events & UV_WRITABLE) && flush(c) < 0) {
        conn_broken(c, PQerrorMessage(c->pg));
        return;
    }
    if (!(events & UV_READABLE))
        return;
    const char *err = NULL;
    if (c->state == PG_IDLE) {
        /* Nothing expected: this is the server closing, or a notice. */
        if (!PQconsumeInput(c->pg) || PQstatus(c->pg) == CONNECTION_BAD)
            conn_broken(c, "the server closed the connection");
        return;
    }
    if (read_results(c, &err))
        on_command_done(c);
    else if (err || PQstatus(c->pg) == CONNECTION_BAD)
        conn_broken(c, err ? err : "connection lost");
}


/* Milliseconds left before a deadline, at least 1. */
static uint64_t ms_left(double deadline)
{
    double ms = (deadline - util_mono_seconds()) * 1000.0;
    return ms < 1.0 ? 1 : (uint64_t)ms;
}

static void start_query(struct pg_conn *c, struct query *q)
{
    c->q = q;
    c->state = PG_BUSY;
    if (!PQsendQueryPrepared(c->pg, q->statement, q->nparams, (const char *const *)q->values,
                             NULL, NULL, 0)) {
        conn_broken(c, PQerrorMessage(c->pg));
        return;
    }
    /* What is left of the query's time: waiting for a connection counted. */
    uv_timer_start(&c->timer, on_query_deadline, ms_left(q->deadline), 0);
    if (flush(c) < 0)
        conn_broken(c, PQerrorMessage(c->pg));
}

/* Answers with an error every query still waiting for a connection whose
 * deadline is before `before` (all of them with INFINITY). The queue is in
 * deadline order: every query gets the same time. */
static void fail_waiting_until(struct pg_pool *pool, double before, const char *why)
{
    while (pool->head && pool->head->deadline < before) {
        struct query *q = pool->head;
        pool->head = q->next;
        if (!pool->head)
            pool->tail = NULL;
        q->cb(NULL, why, q->arg);
        free_query(q);
    }
}

static void fail_waiting(struct pg_pool *pool, const char *why)
{
    fail_waiting_until(pool, INFINITY, why);
}

static void arm_wait_timer(struct pg_pool *pool);

static void on_wait_deadline(uv_timer_t *t)
{
    struct pg_pool *pool = t->data;
    /* Within a millisecond counts as due: the timer's resolution. */
    fail_waiting_until(pool, util_mono_seconds() + 0.001,
                       "timed out waiting for a PostgreSQL connection");
    arm_wait_timer(pool);
}

static void arm_wait_timer(struct pg_pool *pool)
{
    if (pool->head && !pool->closing)
        uv_timer_start(&pool->wait_timer, on_wait_deadline, ms_left(pool->head->deadline), 0);
    else
        uv_timer_stop(&pool->wait_timer);
}

/* Gives waiting queries to idle connections; fails them if none can come. */
static void pump(struct pg_pool *pool)
{
    int alive = 0;
    for (int i = 0; i < pool->size && pool->head; i++) {
        struct pg_conn *c = &pool->conns[i];
        if (c->state == PG_IDLE) {
            struct query *q = pool->head;
            pool->head = q->next;
            if (!pool->head)
                pool->tail = NULL;
            start_query(c, q);
        }
    }
    for (int i = 0; i < pool->size; i++)
        alive += pool->conns[i].state >= PG_CONNECTING;
    if (alive == 0) {
        /* Nothing connected: fail fast so jobs can be retried later. */
        fail_waiting(pool, "postgres is unavailable");
    }
    arm_wait_timer(pool);
}

void pg_pool_exec(struct pg_pool *pool, const char *statement, int nparams,
                  const char *const *values, pg_result_fn cb, void *arg)
{
    if (pool->closing || nparams > MAX_PARAMS) {
        cb(NULL, pool->closing ? "closing" : "too many parameters", arg);
        return;
    }
    struct query *q = xcalloc(1, sizeof *q);
    q->deadline = util_mono_seconds() + pool->query_timeout_ms / 1000.0;
    q->statement = statement;
    q->nparams = nparams;
    for (int i = 0; i < nparams; i++)
        q->values[i] = xstrdup(values[i]);
    q->cb = cb;
    q->arg = arg;
    if (pool->tail)
        pool->tail->next = q;
    else
        pool->head = q;
    pool->tail = q;
    pump(pool);
}

int pg_pool_ready(const struct pg_pool *pool)
{
    int n = 0;
    for (int i = 0; i < pool->size; i++)
        n += pool->conns[i].state == PG_IDLE || pool->conns[i].state == PG_BUSY;
    return n;
}

const char *pg_pool_last_error(const struct pg_pool *pool)
{
    return pool->last_error[0] ? pool->last_error : "none yet";
}

void pg_pool_on_ready(struct pg_pool *pool, void (*cb)(bool up, void *arg), void *arg)
{
    pool->on_ready = cb;
    pool->on_ready_arg = arg;
}

struct pg_pool *pg_pool_create(uv_loop_t *loop, const char *dsn, int size,
                               const struct pg_statement *statements, int n_statements,
                               int query_timeout_ms)
{
    struct pg_pool *pool = xcalloc(1, sizeof *pool);
    pool->loop = loop;
    pool->dsn = xstrdup(dsn);
    pool->stmts = statements;
    pool->n_stmts = n_statements;
    pool->query_timeout_ms = query_timeout_ms;
    pool->size = size;
    pool->conns = xcalloc((size_t)size, sizeof *pool->conns);
    pool->open_handles = 2; /* the pool itself, released by pg_pool_close, and wait_timer */
    uv_timer_init(loop, &pool->wait_timer);
    pool->wait_timer.data = pool;
    for (int i = 0; i < size; i++) {
        struct pg_conn *c = &pool->conns[i];
        c->pool = pool;
        c->fd = -1;
        c->backoff_ms = BACKOFF_MIN_MS;
        uv_timer_init(loop, &c->timer);
        c->timer.data = c;
        pool->open_handles++;
    }
    for (int i = 0; i < size; i++)
        conn_start(&pool->conns[i]);
    return pool;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct pg_conn *c = h->data;
    release(c->pool);
}

static void on_wait_timer_closed(uv_handle_t *h)
{
    release(h->data);
}

void pg_pool_close(struct pg_pool *pool, void (*done)(void *), void *arg)
{
    pool->closing = true;
    pool->done = done;
    pool->done_arg = arg;
    fail_waiting(pool, "closing");
    uv_close((uv_handle_t *)&pool->wait_timer, on_wait_timer_closed);
    for (int i = 0; i < pool->size; i++) {
        struct pg_conn *c = &pool->conns[i];
        stop_poll(c);
        if (c->result)
            PQclear(c->result);
        c->result = NULL;
        finish_query(c, NULL, "closing");
        if (c->pg)
            PQfinish(c->pg);
        c->pg = NULL;
        c->state = PG_DOWN;
        uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    }
    release(pool);
}
