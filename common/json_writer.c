/* json_writer: a small streaming JSON writer on top of buf. */
#include "json_writer.h"
#include "utf8.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

void jw_init(struct json_writer *w, struct buf *out)
{
    memset(w, 0, sizeof *w);
    w->out = out;
}

/* Writes the comma a value needs in arrays; after a key none is needed. */
static void before_value(struct json_writer *w)
{
    if (w->need_comma[w->depth])
        buf_append(w->out, ",", 1);
    w->need_comma[w->depth] = true;
}

static void open(struct json_writer *w, char c)
{
    before_value(w);
    buf_append(w->out, &c, 1);
    assert(w->depth + 1 < (int)(sizeof w->need_comma / sizeof w->need_comma[0]));
    w->depth++;
    w->need_comma[w->depth] = false;
}

static void close_(struct json_writer *w, char c)
{
    assert(w->depth > 0);
    w->depth--;
    buf_append(w->out, &c, 1);
}

void jw_object_begin(struct json_writer *w)
{
    open(w, '{');
}

void jw_object_end(struct json_writer *w)
{
    close_(w, '}');
}

void jw_array_begin(struct json_writer *w)
{
    open(w, '[');
}

void jw_array_end(struct json_writer *w)
{
    close_(w, ']');
}

void jw_key(struct json_writer *w, const char *key)
{
    before_value(w);
    json_escape_string(w->out, key, strlen(key));
    buf_append(w->out, ":", 1);
    /* The value that follows must not write a comma. */
    w->need_comma[w->depth] = false;
}

/* After a value inside an object or array, the next item needs a comma. */
static void after_value(struct json_writer *w)
{
    w->need_comma[w->depth] = true;
}

void jw_string(struct json_writer *w, const char *s)
{
    if (!s) {
        jw_null(w);
        return;
    }
    jw_string_n(w, s, strlen(s));
}

void jw_string_n(struct json_writer *w, const char *s, size_t n)
{
    before_value(w);
    json_escape_string(w->out, s, n);
    after_value(w);
}

void jw_int(struct json_writer *w, int64_t v)
{
    before_value(w);
    buf_printf(w->out, "%lld", (long long)v);
    after_value(w);
}

void jw_double(struct json_writer *w, double v, int decimals)
{
    before_value(w);
    if (isfinite(v))
        buf_printf(w->out, "%.*f", decimals, v);
    else
        buf_puts(w->out, "null");
    after_value(w);
}

void jw_bool(struct json_writer *w, bool v)
{
    before_value(w);
    buf_puts(w->out, v ? "true" : "false");
    after_value(w);
}

void jw_null(struct json_writer *w)
{
    before_value(w);
    buf_puts(w->out, "null");
    after_value(w);
}

void jw_raw(struct json_writer *w, const char *json, size_t n)
{
    before_value(w);
    buf_append(w->out, json, n);
    after_value(w);
}

void jw_key_string(struct json_writer *w, const char *key, const char *s)
{
    jw_key(w, key);
    jw_string(w, s);
}

void jw_key_int(struct json_writer *w, const char *key, int64_t v)
{
    jw_key(w, key);
    jw_int(w, v);
}

void json_escape_string(struct buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    buf_append(out, "\"", 1);
    size_t run = 0; /* bytes copied as they are, flushed in one append */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[7];
        if (c >= 0x80) {
            /* JSON is UTF-8: a valid sequence passes as it is; any other
             * byte becomes U+FFFD, so no answer is ever invalid. */
            size_t len = utf8_sequence_length((const unsigned char *)s + i, n - i);
            if (len > 0) {
                run += len;
                i += len - 1;
                continue;
            }
            buf_append(out, s + i - run, run);
            run = 0;
            buf_puts(out, "\\ufffd");
            continue;
        }
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (c < 0x20) {
                snprintf(u, sizeof u, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
                esc = u;
            }
        }
        if (!esc) {
            run++;
            continue;
        }
        buf_append(out, s + i - run, run);
        run = 0;
        buf_puts(out, esc);
    }
    buf_append(out, s + n - run, run);
    buf_append(out, "\"", 1);
}
