/* Page tokens: what the status page sends with each admin request
 * (X-Chanq-Page-Token) to show that it was served by this chanqd. chanqd
 * embeds a fresh one in every page it serves and hands one out at
 * GET /admin. A page of another site can neither read one (no CORS) nor
 * make one (it lacks the key), so its forged POSTs are refused even by a
 * browser that sends no Origin.
 *
 * A token is a random nonce and its SipHash-2-4 tag under a key drawn at
 * start: checking needs no table, so they cost no memory however many
 * pages are served, and they last until chanqd restarts (the page then
 * gets a new one from GET /admin).
 *
 * Any thread (the key is written once, in page_token_new). */
#ifndef CHANQ_DAEMON_PAGE_TOKEN_H
#define CHANQ_DAEMON_PAGE_TOKEN_H

#include <stdbool.h>

/* Characters in a token (hex digits), without the NUL. */
#define PAGE_TOKEN_LEN 32

struct page_tokens;

/* A key from the kernel's random source. NULL after logging why. */
struct page_tokens *page_tokens_new(void);

/* Writes a new token and its NUL into out. 0, or -1 when no random bytes
 * could be had (out is then empty). */
int page_token_issue(const struct page_tokens *p, char out[PAGE_TOKEN_LEN + 1]);

/* True when token (NUL-terminated, may be NULL) is one that p issued. */
bool page_token_valid(const struct page_tokens *p, const char *token);

void page_tokens_free(struct page_tokens *p);

#endif
