/* --token-file: the tokens a client may say hello with (one per line, so
 * a new one can be handed out before the old one is removed). Loaded once
 * at start; read-only afterwards, so any thread may check a token. */
#ifndef CHANQ_DAEMON_TOKENS_H
#define CHANQ_DAEMON_TOKENS_H

#include <stdbool.h>

#include "proto/span.h"

struct tokens;

/* Reads every non-empty line of path (trimmed) as a token. Returns the set,
 * or NULL after logging why (unreadable, no token in it, a token over
 * 4096 bytes, out of memory). */
struct tokens *tokens_load(const char *path);

/* NULL is allowed. Nothing may check a token any more. */
void tokens_free(struct tokens *t);

/* Whether clients must say hello with a token: false for NULL (no
 * --token-file). Any thread. */
bool tokens_required(const struct tokens *t);

/* Whether token is one of t's; always true when none is required. Takes
 * the same time whichever token matches, and leaks no prefix through its
 * timing. Any thread. */
bool tokens_accept(const struct tokens *t, struct span token);

#endif
