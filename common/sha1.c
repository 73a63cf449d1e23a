/* sha1: a small SHA-1 written from FIPS 180-4, section 6.1. Neither hiredis
 * nor our other libraries export one (OpenSSL is not linked), and computing
 * the digest here keeps EVALSHA free of a SCRIPT LOAD round trip at start. */
#include "sha1.h"

#include <stdint.h>
#include <string.h>

struct sha1 {
    uint32_t h[5];
    uint64_t bytes;
    unsigned char block[64];
    size_t fill;
};

static uint32_t rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void transform(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5a827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ed9eba1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8f1bbcdc;
        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6;
        }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

static void update(struct sha1 *s, const unsigned char *p, size_t len)
{
    s->bytes += len;
    while (len > 0) {
        size_t n = 64 - s->fill < len ? 64 - s->fill : len;
        memcpy(s->block + s->fill, p, n);
        s->fill += n;
        p += n;
        len -= n;
        if (s->fill == 64) {
            transform(s->h, s->block);
            s->fill = 0;
        }
    }
}

void sha1_hex(const void *data, size_t len, char out[41])
{
    struct sha1 s = {.h = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0}};
    update(&s, data, len);
    uint64_t bits = s.bytes * 8;
    /* Padding: 0x80, zeros up to 56 bytes mod 64, the length in bits. */
    static const unsigned char pad[64] = {0x80};
    update(&s, pad, s.fill < 56 ? 56 - s.fill : 120 - s.fill);
    unsigned char tail[8];
    for (int i = 0; i < 8; i++)
        tail[i] = (unsigned char)(bits >> (56 - 8 * i));
    update(&s, tail, 8);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 20; i++) {
        unsigned byte = (s.h[i / 4] >> (24 - 8 * (i % 4))) & 0xff;
        out[2 * i] = hex[byte >> 4];
        out[2 * i + 1] = hex[byte & 15];
    }
    out[40] = '\0';
}
