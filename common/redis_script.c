/* redis_script: Lua scripts as EVALSHA, for redis_client. The SHA-1 is
 * computed here (sha1.c) rather than taken from a SCRIPT LOAD answer: no
 * round trip before the first command, and nothing to redo when Redis loses
 * its scripts (the NOSCRIPT fallback in redis_client covers that). */
#include "redis_script.h"
#include "resp.h"
#include "sha1.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct rscript *rscript_find(struct rscript_table *t, const char *text, size_t len)
{
    for (int i = 0; i < t->n; i++)
        if (t->s[i]->len == len && memcmp(t->s[i]->text, text, len) == 0)
            return t->s[i];
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 8;
        t->s = xrealloc(t->s, (size_t)t->cap * sizeof *t->s);
    }
    struct rscript *s = xcalloc(1, sizeof *s);
    t->s[t->n++] = s;
    s->text = xmalloc(len ? len : 1);
    memcpy(s->text, text, len);
    s->len = len;
    sha1_hex(text, len, s->sha);
    return s;
}

void rscript_table_free(struct rscript_table *t)
{
    for (int i = 0; i < t->n; i++) {
        free(t->s[i]->text);
        free(t->s[i]);
    }
    free(t->s);
    t->s = NULL;
    t->n = t->cap = 0;
}

void rscript_write(struct buf *out, const struct rscript *s, bool eval, size_t rest_argc,
                   const char *rest, size_t rest_len)
{
    const char *verb = eval ? "EVAL" : "EVALSHA";
    size_t verb_len = eval ? 4 : 7;
    const char *body = eval ? s->text : s->sha;
    size_t body_len = eval ? s->len : 40;
    size_t need = resp_header_len(2 + rest_argc) + resp_arg_len(verb_len) +
                  resp_arg_len(body_len) + rest_len;
    buf_reset(out);
    char *w = buf_reserve(out, need);
    size_t n = resp_write_header(w, 2 + rest_argc);
    n += resp_write_arg(w + n, verb, verb_len);
    n += resp_write_arg(w + n, body, body_len);
    memcpy(w + n, rest, rest_len);
    out->len = n + rest_len;
}

/* Reads "<c><digits>\r\n" at *p (within end); returns the number or -1. */
static long long read_line_number(const char **p, const char *end, char c)
{
    const char *q = *p;
    if (q >= end || *q++ != c)
        return -1;
    long long v = 0;
    int digits = 0;
    while (q < end && *q >= '0' && *q <= '9' && digits < 12) {
        v = v * 10 + (*q++ - '0');
        digits++;
    }
    if (digits == 0 || end - q < 2 || q[0] != '\r' || q[1] != '\n')
        return -1;
    *p = q + 2;
    return v;
}

bool rscript_parse_eval(const char *cmd, size_t cmd_len, const char **text, size_t *len,
                        const char **rest, size_t *rest_len, size_t *rest_argc)
{
    const char *p = cmd, *end = cmd + cmd_len;
    long long argc = read_line_number(&p, end, '*');
    if (argc < 3)
        return false;
    long long vlen = read_line_number(&p, end, '$');
    if (vlen != 4 || end - p < 6 || strncasecmp(p, "EVAL", 4) != 0)
        return false;
    p += 6;
    long long slen = read_line_number(&p, end, '$');
    if (slen < 0 || end - p < slen + 2)
        return false;
    *text = p;
    *len = (size_t)slen;
    p += slen + 2;
    *rest = p;
    *rest_len = (size_t)(end - p);
    *rest_argc = (size_t)(argc - 2);
    return true;
}

bool rscript_is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && r->len >= 8 && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

redisReply *rscript_copy_reply(const redisReply *r)
{
    redisReply *c = xcalloc(1, sizeof *c);
    c->type = r->type;
    c->integer = r->integer;
    c->len = r->len;
    if (r->str) {
        c->str = xmalloc(r->len + 1);
        memcpy(c->str, r->str, r->len);
        c->str[r->len] = '\0';
    }
    if (r->element) {
        c->elements = r->elements;
        c->element = xcalloc(r->elements ? r->elements : 1, sizeof *c->element);
        for (size_t i = 0; i < r->elements; i++)
            c->element[i] = r->element[i] ? rscript_copy_reply(r->element[i]) : NULL;
    }
    return c;
}

void rscript_free_reply(redisReply *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->elements && r->element; i++)
        rscript_free_reply(r->element[i]);
    free(r->element);
    free(r->str);
    free(r);
}
