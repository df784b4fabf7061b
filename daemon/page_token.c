/* Page tokens (daemon/page_token.h): nonce || SipHash-2-4(key, nonce), in hex. */
#include "chanq_config.h"

#include "daemon/page_token.h"
#include "daemon/log.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct page_tokens {
    uint64_t k0, k1; /* the SipHash key */
};

static int
random_bytes(void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static void
sip_round(uint64_t v[4])
{
    v[0] += v[1], v[1] = ROTL(v[1], 13), v[1] ^= v[0], v[0] = ROTL(v[0], 32);
    v[2] += v[3], v[3] = ROTL(v[3], 16), v[3] ^= v[2];
    v[0] += v[3], v[3] = ROTL(v[3], 21), v[3] ^= v[0];
    v[2] += v[1], v[1] = ROTL(v[1], 17), v[1] ^= v[2], v[2] = ROTL(v[2], 32);
}

/* SipHash-2-4 of one 8-byte message m (its length, 8, goes in the final
 * block as the algorithm says). */
static uint64_t
siphash_u64(const struct page_tokens *p, uint64_t m)
{
    uint64_t v[4] = {p->k0 ^ 0x736f6d6570736575ULL, p->k1 ^ 0x646f72616e646f6dULL,
                     p->k0 ^ 0x6c7967656e657261ULL, p->k1 ^ 0x7465646279746573ULL};
    uint64_t blocks[2] = {m, (uint64_t)8 << 56};
    for (int i = 0; i < 2; i++) {
        v[3] ^= blocks[i];
        sip_round(v), sip_round(v);
        v[0] ^= blocks[i];
    }
    v[2] ^= 0xff;
    for (int i = 0; i < 4; i++)
        sip_round(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

struct page_tokens *
page_tokens_new(void)
{
    struct page_tokens *p = malloc(sizeof *p);
    if (!p) {
        log_error("page tokens: out of memory");
        return NULL;
    }
    if (random_bytes(p, sizeof *p) < 0) {
        log_error("page tokens: no random bytes: %s", strerror(errno));
        free(p);
        return NULL;
    }
    return p;
}

int
page_token_issue(const struct page_tokens *p, char out[PAGE_TOKEN_LEN + 1])
{
    uint64_t nonce;
    out[0] = '\0';
    if (random_bytes(&nonce, sizeof nonce) < 0)
        return -1;
    snprintf(out, PAGE_TOKEN_LEN + 1, "%016llx%016llx", (unsigned long long)nonce,
             (unsigned long long)siphash_u64(p, nonce));
    return 0;
}

/* 16 lower-case hex digits at s into *v; -1 on anything else. */
static int
hex64(const char *s, uint64_t *v)
{
    *v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        *v = *v << 4 | (uint64_t)d;
    }
    return 0;
}

bool
page_token_valid(const struct page_tokens *p, const char *token)
{
    uint64_t nonce, tag;
    if (!token || strlen(token) != PAGE_TOKEN_LEN || hex64(token, &nonce) < 0 ||
        hex64(token + 16, &tag) < 0)
        return false;
    /* Compared as whole words, not byte by byte: no early exit to time. */
    return (siphash_u64(p, nonce) ^ tag) == 0;
}

void
page_tokens_free(struct page_tokens *p)
{
    free(p);
}
