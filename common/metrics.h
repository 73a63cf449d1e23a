/* metrics: a small Prometheus registry — counters, gauges and histograms
 * with labels — rendered in the text exposition format, plus the standard
 * process_* metrics. Used from the event loop thread only.
 * Metric names are a contract with dashboards, alerts and scalers: keep in
 * sync with docs/architecture.md and k8s/monitoring (a test checks). */
#ifndef SURGE_METRICS_H
#define SURGE_METRICS_H

#include "buf.h"

#include <stddef.h>

#define METRICS_MAX_LABELS 3

struct metric;

/* label_names: comma-separated ("route,code") or NULL for none. The strings
 * must live as long as the process (literals). */
struct metric *metrics_counter(const char *name, const char *help, const char *label_names);
struct metric *metrics_gauge(const char *name, const char *help, const char *label_names);
/* buckets: upper bounds in increasing order (+Inf is added). */
struct metric *metrics_histogram(const char *name, const char *help, const char *label_names,
                                 const double *buckets, int n_buckets);

/* values: one string per label, in label order (NULL when there are none).
 * A series is created on first use. */
void metrics_add(struct metric *m, const char *const *values, double v);
void metrics_set(struct metric *m, const char *const *values, double v);
void metrics_observe(struct metric *m, const char *const *values, double v);

/* Appends every metric, then the process_* metrics. */
void metrics_render(struct buf *out, void *unused);

/* Bucket sets used by both binaries. */
extern const double metrics_buckets_http[];
extern const int metrics_buckets_http_count;
extern const double metrics_buckets_job[];
extern const int metrics_buckets_job_count;

#endif
