/* metrics: registry and text exposition. */
#include "metrics.h"
#include "util.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

enum kind { COUNTER, GAUGE, HISTOGRAM };

struct series {
    char *values[METRICS_MAX_LABELS];
    double value;     /* counter, gauge; histogram sum */
    uint64_t count;   /* histogram */
    uint64_t *bucket; /* histogram: cumulative counts per bound */
    struct series *next;
};

struct metric {
    const char *name;
    const char *help;
    enum kind kind;
    const char *labels[METRICS_MAX_LABELS];
    int n_labels;
    const double *buckets;
    int n_buckets;
    struct series *series;
    struct metric *next;
};

static struct metric *all, *last;
static double start_time;

const double metrics_buckets_http[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                       0.05,   0.1,   0.25,   0.5,   1,    2.5};
const int metrics_buckets_http_count = (int)ARRAY_LEN(metrics_buckets_http);
/* From millisecond reads to three-minute burns and beyond. */
const double metrics_buckets_job[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                      1,     2.5,    5,     10,   30,    60,   120, 180, 240,
                                      300,   600,    1800};
const int metrics_buckets_job_count = (int)ARRAY_LEN(metrics_buckets_job);

static struct metric *define(const char *name, const char *help, enum kind kind,
                             const char *label_names)
{
    struct metric *m = xcalloc(1, sizeof *m);
    m->name = name;
    m->help = help;
    m->kind = kind;
    if (label_names) {
        /* Split a copy kept for the process lifetime. */
        char *copy = xstrdup(label_names);
        for (char *tok = strtok(copy, ","); tok && m->n_labels < METRICS_MAX_LABELS;
             tok = strtok(NULL, ","))
            m->labels[m->n_labels++] = tok;
    }
    if (!all) {
        all = m;
        start_time = (double)util_now_ms() / 1000.0;
    } else {
        last->next = m;
    }
    last = m;
    return m;
}

struct metric *metrics_counter(const char *name, const char *help, const char *label_names)
{
    return define(name, help, COUNTER, label_names);
}

struct metric *metrics_gauge(const char *name, const char *help, const char *label_names)
{
    return define(name, help, GAUGE, label_names);
}

struct metric *metrics_histogram(const char *name, const char *help, const char *label_names,
                                 const double *buckets, int n_buckets)
{
    struct metric *m = define(name, help, HISTOGRAM, label_names);
    m->buckets = buckets;
    m->n_buckets = n_buckets;
    return m;
}

static struct series *find(struct metric *m, const char *const *values)
{
    for (struct series *s = m->series; s; s = s->next) {
        int i = 0;
        while (i < m->n_labels && !strcmp(s->values[i], values[i]))
            i++;
        if (i == m->n_labels)
            return s;
    }
    struct series *s = xcalloc(1, sizeof *s);
    for (int i = 0; i < m->n_labels; i++)
        s->values[i] = xstrdup(values[i]);
    if (m->kind == HISTOGRAM)
        s->bucket = xcalloc((size_t)m->n_buckets, sizeof *s->bucket);
    s->next = m->series;
    m->series = s;
    return s;
}

void metrics_add(struct metric *m, const char *const *values, double v)
{
    find(m, values)->value += v;
}

void metrics_set(struct metric *m, const char *const *values, double v)
{
    find(m, values)->value = v;
}

void metrics_observe(struct metric *m, const char *const *values, double v)
{
    struct series *s = find(m, values);
    s->value += v;
    s->count++;
    for (int i = 0; i < m->n_buckets; i++)
        if (v <= m->buckets[i])
            s->bucket[i]++;
}

/* ---- rendering ---- */

static void label_value(struct buf *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            buf_printf(out, "\\%c", *v);
        else if (*v == '\n')
            buf_puts(out, "\\n");
        else
            buf_append(out, v, 1);
    }
}

/* Writes name{labels[,extra]} */
static void series_name(struct buf *out, const struct metric *m, const char *suffix,
                        const struct series *s, const char *extra_label, const char *extra_value)
{
    buf_puts(out, m->name);
    buf_puts(out, suffix);
    if (m->n_labels == 0 && !extra_label)
        return;
    buf_puts(out, "{");
    for (int i = 0; i < m->n_labels; i++) {
        buf_printf(out, "%s%s=\"", i ? "," : "", m->labels[i]);
        label_value(out, s->values[i]);
        buf_puts(out, "\"");
    }
    if (extra_label)
        buf_printf(out, "%s%s=\"%s\"", m->n_labels ? "," : "", extra_label, extra_value);
    buf_puts(out, "}");
}

static void number(struct buf *out, double v)
{
    if (isinf(v))
        buf_puts(out, v > 0 ? " +Inf\n" : " -Inf\n");
    else if (v == floor(v) && fabs(v) < 1e15)
        buf_printf(out, " %.0f\n", v);
    else
        buf_printf(out, " %.9g\n", v);
}

static void render_metric(struct buf *out, const struct metric *m)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, types[m->kind]);
    if (m->n_labels == 0 && !m->series && m->kind != HISTOGRAM) {
        buf_printf(out, "%s 0\n", m->name); /* a plain series exists from the start */
        return;
    }
    for (const struct series *s = m->series; s; s = s->next) {
        if (m->kind != HISTOGRAM) {
            series_name(out, m, "", s, NULL, NULL);
            number(out, s->value);
            continue;
        }
        char le[32];
        for (int i = 0; i < m->n_buckets; i++) {
            snprintf(le, sizeof le, "%g", m->buckets[i]);
            series_name(out, m, "_bucket", s, "le", le);
            number(out, (double)s->bucket[i]);
        }
        series_name(out, m, "_bucket", s, "le", "+Inf");
        number(out, (double)s->count);
        series_name(out, m, "_sum", s, NULL, NULL);
        number(out, s->value);
        series_name(out, m, "_count", s, NULL, NULL);
        number(out, (double)s->count);
    }
}

static int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory's own descriptor */
}

static void render_process(struct buf *out)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    long pages_total = 0, pages_resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages_total, &pages_resident) != 2)
            pages_total = pages_resident = 0;
        fclose(f);
    }
    long page = sysconf(_SC_PAGESIZE);
    struct rlimit rl = {0};
    getrlimit(RLIMIT_NOFILE, &rl);
    buf_printf(out,
               "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
               "# TYPE process_cpu_seconds_total counter\n"
               "process_cpu_seconds_total %.3f\n"
               "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
               "# TYPE process_resident_memory_bytes gauge\n"
               "process_resident_memory_bytes %ld\n"
               "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
               "# TYPE process_virtual_memory_bytes gauge\n"
               "process_virtual_memory_bytes %ld\n"
               "# HELP process_open_fds Number of open file descriptors.\n"
               "# TYPE process_open_fds gauge\n"
               "process_open_fds %d\n"
               "# HELP process_max_fds Maximum number of open file descriptors.\n"
               "# TYPE process_max_fds gauge\n"
               "process_max_fds %llu\n"
               "# HELP process_start_time_seconds Start time of the process since unix epoch in "
               "seconds.\n"
               "# TYPE process_start_time_seconds gauge\n"
               "process_start_time_seconds %.3f\n",
               cpu, pages_resident * page, pages_total * page, count_open_fds(),
               (unsigned long long)rl.rlim_cur, start_time);
}

void metrics_render(struct buf *out, void *unused)
{
    (void)unused;
    for (const struct metric *m = all; m; m = m->next)
        render_metric(out, m);
    render_process(out);
}
