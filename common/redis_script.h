/* redis_script: what redis_client needs to send Lua scripts as EVALSHA: a
 * table of the scripts seen (text and SHA-1), the EVAL/EVALSHA command
 * written in RESP, the EVAL found in a command hiredis formatted, and a copy
 * of a reply kept past its callback. */
#ifndef SURGE_REDIS_SCRIPT_H
#define SURGE_REDIS_SCRIPT_H

#include "buf.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rscript {
    char *text;
    size_t len;
    char sha[41];
    uint64_t eval_no;   /* redis_client's count of sends at its last EVAL; 0: none */
    uint64_t eval_conn; /* the connection (redis_client's count) of that EVAL */
};

/* The scripts a client has sent: as many as the program has distinct
 * scripts (fixed texts), so the table stays small. */
struct rscript_table {
    struct rscript **s; /* each allocated once: pointers to them stay valid */
    int n, cap;
};

/* The script with this text, added (its SHA-1 computed once) when new.
 * Never NULL (allocation failure aborts). */
struct rscript *rscript_find(struct rscript_table *t, const char *text, size_t len);
/* Frees the texts; the table is empty after. */
void rscript_table_free(struct rscript_table *t);

/* Writes into out (emptied first) EVALSHA sha, or EVAL text when eval, then
 * rest: rest_argc arguments already in RESP (key count, keys, arguments). */
void rscript_write(struct buf *out, const struct rscript *s, bool eval, size_t rest_argc,
                   const char *rest, size_t rest_len);

/* When cmd (a RESP command) is an EVAL, sets text and len to its script and
 * rest, rest_len and rest_argc to what follows it, and returns true. */
bool rscript_parse_eval(const char *cmd, size_t cmd_len, const char **text, size_t *len,
                        const char **rest, size_t *rest_len, size_t *rest_argc);

/* True for Redis's NOSCRIPT error reply (EVALSHA of a script it lacks). */
bool rscript_is_noscript(const redisReply *r);

/* A deep copy of a reply (allocation failure aborts), freed with
 * rscript_free_reply. */
redisReply *rscript_copy_reply(const redisReply *r);
void rscript_free_reply(redisReply *r);

#endif
