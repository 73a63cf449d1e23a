/* http_listener: the accept loop of http_server. See http_listener.h.
 *
 * The socket is watched with a uv_poll_t and accepted with accept4, so that
 * every failure is seen. Out of descriptors (EMFILE, ENFILE), a reserved
 * descriptor is given up for a moment to accept the waiting connections and
 * close them at once, so that their clients learn it now instead of hanging
 * in the backlog; any other error stops accepting for PAUSE_MS. */
#define _GNU_SOURCE /* accept4 */
#include "http_listener.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BACKLOG 1024
#define ACCEPT_BATCH 64 /* connections taken per wake-up, so reading is not starved */
#define PAUSE_MS 100
#define REPORT_INTERVAL_MS 10000

/* Events of one kind: the first is logged at once, the others of the same
 * interval in one line when it ends. */
struct report {
    uint64_t since_log; /* events not in a log line yet */
    bool quiet;         /* a line was logged less than an interval ago */
};

struct http_listener {
    uv_poll_t poll;
    uv_timer_t pause;  /* accepting stopped after an error; resumes when it fires */
    uv_timer_t report; /* ends a log interval */
    uv_loop_t *loop;
    struct http_listener_opts opts;
    int fd;
    int reserve_fd; /* a spare descriptor, given up to shed connections */
    struct report refused, failed;
    int last_error;
    int open_handles;
    void (*done)(void *);
    void *done_arg;
};

static void on_readable(uv_poll_t *p, int status, int events);

/* ---- counting and logging ---- */

static void log_summary(struct http_listener *l, struct report *r, bool refused)
{
    if (refused)
        log_warn("connections_refused",
                 "%s: %" PRIu64 " more connections refused in the last %d s (limit %zu)",
                 l->opts.name, r->since_log, REPORT_INTERVAL_MS / 1000, l->opts.max_connections);
    else
        log_error("accept_failed", "%s: %" PRIu64 " more connections lost in the last %d s: %s",
                  l->opts.name, r->since_log, REPORT_INTERVAL_MS / 1000,
                  uv_strerror(l->last_error));
}

static void on_report(uv_timer_t *t)
{
    struct http_listener *l = t->data;
    bool again = false;
    struct report *reports[] = {&l->refused, &l->failed};
    for (size_t i = 0; i < ARRAY_LEN(reports); i++) {
        struct report *r = reports[i];
        if (r->since_log) {
            log_summary(l, r, r == &l->refused);
            r->since_log = 0;
            again = true; /* stays quiet for another interval */
        } else {
            r->quiet = false;
        }
    }
    if (again)
        uv_timer_start(&l->report, on_report, REPORT_INTERVAL_MS, 0);
}

/* Counts n connections refused (err 0) or lost to accept error err. */
static void note(struct http_listener *l, int err, uint64_t n)
{
    bool refused = err == 0;
    struct report *r = refused ? &l->refused : &l->failed;
    size_t open = l->opts.open_count(l->opts.arg);
    if (!refused)
        l->last_error = err;
    if (l->opts.on_event)
        for (uint64_t i = 0; i < n; i++)
            l->opts.on_event(l->opts.name, refused ? HTTP_CONN_REFUSED : HTTP_CONN_ACCEPT_FAILED,
                             err, open);
    if (r->quiet) {
        r->since_log += n;
        return;
    }
    if (refused)
        log_warn("connections_refused",
                 "%s: %zu connections open, the limit: new connections are closed at once",
                 l->opts.name, open);
    else
        log_error("accept_failed", "%s: cannot accept a connection: %s; it is closed at once",
                  l->opts.name, uv_strerror(err));
    r->since_log = n - 1;
    r->quiet = true;
    if (!uv_is_active((uv_handle_t *)&l->report))
        uv_timer_start(&l->report, on_report, REPORT_INTERVAL_MS, 0);
}

/* ---- accepting ---- */

static void on_pause_over(uv_timer_t *t)
{
    struct http_listener *l = t->data;
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
}

/* Out of descriptors: frees the spare one, accepts and closes what waits,
 * takes the spare back. Returns how many connections it closed, or -1 when
 * there is no spare to give up. */
static int shed(struct http_listener *l)
{
    if (l->reserve_fd < 0)
        return -1;
    close(l->reserve_fd);
    int n = 0;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            break;
        close(fd);
        n++;
    }
    l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return n;
}

static void accept_error(struct http_listener *l, int err)
{
    if (err == UV_EMFILE || err == UV_ENFILE) {
        /* accept fails so before it looks for a connection: only those that
         * were waiting, now closed, are lost. */
        int n = shed(l);
        if (n > 0)
            note(l, err, (uint64_t)n);
        if (n >= 0)
            return;
    }
    note(l, err, 1);
    /* Nothing frees itself by trying again at once: wait a little. */
    uv_poll_stop(&l->poll);
    uv_timer_start(&l->pause, on_pause_over, PAUSE_MS, 0);
}

/* Network errors that Linux reports on accept for a connection already gone:
 * the next one may be fine (accept(2), "Error handling"). */
static bool gone_before_accept(int e)
{
    return e == ECONNABORTED || e == EPROTO || e == ENETDOWN || e == ENOPROTOOPT ||
           e == EHOSTDOWN || e == EHOSTUNREACH || e == EOPNOTSUPP || e == ENETUNREACH ||
           e == EINTR;
}

static void on_readable(uv_poll_t *p, int status, int events)
{
    (void)events;
    struct http_listener *l = p->data;
    if (status < 0) {
        accept_error(l, status);
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK)
                return;
            if (gone_before_accept(e))
                continue;
            accept_error(l, -e);
            return;
        }
        if (l->opts.open_count(l->opts.arg) >= l->opts.max_connections) {
            close(fd);
            note(l, 0, 1);
            continue;
        }
        l->opts.on_accept(fd, l->opts.arg);
    }
}

/* ---- start and stop ---- */

int http_listener_start(struct http_listener **out, uv_loop_t *loop,
                        const struct http_listener_opts *opts)
{
    struct sockaddr_storage addr;
    socklen_t addr_len;
    memset(&addr, 0, sizeof addr);
    if (uv_ip4_addr(opts->address, opts->port, (struct sockaddr_in *)&addr) == 0) {
        addr_len = sizeof(struct sockaddr_in);
    } else if (uv_ip6_addr(opts->address, opts->port, (struct sockaddr_in6 *)&addr) == 0) {
        addr_len = sizeof(struct sockaddr_in6);
    } else {
        log_error("listen_failed", "%s: bad address %s", opts->name, opts->address);
        return UV_EINVAL;
    }
    int one = 1;
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&addr, addr_len) < 0 || listen(fd, BACKLOG) < 0) {
        int rc = -errno;
        log_error("listen_failed", "%s: cannot listen on %s:%d: %s", opts->name, opts->address,
                  opts->port, uv_strerror(rc));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    struct http_listener *l = xcalloc(1, sizeof *l);
    l->loop = loop;
    l->opts = *opts;
    l->fd = fd;
    int rc = uv_poll_init_socket(loop, &l->poll, fd);
    if (rc < 0) {
        log_error("listen_failed", "%s: %s", opts->name, uv_strerror(rc));
        close(fd);
        free(l);
        return rc;
    }
    uv_timer_init(loop, &l->pause);
    uv_timer_init(loop, &l->report);
    l->poll.data = l->pause.data = l->report.data = l;
    l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
    *out = l;
    return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct http_listener *l = h->data;
    if (--l->open_handles > 0)
        return;
    close(l->fd);
    if (l->reserve_fd >= 0)
        close(l->reserve_fd);
    void (*done)(void *) = l->done;
    void *arg = l->done_arg;
    free(l);
    if (done)
        done(arg);
}

void http_listener_close(struct http_listener *l, void (*done)(void *), void *arg)
{
    /* What the last interval counted is not left out of the log. */
    if (l->refused.since_log)
        log_summary(l, &l->refused, true);
    if (l->failed.since_log)
        log_summary(l, &l->failed, false);
    l->done = done;
    l->done_arg = arg;
    l->open_handles = 3;
    uv_close((uv_handle_t *)&l->poll, on_handle_closed);
    uv_close((uv_handle_t *)&l->pause, on_handle_closed);
    uv_close((uv_handle_t *)&l->report, on_handle_closed);
}
