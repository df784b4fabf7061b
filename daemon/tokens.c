/* The --token-file tokens and the constant-time check of a hello's token. */
#include "chanq_config.h"

#include "daemon/tokens.h"
#include "daemon/config.h"
#include "daemon/log.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKEN 4096

struct tokens {
    char **list; /* the file's non-empty lines, trimmed */
    size_t n;
};

/* Appends line (trimmed; skipped when empty) to t. */
static int
add_token(struct tokens *t, char *line, const char *path)
{
    char *s = config_trim(line);
    if (*s == '\0')
        return 0;
    if (strlen(s) > MAX_TOKEN) {
        log_error("--token-file %s: a token is longer than %d bytes", path, MAX_TOKEN);
        return -1;
    }
    char **grown = realloc(t->list, (t->n + 1) * sizeof *grown);
    if (!grown || !(grown[t->n] = strdup(s))) {
        if (grown)
            t->list = grown;
        log_error("--token-file %s: out of memory", path);
        return -1;
    }
    t->list = grown;
    t->n++;
    return 0;
}

struct tokens *
tokens_load(const char *path)
{
    struct tokens *t = calloc(1, sizeof *t);
    FILE *f = t ? fopen(path, "r") : NULL;
    if (!f) {
        log_error("cannot read --token-file %s: %s", path, t ? strerror(errno) : "out of memory");
        free(t);
        return NULL;
    }
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    while (rc == 0 && getline(&line, &cap, f) >= 0)
        rc = add_token(t, line, path);
    free(line);
    fclose(f);
    if (rc == 0 && t->n == 0) {
        log_error("--token-file %s: no token in it (one per line)", path);
        rc = -1;
    }
    if (rc < 0) {
        tokens_free(t);
        return NULL;
    }
    return t;
}

void
tokens_free(struct tokens *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->list[i]);
    free(t->list);
    free(t);
}

bool
tokens_required(const struct tokens *t)
{
    return t && t->n > 0;
}

bool
tokens_accept(const struct tokens *t, struct span token)
{
    if (!tokens_required(t))
        return true;
    /* Every token is compared, each in constant time for its length: no
     * timing hint of a prefix, nor of which token matched. */
    bool ok = false;
    for (size_t i = 0; i < t->n; i++) {
        const char *s = t->list[i];
        ok |= strlen(s) == token.len && CRYPTO_memcmp(s, token.ptr, token.len) == 0;
    }
    return ok;
}
