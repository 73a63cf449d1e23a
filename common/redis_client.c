/* redis_client: hiredis async on libuv (our own adapter, redis_uv_adapter),
 * with deadlines and reconnection. */
#include "redis_client.h"
#include "log.h"
#include "buf.h"
#include "redis_script.h"
#include "redis_uv_adapter.h"
#include "resp.h"
#include "util.h"

#include <hiredis/async.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TICK_MS 20
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

enum attempt {
    SENT_EVALSHA,       /* the script was loaded on this connection */
    SENT_EVALSHA_AGAIN, /* after NOSCRIPT, behind an EVAL of the same script */
    SENT_EVAL,          /* the script's text, which loads it: first use, or NOSCRIPT */
};

/* One request: answered once, freed when hiredis is done with it too. */
struct pending {
    struct rc *rc;
    rc_reply_fn cb;
    void *arg;
    double deadline;
    bool answered;
    bool internal; /* handshake command: does not count as a user request */
    /* Replied while an older request waits for its script's second try: the
     * reply is kept (a copy) and given in order. */
    bool replied;
    redisReply *held;
    const char *held_err;
    struct pending *prev, *next;   /* in the order sent: Redis answers in it */
    struct pending *dprev, *dnext; /* in the order of deadlines */
    /* A script request: which script, what was sent, and what follows the
     * script in the command (key count, keys, arguments: rest_argc of them,
     * already in RESP), to send it again. */
    struct rscript *script; /* NULL: not a script */
    enum attempt attempt;
    uint64_t sent_no; /* rc->sends when last sent */
    size_t rest_argc, rest_len;
    char rest[];
};

struct rc {
    uv_loop_t *loop;
    struct rc_opts opts;
    char *host, *username, *password, *name;
    redisAsyncContext *ac;
    bool up;
    bool closing;
    int backoff_ms;
    uv_timer_t tick;      /* checks deadlines */
    uv_timer_t reconnect; /* backoff */
    uv_getaddrinfo_t resolver;
    bool resolving;
    struct pending *head; /* oldest first: Redis answers in order */
    struct pending *tail;
    struct pending *dhead; /* earliest deadline first */
    struct pending *dtail;
    uint64_t sends;    /* script commands sent, for pending.sent_no and rscript.eval_no */
    uint64_t conn_gen; /* counts connections, for rscript.eval_conn */
    struct rscript_table scripts;
    struct buf out; /* a command being written; hiredis copies it */
    int handles_open;
    void (*done)(void *);
    void *done_arg;
};

static void start_connect(struct rc *rc);

static void list_remove(struct rc *rc, struct pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        rc->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        rc->tail = p->prev;
    p->prev = p->next = NULL;
    if (p->dprev)
        p->dprev->dnext = p->dnext;
    else
        rc->dhead = p->dnext;
    if (p->dnext)
        p->dnext->dprev = p->dprev;
    else
        rc->dtail = p->dprev;
    p->dprev = p->dnext = NULL;
}

static void free_pending(struct pending *p)
{
    rscript_free_reply(p->held);
    free(p);
}

static void answer(struct pending *p, redisReply *reply, const char *err)
{
    if (p->answered)
        return;
    p->answered = true;
    if (p->cb)
        p->cb(reply, err, p->arg);
}

/* Answers, in order, the requests at the head whose replies were kept. */
static void deliver_held(struct rc *rc)
{
    while (rc->head && rc->head->replied) {
        struct pending *p = rc->head;
        list_remove(rc, p);
        answer(p, p->held, p->held_err);
        free_pending(p);
    }
}

/* Answers and frees the requests whose replies were kept: hiredis no
 * longer knows them. */
static void free_held(struct rc *rc)
{
    struct pending *p = rc->head;
    while (p) {
        struct pending *next = p->next;
        if (p->replied) {
            list_remove(rc, p);
            free_pending(p);
        }
        p = next;
    }
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata);

/* Sends the script request p, as EVALSHA or (eval) as EVAL; false when
 * hiredis refuses it (the context is going away). */
static bool send_script(struct rc *rc, redisAsyncContext *ac, struct pending *p, bool eval)
{
    p->sent_no = ++rc->sends;
    if (eval) {
        p->script->eval_no = p->sent_no;
        p->script->eval_conn = rc->conn_gen;
    }
    rscript_write(&rc->out, p->script, eval, p->rest_argc, p->rest, p->rest_len);
    return redisAsyncFormattedCommand(ac, on_reply, p, rc->out.data, rc->out.len) == REDIS_OK;
}

/* A NOSCRIPT answer to p's EVALSHA: Redis lost its scripts (restart, SCRIPT
 * FLUSH) or never had this one. Send p again, keeping its place in the
 * answer order and its deadline: as EVAL, which loads the script, unless an
 * EVAL of the same script was sent after p's EVALSHA (on this connection: a
 * reconnection answers every request), which Redis runs before p's second
 * try: then EVALSHA again. So the requests in flight when Redis lost the
 * script load it once, not once each. A second NOSCRIPT (another flush
 * meanwhile) gets an EVAL. Returns false when it could not be sent. */
static bool retry_script(struct rc *rc, redisAsyncContext *ac, struct pending *p)
{
    bool eval = p->attempt == SENT_EVALSHA_AGAIN || p->script->eval_no < p->sent_no;
    p->attempt = eval ? SENT_EVAL : SENT_EVALSHA_AGAIN;
    return send_script(rc, ac, p, eval);
}

/* hiredis calls this once per command: with the reply, or NULL when the
 * context goes away. */
static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct pending *p = privdata;
    struct rc *rc = p->rc;
    redisReply *reply = r;
    const char *err = NULL;
    if (p->answered) { /* drop() or rc_close() answered it */
        list_remove(rc, p);
        free_pending(p);
        return;
    }
    if (reply && p->script && p->attempt != SENT_EVAL && rscript_is_noscript(reply) &&
        ac == rc->ac) {
        if (retry_script(rc, ac, p))
            return;
        reply = NULL; /* hiredis refused: the context is going away */
    }
    if (!reply)
        err = "disconnected";
    if (p->prev) {
        /* An older request waits for its script's second try: keep this
         * answer until that one is given. */
        p->replied = true;
        p->held = reply ? rscript_copy_reply(reply) : NULL;
        p->held_err = err;
        return;
    }
    list_remove(rc, p);
    answer(p, reply, err);
    free_pending(p);
    deliver_held(rc);
}

static void on_reconnect_timer(uv_timer_t *t)
{
    start_connect(t->data);
}

static void schedule_reconnect(struct rc *rc)
{
    if (rc->closing || rc->ac || rc->resolving || uv_is_active((uv_handle_t *)&rc->reconnect))
        return;
    uv_timer_start(&rc->reconnect, on_reconnect_timer, (uint64_t)rc->backoff_ms, 0);
    rc->backoff_ms = rc->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : rc->backoff_ms * 2;
}

static void set_up(struct rc *rc, bool up)
{
    if (rc->up == up)
        return;
    rc->up = up;
    if (up) {
        rc->backoff_ms = BACKOFF_MIN_MS;
        log_info("redis_up", "%s: connected to %s:%d", rc->name, rc->host, rc->opts.port);
    } else {
        log_warn("redis_down", "%s: connection to %s:%d lost", rc->name, rc->host, rc->opts.port);
    }
    if (rc->opts.on_state && !rc->closing)
        rc->opts.on_state(rc, up, rc->opts.state_arg);
}

/* Drops the connection now; every pending request is answered. */
static void drop(struct rc *rc, const char *why)
{
    redisAsyncContext *ac = rc->ac;
    rc->ac = NULL;
    /* Answer first so the reason reaches the caller, then let hiredis run
     * its NULL callbacks, which only free. A reply already kept is given. */
    for (struct pending *p = rc->head; p; p = p->next)
        answer(p, p->held, p->replied ? p->held_err : why);
    free_held(rc);
    if (ac)
        redisAsyncFree(ac);
    set_up(rc, false);
    schedule_reconnect(rc);
}

/* Deadlines are checked against the earliest one only: the deadline list is
 * kept sorted (requests of one client may have different timeouts, such as
 * a BLMOVE's), and in practice a new request goes at its tail. */
static void on_tick(uv_timer_t *t)
{
    struct rc *rc = t->data;
    struct pending *p = rc->dhead;
    if (p && !p->answered && util_mono_seconds() >= p->deadline) {
        log_warn("redis_timeout", "%s: no answer within the deadline; reconnecting", rc->name);
        /* Later replies on this connection would be out of step with the
         * requests still waiting: start a fresh connection. */
        drop(rc, "timeout");
    }
    if (!rc->head)
        uv_timer_stop(&rc->tick);
}

/* A new request, extra bytes at its end for a script's arguments. */
static struct pending *track(struct rc *rc, rc_reply_fn cb, void *arg, int timeout_ms,
                             size_t extra)
{
    struct pending *p = xcalloc(1, sizeof *p + extra);
    p->rc = rc;
    p->cb = cb;
    p->arg = arg;
    p->deadline = util_mono_seconds() + timeout_ms / 1000.0;
    /* Append at the tail: keep answer order. */
    p->prev = rc->tail;
    if (rc->tail)
        rc->tail->next = p;
    else
        rc->head = p;
    rc->tail = p;
    /* Insert by deadline, from the tail: one step when the timeouts agree. */
    struct pending *after = rc->dtail;
    while (after && after->deadline > p->deadline)
        after = after->dprev;
    p->dprev = after;
    p->dnext = after ? after->dnext : rc->dhead;
    if (p->dnext)
        p->dnext->dprev = p;
    else
        rc->dtail = p;
    if (after)
        after->dnext = p;
    else
        rc->dhead = p;
    if (!uv_is_active((uv_handle_t *)&rc->tick))
        uv_timer_start(&rc->tick, on_tick, TICK_MS, TICK_MS);
    return p;
}

static void on_handshake(redisReply *reply, const char *err, void *arg)
{
    struct rc *rc = arg;
    if (!reply) {
        log_warn("redis_connect_failed", "%s: %s:%d: %s", rc->name, rc->host, rc->opts.port, err);
        return; /* drop() or the disconnect callback reconnects */
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        log_error("redis_auth_failed", "%s: %s", rc->name, reply->str);
        if (rc->ac)
            drop(rc, "handshake failed");
        return;
    }
    set_up(rc, true);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rc *rc = ac->data;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        log_warn("redis_connect_failed", "%s: %s:%d: %s", rc->name, rc->host, rc->opts.port,
                 ac->errstr);
        if (rc->ac == ac)
            rc->ac = NULL;
        set_up(rc, false);
        schedule_reconnect(rc);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    struct rc *rc = ac->data;
    if (rc->ac == ac) {
        rc->ac = NULL;
        set_up(rc, false);
        schedule_reconnect(rc);
    }
}

/* Sends the handshake before any user command: AUTH, SELECT, then PING
 * whose answer marks the connection usable. Their failures show in on_handshake. */
static void send_handshake(struct rc *rc)
{
    struct pending *p;
    if (rc->password[0]) {
        p = track(rc, NULL, NULL, rc->opts.timeout_ms, 0);
        p->internal = true;
        if (rc->username[0])
            redisAsyncCommand(rc->ac, on_reply, p, "AUTH %s %s", rc->username, rc->password);
        else
            redisAsyncCommand(rc->ac, on_reply, p, "AUTH %s", rc->password);
        p->cb = on_handshake;
        p->arg = rc;
    }
    if (rc->opts.db) {
        p = track(rc, on_handshake, rc, rc->opts.timeout_ms, 0);
        p->internal = true;
        redisAsyncCommand(rc->ac, on_reply, p, "SELECT %d", rc->opts.db);
    }
    p = track(rc, on_handshake, rc, rc->opts.timeout_ms, 0);
    p->internal = true;
    redisAsyncCommand(rc->ac, on_reply, p, "PING");
}

static void connect_to(struct rc *rc, const char *ip)
{
    redisAsyncContext *ac = redisAsyncConnect(ip, rc->opts.port);
    if (!ac || ac->err) {
        log_warn("redis_connect_failed", "%s: %s", rc->name, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_reconnect(rc);
        return;
    }
    ac->data = rc;
    rc->conn_gen++;
    if (redis_uv_attach(ac, rc->loop) != 0) {
        redisAsyncFree(ac);
        schedule_reconnect(rc);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    rc->ac = ac;
    send_handshake(rc);
}

static void release(struct rc *rc);

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct rc *rc = req->data;
    rc->resolving = false;
    if (rc->closing) {
        uv_freeaddrinfo(res);
        release(rc);
        return;
    }
    rc->handles_open--;
    if (status < 0 || !res) {
        log_warn("redis_resolve_failed", "%s: %s: %s", rc->name, rc->host, uv_strerror(status));
        uv_freeaddrinfo(res);
        schedule_reconnect(rc);
        return;
    }
    char ip[64] = {0};
    if (res->ai_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, ip, sizeof ip);
    else
        uv_ip4_name((struct sockaddr_in *)res->ai_addr, ip, sizeof ip);
    uv_freeaddrinfo(res);
    connect_to(rc, ip);
}

/* hiredis resolves names with a blocking call, so resolve first on libuv's
 * thread pool and give hiredis the address. */
static void start_connect(struct rc *rc)
{
    if (rc->closing || rc->ac || rc->resolving)
        return;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    rc->resolver.data = rc;
    rc->resolving = true;
    rc->handles_open++; /* the lookup must end before rc is freed */
    if (uv_getaddrinfo(rc->loop, &rc->resolver, on_resolved, rc->host, NULL, &hints) < 0) {
        rc->resolving = false;
        rc->handles_open--;
        schedule_reconnect(rc);
    }
}

struct rc *rc_create(uv_loop_t *loop, const struct rc_opts *opts)
{
    struct rc *rc = xcalloc(1, sizeof *rc);
    rc->loop = loop;
    rc->opts = *opts;
    rc->name = xstrdup(opts->name);
    rc->host = xstrdup(opts->host);
    rc->username = xstrdup(opts->username ? opts->username : "");
    rc->password = xstrdup(opts->password ? opts->password : "");
    rc->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_init(loop, &rc->tick);
    uv_timer_init(loop, &rc->reconnect);
    rc->tick.data = rc->reconnect.data = rc;
    rc->handles_open = 2;
    start_connect(rc);
    return rc;
}

bool rc_is_up(const struct rc *rc)
{
    return rc->up;
}

static struct pending *begin(struct rc *rc, rc_reply_fn cb, void *arg, int timeout_ms,
                             size_t extra)
{
    if (!rc->ac || rc->closing) {
        cb(NULL, rc->closing ? "closing" : "disconnected", arg);
        return NULL;
    }
    return track(rc, cb, arg, timeout_ms, extra);
}

/* hiredis refuses a command only when the context is going away. */
static void sent(struct rc *rc, struct pending *p, int status)
{
    if (status == REDIS_OK)
        return;
    list_remove(rc, p);
    answer(p, NULL, "disconnected");
    free_pending(p);
}

/* Sends the command in rc->out. */
static void send_out(struct rc *rc, int timeout_ms, rc_reply_fn cb, void *arg)
{
    struct pending *p = begin(rc, cb, arg, timeout_ms, 0);
    if (p)
        sent(rc, p, redisAsyncFormattedCommand(rc->ac, on_reply, p, rc->out.data, rc->out.len));
}

/* What follows a script in EVAL/EVALSHA (key count, keys, arguments): argc
 * arguments, either already in RESP (resp, len bytes) or as argv/lens. */
struct rest {
    size_t argc, len;
    const char *resp;
    const char **argv;
    const size_t *lens;
};

static void rest_write(const struct rest *r, char *dst)
{
    if (r->argv)
        resp_write_args(dst, r->argc, r->argv, r->lens);
    else if (r->len)
        memcpy(dst, r->resp, r->len);
}

/* Every Lua script goes through here: EVAL the first time on a connection
 * (it loads the script: a command sent before a timeout still runs when
 * Redis gets to it, whether or not Redis had the script), EVALSHA after
 * that, and EVAL again on NOSCRIPT (on_reply). */
static void script_command(struct rc *rc, int timeout_ms, rc_reply_fn cb, void *arg,
                           const char *text, size_t len, const struct rest *r)
{
    struct rscript *s = rscript_find(&rc->scripts, text, len);
    struct pending *p = begin(rc, cb, arg, timeout_ms, r->len);
    if (!p)
        return;
    p->script = s;
    bool eval = s->eval_conn != rc->conn_gen;
    p->attempt = eval ? SENT_EVAL : SENT_EVALSHA;
    p->rest_argc = r->argc;
    p->rest_len = r->len;
    rest_write(r, p->rest);
    sent(rc, p, send_script(rc, rc->ac, p, eval) ? REDIS_OK : REDIS_ERR);
}

static void vcommand(struct rc *rc, int timeout_ms, rc_reply_fn cb, void *arg, const char *fmt,
                     va_list ap)
{
    char *cmd = NULL;
    int len = redisvFormatCommand(&cmd, fmt, ap);
    if (len < 0) {
        cb(NULL, "bad command", arg);
        return;
    }
    const char *text, *rest;
    size_t text_len, rest_len, rest_argc;
    if (rscript_parse_eval(cmd, (size_t)len, &text, &text_len, &rest, &rest_len, &rest_argc)) {
        struct rest r = {.argc = rest_argc, .len = rest_len, .resp = rest};
        script_command(rc, timeout_ms, cb, arg, text, text_len, &r);
    } else {
        buf_reset(&rc->out);
        buf_append(&rc->out, cmd, (size_t)len);
        send_out(rc, timeout_ms, cb, arg);
    }
    redisFreeCommand(cmd);
}

void rc_command(struct rc *rc, rc_reply_fn cb, void *arg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vcommand(rc, rc->opts.timeout_ms, cb, arg, fmt, ap);
    va_end(ap);
}

void rc_command_deadline(struct rc *rc, int timeout_ms, rc_reply_fn cb, void *arg,
                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vcommand(rc, timeout_ms, cb, arg, fmt, ap);
    va_end(ap);
}

void rc_eval(struct rc *rc, rc_reply_fn cb, void *arg, const char *script, int argc,
             const char **argv, const size_t *lens)
{
    struct rest r = {.argc = (size_t)argc, .argv = argv, .lens = lens};
    r.len = resp_args_len(r.argc, argv, lens);
    script_command(rc, rc->opts.timeout_ms, cb, arg, script, strlen(script), &r);
}

void rc_command_argv(struct rc *rc, rc_reply_fn cb, void *arg, int argc, const char **argv,
                     const size_t *lens)
{
    if (argc >= 3 && (lens ? lens[0] : strlen(argv[0])) == 4 &&
        strncasecmp(argv[0], "EVAL", 4) == 0) {
        struct rest r = {.argc = (size_t)argc - 2, .argv = argv + 2, .lens = lens ? lens + 2 : NULL};
        r.len = resp_args_len(r.argc, r.argv, r.lens);
        script_command(rc, rc->opts.timeout_ms, cb, arg, argv[1],
                       lens ? lens[1] : strlen(argv[1]), &r);
        return;
    }
    size_t need = resp_header_len((size_t)argc) + resp_args_len((size_t)argc, argv, lens);
    buf_reset(&rc->out);
    char *w = buf_reserve(&rc->out, need);
    size_t n = resp_write_header(w, (size_t)argc);
    n += resp_write_args(w + n, (size_t)argc, argv, lens);
    rc->out.len = n;
    send_out(rc, rc->opts.timeout_ms, cb, arg);
}

static void release(struct rc *rc)
{
    if (--rc->handles_open > 0)
        return;
    void (*done)(void *) = rc->done;
    void *arg = rc->done_arg;
    free(rc->name);
    free(rc->host);
    free(rc->username);
    free(rc->password);
    rscript_table_free(&rc->scripts);
    buf_free(&rc->out);
    free(rc);
    if (done)
        done(arg);
}

static void on_handle_closed(uv_handle_t *h)
{
    release(h->data);
}

void rc_close(struct rc *rc, void (*done)(void *), void *arg)
{
    rc->closing = true;
    rc->done = done;
    rc->done_arg = arg;
    redisAsyncContext *ac = rc->ac;
    rc->ac = NULL;
    for (struct pending *p = rc->head; p; p = p->next)
        answer(p, p->held, p->replied ? p->held_err : "closing");
    free_held(rc);
    if (ac)
        redisAsyncFree(ac);
    if (rc->resolving)
        uv_cancel((uv_req_t *)&rc->resolver);
    uv_close((uv_handle_t *)&rc->tick, on_handle_closed);
    uv_close((uv_handle_t *)&rc->reconnect, on_handle_closed);
}
