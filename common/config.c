/* config: one table of every SURGE_ variable with its default and range. */
#include "config.h"
#include "util.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* K_RETIRED: a variable no version reads any more; set at all, it stops the
 * program, so that a configuration written for an older version is not
 * silently taken to mean something it no longer does. fallback holds what to
 * set instead. */
enum kind { K_STRING, K_INT, K_LOG_LEVEL, K_LOG_FORMAT, K_REDIS_URL, K_PREFIX, K_RETIRED };

struct setting {
    const char *name;
    const char *fallback; /* the default; for K_RETIRED, what replaces it */
    enum kind kind;
    long min, max;
    size_t offset;
};

#define F(field) offsetof(struct cfg, field)

#define PREFIX_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"

/* Keep in sync with docs/architecture.md and k8s/base/configmap. */
static const struct setting settings[] = {
    {"SURGE_REDIS_URL", "redis://127.0.0.1:6379/0", K_REDIS_URL, 0, 0, F(redis_url)},
    {"SURGE_REDIS_USERNAME", "", K_STRING, 0, 0, F(redis_username)},
    {"SURGE_REDIS_PASSWORD", "", K_STRING, 0, 0, F(redis_password)},
    {"SURGE_REDIS_TIMEOUT_MS", "1000", K_INT, 10, 60000, F(redis_timeout_ms)},
    {"SURGE_PG_DSN", "host=127.0.0.1 port=5432 dbname=surge user=surge", K_STRING, 0, 0,
     F(pg_dsn)},
    {"SURGE_BIND_ADDRESS", "0.0.0.0", K_STRING, 0, 0, F(bind_address)},
    {"SURGE_HTTP_PORT", "8080", K_INT, 1, 65535, F(http_port)},
    {"SURGE_ADMIN_PORT", "9090", K_INT, 1, 65535, F(admin_port)},
    /* Burns are CPU work on threads of their own: one is one core's worth,
     * the figure the autoscaling arithmetic assumes (docs/kubernetes.md). */
    {"SURGE_WORKER_BURN_CONCURRENCY", "1", K_INT, 1, 256, F(burn_concurrency)},
    /* Reads are I/O on the PostgreSQL pool: one connection each. */
    {"SURGE_WORKER_READ_CONCURRENCY", "4", K_INT, 1, 256, F(read_concurrency)},
    {"SURGE_WORKER_CONCURRENCY",
     "is no longer read: a worker runs up to SURGE_WORKER_BURN_CONCURRENCY burns (default 1) "
     "and SURGE_WORKER_READ_CONCURRENCY reads (default 4, its PostgreSQL connections) at once; "
     "set those and remove this one",
     K_RETIRED, 0, 0, 0},
    {"SURGE_BURN_DEFAULT_SECONDS", "180", K_INT, 1, 86400, F(burn_default_seconds)},
    {"SURGE_BURN_MAX_SECONDS", "600", K_INT, 1, 86400, F(burn_max_seconds)},
    {"SURGE_MAX_ATTEMPTS", "5", K_INT, 1, 100, F(max_attempts)},
    {"SURGE_RESULT_TTL_SECONDS", "86400", K_INT, 1, 31536000, F(result_ttl_seconds)},
    {"SURGE_MAX_BODY_BYTES", "16384", K_INT, 64, 1048576, F(max_body_bytes)},
    /* 1 024 connections at their worst (20 KiB of unread answers, a 4 KiB
     * read buffer) hold about 25 MiB: within the api pod's 128 MiB limit. */
    {"SURGE_MAX_CONNECTIONS", "1024", K_INT, 1, 1000000, F(max_connections)},
    {"SURGE_HEADER_TIMEOUT_SECONDS", "10", K_INT, 1, 3600, F(header_timeout_seconds)},
    {"SURGE_IDLE_TIMEOUT_SECONDS", "60", K_INT, 1, 3600, F(idle_timeout_seconds)},
    {"SURGE_SHUTDOWN_GRACE_SECONDS", "30", K_INT, 0, 3600, F(shutdown_grace_seconds)},
    {"SURGE_HEARTBEAT_SECONDS", "15", K_INT, 3, 600, F(heartbeat_seconds)},
    {"SURGE_JOB_TIMEOUT_SECONDS", "30", K_INT, 1, 86400, F(job_timeout_seconds)},
    {"SURGE_DEAD_LIST_MAX", "10000", K_INT, 1, 10000000, F(dead_list_max)},
    {"SURGE_LOG_LEVEL", "info", K_LOG_LEVEL, 0, 0, F(log_level)},
    {"SURGE_LOG_FORMAT", "json", K_LOG_FORMAT, 0, 0, F(log_format)},
    {"SURGE_KEY_PREFIX", "surge:", K_PREFIX, 0, 0, F(key_prefix)},
};

static int parse_int(const char *s, long min, long max, int *out)
{
    if (!*s)
        return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

/* redis://[user[:password]@]host[:port][/db] — credentials belong in their own
 * variables, so the URL carries none. */
static int parse_redis_url(struct cfg *cfg, const char *url)
{
    const char *p = url;
    if (strncmp(p, "redis://", 8) != 0)
        return -1;
    p += 8;
    if (strchr(p, '@'))
        return -1;
    size_t hostlen = strcspn(p, ":/");
    if (hostlen == 0 || hostlen > 253)
        return -1;
    cfg->redis_host = xstrndup(p, hostlen);
    p += hostlen;
    cfg->redis_port = 6379;
    cfg->redis_db = 0;
    if (*p == ':') {
        char port[8] = {0};
        size_t n = strcspn(p + 1, "/");
        if (n == 0 || n >= sizeof port)
            return -1;
        memcpy(port, p + 1, n);
        if (parse_int(port, 1, 65535, &cfg->redis_port))
            return -1;
        p += 1 + n;
    }
    if (*p == '/' && p[1] && parse_int(p + 1, 0, 15, &cfg->redis_db))
        return -1;
    return 0;
}

static const char *check_one(struct cfg *cfg, const struct setting *s, const char *value)
{
    char *field = (char *)cfg + s->offset;
    static char why[160];
    switch (s->kind) {
    case K_STRING:
        *(char **)field = xstrdup(value);
        return NULL;
    case K_PREFIX:
        /* Letters, digits and _.:- only: a key name then never holds glob
         * syntax, quoting or spaces, whatever command or script it reaches. */
        if (strlen(value) > 64 || strspn(value, PREFIX_CHARS) != strlen(value))
            return "must be at most 64 characters among A-Z a-z 0-9 _ . : -";
        *(char **)field = xstrdup(value);
        return NULL;
    case K_INT:
        if (parse_int(value, s->min, s->max, (int *)field)) {
            snprintf(why, sizeof why, "is not a whole number between %ld and %ld", s->min,
                     s->max);
            return why;
        }
        return NULL;
    case K_LOG_LEVEL: {
        static const char *const names[] = {"debug", "info", "warn", "error"};
        for (size_t i = 0; i < ARRAY_LEN(names); i++)
            if (!strcmp(value, names[i])) {
                *(enum log_level *)field = (enum log_level)i;
                return NULL;
            }
        return "must be one of debug, info, warn, error";
    }
    case K_LOG_FORMAT:
        if (!strcmp(value, "json") || !strcmp(value, "text")) {
            *(enum log_format *)field = value[0] == 'j' ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT;
            return NULL;
        }
        return "must be json or text";
    case K_RETIRED:
        return s->fallback;
    case K_REDIS_URL:
        *(char **)field = xstrdup(value);
        if (parse_redis_url(cfg, value))
            return "must look like redis://host:port/db (credentials go in "
                   "SURGE_REDIS_USERNAME and SURGE_REDIS_PASSWORD)";
        return NULL;
    }
    return "has an unknown kind";
}

int cfg_load(struct cfg *cfg, const char *(*getenv_fn)(const char *), char *err_out,
             size_t err_len)
{
    memset(cfg, 0, sizeof *cfg);
    int bad = 0;
    size_t used = 0;
    if (err_out && err_len)
        err_out[0] = '\0';
    for (size_t i = 0; i < ARRAY_LEN(settings); i++) {
        const struct setting *s = &settings[i];
        const char *v = getenv_fn(s->name);
        if (s->kind == K_RETIRED && !v)
            continue;
        const char *value = v ? v : s->fallback;
        const char *why = check_one(cfg, s, value);
        if (!why)
            continue;
        bad++;
        if (err_out && used < err_len) {
            /* A password is never echoed back, nor a URL that may carry one. */
            bool secret = strstr(s->name, "PASSWORD") || (s->kind == K_REDIS_URL && strchr(value, '@'));
            int n = snprintf(err_out + used, err_len - used, "%s: \"%s\" %s\n", s->name,
                             secret ? "***" : value, why);
            if (n > 0)
                used += (size_t)n;
        }
    }
    if (!bad && cfg->burn_default_seconds > cfg->burn_max_seconds) {
        bad++;
        if (err_out)
            snprintf(err_out, err_len,
                     "SURGE_BURN_DEFAULT_SECONDS: \"%d\" is larger than SURGE_BURN_MAX_SECONDS "
                     "(%d)\n",
                     cfg->burn_default_seconds, cfg->burn_max_seconds);
    }
    return bad;
}

static const char *real_getenv(const char *name)
{
    return getenv(name);
}

void cfg_load_or_exit(struct cfg *cfg, const char *app)
{
    char err[2048];
    if (cfg_load(cfg, real_getenv, err, sizeof err) == 0)
        return;
    for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n"))
        fprintf(stderr, "%s: %s\n", app, line);
    exit(2);
}

void cfg_free(struct cfg *cfg)
{
    for (size_t i = 0; i < ARRAY_LEN(settings); i++) {
        enum kind k = settings[i].kind;
        if (k == K_STRING || k == K_PREFIX || k == K_REDIS_URL) {
            char **field = (char **)((char *)cfg + settings[i].offset);
            free(*field);
            *field = NULL;
        }
    }
    free(cfg->redis_host);
    cfg->redis_host = NULL;
}
