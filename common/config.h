/* config: every SURGE_ setting, read once from the environment at start.
 * This is the only file that names the variables (the manifests test greps
 * config.c for them); keep docs/architecture.md and k8s/ in sync. */
#ifndef SURGE_CONFIG_H
#define SURGE_CONFIG_H

#include "log.h"

#include <stddef.h>

struct cfg {
    char *redis_url;
    char *redis_host; /* parsed from redis_url */
    int redis_port;
    int redis_db;
    char *redis_username;
    char *redis_password;
    int redis_timeout_ms;
    char *pg_dsn;
    char *bind_address;
    int http_port;
    int admin_port;
    int burn_concurrency; /* worker: burns at once */
    int read_concurrency; /* worker: reads at once, and its PostgreSQL connections */
    int burn_default_seconds;
    int burn_max_seconds;
    int max_attempts;
    int result_ttl_seconds;
    int max_body_bytes;
    int max_connections;
    int header_timeout_seconds;
    int idle_timeout_seconds;
    int shutdown_grace_seconds;
    int heartbeat_seconds;
    int job_timeout_seconds;
    int dead_list_max; /* ids kept on surge:dead */
    enum log_level log_level;
    enum log_format log_format;
    char *key_prefix;
};

/* Reads the environment through getenv_fn (getenv in the binaries, a table
 * in tests). Returns 0, or the number of bad variables after writing one line
 * per bad variable to err_out (a caller-sized buffer, may be NULL). */
int cfg_load(struct cfg *cfg, const char *(*getenv_fn)(const char *name), char *err_out,
             size_t err_len);
/* cfg_load with getenv; on any bad value prints "app: <line>" and exits 2. */
void cfg_load_or_exit(struct cfg *cfg, const char *app);
void cfg_free(struct cfg *cfg);

#endif
