/* json_writer: appends JSON to a buf, handling commas and string escaping.
 * The caller keeps the structure balanced; nesting is limited to 16 levels. */
#ifndef SURGE_JSON_WRITER_H
#define SURGE_JSON_WRITER_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_writer {
    struct buf *out;
    int depth;
    bool need_comma[16];
};

void jw_init(struct json_writer *w, struct buf *out);
void jw_object_begin(struct json_writer *w);
void jw_object_end(struct json_writer *w);
void jw_array_begin(struct json_writer *w);
void jw_array_end(struct json_writer *w);
/* An object key; the next value call writes its value. */
void jw_key(struct json_writer *w, const char *key);
void jw_string(struct json_writer *w, const char *s);
void jw_string_n(struct json_writer *w, const char *s, size_t n);
void jw_int(struct json_writer *w, int64_t v);
void jw_double(struct json_writer *w, double v, int decimals);
void jw_bool(struct json_writer *w, bool v);
void jw_null(struct json_writer *w);
/* Inserts text that is already valid JSON (a stored result, say). */
void jw_raw(struct json_writer *w, const char *json, size_t n);

/* Shorthands for key + value; a NULL string writes null. */
void jw_key_string(struct json_writer *w, const char *key, const char *s);
void jw_key_int(struct json_writer *w, const char *key, int64_t v);

/* Appends s as a quoted, escaped JSON string to out; bytes that are not valid
 * UTF-8 become U+FFFD. */
void json_escape_string(struct buf *out, const char *s, size_t n);

#endif
