/* json_reader: parses a JSON document with jsmn (strict mode) into a fixed
 * token array, then checks what jsmn lets through (separators, numbers,
 * literals, control characters, trailing text), so only valid JSON passes. */
#ifndef SURGE_JSON_READER_H
#define SURGE_JSON_READER_H

#define JSMN_STRICT
#define JSMN_HEADER
#include <jsmn.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_TOKENS 128

struct json_doc {
    const char *text; /* borrowed; must outlive the doc */
    size_t len;
    int count;
    jsmntok_t tok[JSON_MAX_TOKENS];
};

/* Parses text[0..len). Returns 0, or -1 with a static reason in *why. */
int json_parse(struct json_doc *doc, const char *text, size_t len, const char **why);

/* The index of the value of key in the object at token obj, or -1. */
int json_object_get(const struct json_doc *doc, int obj, const char *key);
/* Index of the token after the value at tok (skipping its children). */
int json_skip(const struct json_doc *doc, int tok);
/* True if token tok is the string key. */
bool json_string_equals(const struct json_doc *doc, int tok, const char *s);
/* Reads an integer token (no fraction, no exponent) that fits int64. 0 or -1. */
int json_get_int64(const struct json_doc *doc, int tok, int64_t *out);
/* Copies a string token, unescaped, into a new allocation (caller frees).
 * Returns NULL if tok is not a string. */
char *json_get_string(const struct json_doc *doc, int tok);

#endif
