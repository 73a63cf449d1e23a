/* buf: a growable byte buffer that tracks its length, used for every output.
 * Allocation failure aborts (our own structure, never sized by a client
 * without a limit checked first). */
#ifndef SURGE_BUF_H
#define SURGE_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

/* Appends n bytes; the buffer stays NUL-terminated after data[len]. */
void buf_append(struct buf *b, const char *s, size_t n);
void buf_puts(struct buf *b, const char *s);
/* Appends v in decimal (util_format_uint): no printf on hot paths. */
void buf_append_uint(struct buf *b, uint64_t v);
/* printf-style append. */
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Makes room for at least extra more bytes; returns where they go. The
 * caller then adds what it wrote to len. */
char *buf_reserve(struct buf *b, size_t extra);
/* Drops the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/* Empties the buffer, keeping its memory. */
void buf_reset(struct buf *b);
/* Frees the memory; the buffer is empty and usable again. */
void buf_free(struct buf *b);
/* Hands the memory to the caller (who frees it); the buffer is left empty. */
char *buf_steal(struct buf *b);

#endif
