/* Unit tests for common/resp.c (the RESP command writer, checked against
 * hiredis's own formatter) and common/sha1.c (FIPS 180 test vectors). */
#include "suites.h"

#include "resp.h"
#include "util.h"
#include "sha1.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

/* ---- RESP ---- */

START_TEST(uint_digits)
{
    static const struct {
        uint64_t v;
        const char *text;
    } cases[] = {{0, "0"},        {9, "9"},       {10, "10"},        {99, "99"},
                 {100, "100"},    {65535, "65535"}, {4294967296ull, "4294967296"},
                 {18446744073709551615ull, "18446744073709551615"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[32];
        memset(out, 'x', sizeof out);
        size_t n = util_format_uint(out, cases[i].v);
        ck_assert_uint_eq(n, strlen(cases[i].text));
        ck_assert_uint_eq(resp_digits(cases[i].v), n);
        ck_assert_int_eq(memcmp(out, cases[i].text, n), 0);
        ck_assert_int_eq(out[n], 'x'); /* nothing written past the digits */
    }
}
END_TEST

/* Our command must be byte for byte what redisFormatCommandArgv writes. */
static void check_against_hiredis(int argc, const char **argv, const size_t *lens)
{
    char *want = NULL;
    int want_len = redisFormatCommandArgv(&want, argc, argv, lens);
    ck_assert_int_gt(want_len, 0);
    size_t len = resp_header_len((size_t)argc) + resp_args_len((size_t)argc, argv, lens);
    ck_assert_uint_eq(len, (size_t)want_len);
    char *out = malloc(len + 1);
    out[len] = '#';
    size_t n = resp_write_header(out, (size_t)argc);
    n += resp_write_args(out + n, (size_t)argc, argv, lens);
    ck_assert_uint_eq(n, len);
    ck_assert_int_eq(out[len], '#');
    ck_assert_int_eq(memcmp(out, want, len), 0);
    free(out);
    redisFreeCommand(want);
}

START_TEST(command_as_hiredis_writes_it)
{
    const char *ping[] = {"PING"};
    check_against_hiredis(1, ping, NULL);
    const char *set[] = {"SET", "key", ""};
    check_against_hiredis(3, set, NULL);
    /* Binary arguments with their lengths, NUL and CRLF inside. */
    const char *bin[] = {"HSET", "k\r\nx", "a\0b"};
    const size_t bin_lens[] = {4, 4, 3};
    check_against_hiredis(3, bin, bin_lens);
    /* Twelve arguments (a two-digit count) and a long one (four digits). */
    char big[1500];
    memset(big, 'z', sizeof big);
    const char *many[12];
    size_t many_lens[12];
    for (int i = 0; i < 12; i++) {
        many[i] = i == 5 ? big : "arg";
        many_lens[i] = i == 5 ? sizeof big : 3;
    }
    check_against_hiredis(12, many, many_lens);
}
END_TEST

START_TEST(one_argument)
{
    char out[32];
    size_t n = resp_write_arg(out, "EVALSHA", 7);
    ck_assert_uint_eq(n, resp_arg_len(7));
    ck_assert_int_eq(memcmp(out, "$7\r\nEVALSHA\r\n", n), 0);
    n = resp_write_arg(out, "", 0);
    ck_assert_int_eq(memcmp(out, "$0\r\n\r\n", n), 0);
    n = resp_write_header(out, 3);
    ck_assert_int_eq(memcmp(out, "*3\r\n", n), 0);
}
END_TEST

/* ---- SHA-1 ---- */

static void check_sha1(const char *data, size_t len, const char *want)
{
    char out[41];
    sha1_hex(data, len, out);
    ck_assert_str_eq(out, want);
}

START_TEST(sha1_fips_vectors)
{
    check_sha1("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    check_sha1("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_sha1(two, strlen(two), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    size_t mlen = 1000000;
    char *million = malloc(mlen);
    memset(million, 'a', mlen);
    check_sha1(million, mlen, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    free(million);
}
END_TEST

/* Lengths around the padding boundaries (55/56 bytes fit or not in the last
 * block with the length); digests from Python's hashlib. */
START_TEST(sha1_padding_boundaries)
{
    static const struct {
        size_t n;
        const char *hex;
    } cases[] = {{55, "c1c8bbdc22796e28c0e15163d20899b65621d65a"},
                 {56, "c2db330f6083854c99d4b5bfb6e8f29f201be699"},
                 {63, "03f09f5b158a7a8cdad920bddc29b81c18a551f5"},
                 {64, "0098ba824b5c16427bd7a1122a5a442a25ec644d"},
                 {65, "11655326c708d70319be2610e8a57d9a5b959d3b"},
                 {119, "ee971065aaa017e0632a8ca6c77bb3bf8b1dfc56"},
                 {120, "f34c1488385346a55709ba056ddd08280dd4c6d6"}};
    char a[128];
    memset(a, 'a', sizeof a);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_sha1(a, cases[i].n, cases[i].hex);
}
END_TEST

Suite *resp_suite(void)
{
    Suite *s = suite_create("resp");
    TCase *tc = tcase_create("resp");
    tcase_add_test(tc, uint_digits);
    tcase_add_test(tc, command_as_hiredis_writes_it);
    tcase_add_test(tc, one_argument);
    suite_add_tcase(s, tc);
    TCase *sha = tcase_create("sha1");
    tcase_add_test(sha, sha1_fips_vectors);
    tcase_add_test(sha, sha1_padding_boundaries);
    suite_add_tcase(s, sha);
    return s;
}
