/* What chanqd remembers per client address: how many connections it holds
 * (max-connections-per-address) and its failed hellos (token guessing is
 * slowed down per address, and logged at most once per interval with a
 * count). IPv6 addresses count by their /64, what one host usually gets;
 * Unix-socket clients have no address and are never counted. */
#ifndef CHANQ_DAEMON_PEERS_H
#define CHANQ_DAEMON_PEERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* A client address as counted: IPv4, or the /64 of an IPv6 address. */
struct peer_addr {
    uint8_t b[16];
    uint8_t family; /* AF_INET, AF_INET6, or 0: no address (Unix socket) */
};

void peer_addr_from_sa(struct peer_addr *a, const struct sockaddr *sa);

struct peers;

struct peers *peers_new(void);
void peers_free(struct peers *p);

/* Counts a new connection from a, unless a already holds limit of them
 * (0: no limit); false when refused (counted for the log). Loop thread. */
bool peers_admit(struct peers *p, const struct peer_addr *a, uint64_t limit);
/* The connection admitted for a is gone. Loop thread. */
void peers_release(struct peers *p, const struct peer_addr *a);

/* Failed hellos from one address are answered one after another, each
 * delay_ms after the previous one: whatever the number of connections, the
 * address gets about one token checked per delay. Returns how long the
 * caller parks before answering. Any thread. */
int64_t peers_hello_failed(struct peers *p, const struct peer_addr *a, int64_t delay_ms);
/* False while a's failed hellos already wait more than PEERS_HELLO_BACKLOG_MS:
 * its next hello is refused without looking at the token (and counted as
 * a failure). Any thread. */
bool peers_hello_allowed(struct peers *p, const struct peer_addr *a);
#define PEERS_HELLO_BACKLOG_MS 2000

/* Logs the counts whose interval is over and forgets addresses with
 * nothing left to remember. Call about once a second. Loop thread. */
void peers_tick(struct peers *p);

#endif
