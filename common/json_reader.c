/* json_reader: jsmn plus the validation jsmn's strict mode does not do. */
/* The one place jsmn's implementation is compiled (strict mode). */
#define JSMN_STRICT
#include <jsmn.h>

#include "json_reader.h"
#include "buf.h"
#include "utf8.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Where a token's text begins and ends, quotes included for strings. */
static size_t tok_begin(const jsmntok_t *t)
{
    return (size_t)t->start - (t->type == JSMN_STRING ? 1 : 0);
}

static size_t tok_end(const jsmntok_t *t)
{
    return (size_t)t->end + (t->type == JSMN_STRING ? 1 : 0);
}

/* The text in [from, to) must be whitespace around at most one `sep`
 * (exactly one when sep is not 0). */
static bool gap_ok(const char *s, size_t from, size_t to, char sep)
{
    bool seen = false;
    for (size_t i = from; i < to; i++) {
        if (is_ws(s[i]))
            continue;
        if (sep && s[i] == sep && !seen) {
            seen = true;
            continue;
        }
        return false;
    }
    return sep ? seen : true;
}

static bool number_ok(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    if (i >= n)
        return false;
    if (s[i] == '0') {
        i++;
    } else if (s[i] >= '1' && s[i] <= '9') {
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    } else {
        return false;
    }
    if (i < n && s[i] == '.') {
        i++;
        size_t d = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return false;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t d = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return false;
    }
    return i == n;
}

static bool primitive_ok(const char *s, size_t n)
{
    if ((n == 4 && !memcmp(s, "true", 4)) || (n == 5 && !memcmp(s, "false", 5)) ||
        (n == 4 && !memcmp(s, "null", 4)))
        return true;
    return number_ok(s, n);
}

static bool string_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20)
            return false;
    return utf8_valid(s, n); /* JSON text is UTF-8 (RFC 8259) */
}

/* Validates the value at token *i and advances *i past it and its children. */
static bool check_value(const struct json_doc *d, int *i, int depth)
{
    if (*i >= d->count || depth > 32)
        return false;
    const jsmntok_t *t = &d->tok[*i];
    const char *s = d->text;
    (*i)++;
    switch (t->type) {
    case JSMN_PRIMITIVE:
        return primitive_ok(s + t->start, (size_t)(t->end - t->start));
    case JSMN_STRING:
        return string_ok(s + t->start, (size_t)(t->end - t->start));
    case JSMN_OBJECT:
    case JSMN_ARRAY: {
        bool obj = t->type == JSMN_OBJECT;
        size_t pos = (size_t)t->start + 1;
        for (int k = 0; k < t->size; k++) {
            if (*i >= d->count)
                return false;
            const jsmntok_t *item = &d->tok[*i];
            if (!gap_ok(s, pos, tok_begin(item), k ? ',' : 0))
                return false;
            if (obj) {
                if (item->type != JSMN_STRING || item->size != 1 ||
                    !string_ok(s + item->start, (size_t)(item->end - item->start)))
                    return false;
                (*i)++;
                if (*i >= d->count || !gap_ok(s, tok_end(item), tok_begin(&d->tok[*i]), ':'))
                    return false;
                item = &d->tok[*i];
            }
            if (!check_value(d, i, depth + 1))
                return false;
            pos = tok_end(item);
        }
        return gap_ok(s, pos, (size_t)t->end - 1, 0) && s[t->end - 1] == (obj ? '}' : ']');
    }
    default:
        return false;
    }
}

/* jsmn's strict mode wants a delimiter after a primitive, so a document that
 * is a bare number or literal is read here as one token. */
static int parse_bare_primitive(struct json_doc *doc, const char **why)
{
    size_t b = 0, e = doc->len;
    while (b < e && is_ws(doc->text[b]))
        b++;
    while (e > b && is_ws(doc->text[e - 1]))
        e--;
    if (b == e || !primitive_ok(doc->text + b, e - b)) {
        *why = b == e ? "the document is empty" : "the document is not valid JSON";
        return -1;
    }
    memset(&doc->tok[0], 0, sizeof doc->tok[0]);
    doc->tok[0].type = JSMN_PRIMITIVE;
    doc->tok[0].start = (int)b;
    doc->tok[0].end = (int)e;
    doc->count = 1;
    return 0;
}

int json_parse(struct json_doc *doc, const char *text, size_t len, const char **why)
{
    jsmn_parser p;
    jsmn_init(&p);
    doc->text = text;
    doc->len = len;
    size_t first = 0;
    while (first < len && is_ws(text[first]))
        first++;
    if (first < len && text[first] != '{' && text[first] != '[' && text[first] != '"')
        return parse_bare_primitive(doc, why);
    int n = jsmn_parse(&p, text, len, doc->tok, JSON_MAX_TOKENS);
    if (n == JSMN_ERROR_NOMEM) {
        *why = "the document has too many values";
        return -1;
    }
    if (n < 0) {
        *why = n == JSMN_ERROR_PART ? "the document ends too early" : "the document is not valid JSON";
        return -1;
    }
    if (n == 0) {
        *why = "the document is empty";
        return -1;
    }
    doc->count = n;
    int i = 0;
    if (!check_value(doc, &i, 0) || i != n || !gap_ok(text, 0, tok_begin(&doc->tok[0]), 0) ||
        !gap_ok(text, tok_end(&doc->tok[0]), len, 0)) {
        *why = "the document is not valid JSON";
        return -1;
    }
    return 0;
}

int json_skip(const struct json_doc *doc, int tok)
{
    /* Tokens are in document order: a value's children end before the
     * first token that starts after the value ends. */
    int end = doc->tok[tok].end;
    int i = tok + 1;
    while (i < doc->count && doc->tok[i].start < end)
        i++;
    return i;
}

bool json_string_equals(const struct json_doc *doc, int tok, const char *s)
{
    const jsmntok_t *t = &doc->tok[tok];
    size_t n = (size_t)(t->end - t->start);
    return t->type == JSMN_STRING && strlen(s) == n && !memcmp(doc->text + t->start, s, n);
}

int json_object_get(const struct json_doc *doc, int obj, const char *key)
{
    if (obj < 0 || obj >= doc->count || doc->tok[obj].type != JSMN_OBJECT)
        return -1;
    int i = obj + 1;
    for (int k = 0; k < doc->tok[obj].size; k++) {
        if (json_string_equals(doc, i, key))
            return i + 1;
        i = json_skip(doc, i + 1);
    }
    return -1;
}

int json_get_int64(const struct json_doc *doc, int tok, int64_t *out)
{
    if (tok < 0 || tok >= doc->count)
        return -1;
    const jsmntok_t *t = &doc->tok[tok];
    if (t->type != JSMN_PRIMITIVE)
        return -1;
    const char *s = doc->text + t->start;
    size_t n = (size_t)(t->end - t->start);
    char tmp[24];
    if (n == 0 || n >= sizeof tmp)
        return -1;
    for (size_t k = 0; k < n; k++)
        if (!((s[k] >= '0' && s[k] <= '9') || (k == 0 && s[k] == '-')))
            return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    errno = 0;
    char *end;
    long long v = strtoll(tmp, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void put_utf8(struct buf *b, unsigned cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_append(b, u, n);
}

char *json_get_string(const struct json_doc *doc, int tok)
{
    if (tok < 0 || tok >= doc->count || doc->tok[tok].type != JSMN_STRING)
        return NULL;
    const char *s = doc->text + doc->tok[tok].start;
    size_t n = (size_t)(doc->tok[tok].end - doc->tok[tok].start);
    struct buf b = {0};
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            buf_append(&b, s + i, 1);
            continue;
        }
        char c = ++i < n ? s[i] : '\\';
        switch (c) {
        case 'b': buf_append(&b, "\b", 1); break;
        case 'f': buf_append(&b, "\f", 1); break;
        case 'n': buf_append(&b, "\n", 1); break;
        case 'r': buf_append(&b, "\r", 1); break;
        case 't': buf_append(&b, "\t", 1); break;
        case 'u': {
            unsigned cp = 0;
            for (int k = 0; k < 4 && i + 1 < n; k++) {
                int h = hex_value(s[++i]);
                cp = cp * 16 + (unsigned)(h < 0 ? 0 : h);
            }
            put_utf8(&b, cp);
            break;
        }
        default: buf_append(&b, &c, 1);
        }
    }
    return buf_steal(&b);
}
