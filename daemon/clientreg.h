/* The open connections as an operator sees them: the `clients` op, and the
 * holder of a reserved job in `list`. Each connection embeds a struct
 * client_info, adds it when it starts being served and removes it when its
 * socket closes (before the connection, and its holder, are freed).
 *
 * Locks: the registry's lock guards its list; an entry's own lock guards
 * its name (a leaf: nothing else is taken under it). Order: broker lock,
 * then registry lock, then an entry's lock. id, addr, since_ms and holder
 * never change once added; the counters are atomics. */
#ifndef CHANQ_DAEMON_CLIENTREG_H
#define CHANQ_DAEMON_CLIENTREG_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct broker;
struct holder;

/* A hello's client name is kept up to this many bytes (cut at a UTF-8
 * character boundary). */
#define CLIENT_NAME_MAX 256

struct client_info {
    uint64_t id;                 /* the connection's number, from 1 */
    int64_t since_ms;            /* wall clock when it was added */
    char addr[64];               /* "host:port", "[v6]:port" or "unix" */
    struct holder *holder;       /* its jobs (read under the broker lock) */
    pthread_mutex_t lock;        /* guards name and named */
    char name[CLIENT_NAME_MAX + 1];
    bool named;                  /* a hello gave a name */
    _Atomic uint64_t received;   /* requests read */
    _Atomic uint64_t answered;   /* requests answered */
    struct client_info *prev, *next; /* the registry's list, oldest first */
};

struct client_reg;

/* NULL when out of memory. Any thread. */
struct client_reg *client_reg_new(void);
/* Every entry must have been removed. */
void client_reg_free(struct client_reg *r);

/* Fills ci (id, since_ms, addr from fd's peer, holder) and lists it.
 * Any thread. */
void client_reg_add(struct client_reg *r, struct client_info *ci, int fd, struct holder *h);
/* Unlists ci. Any thread. */
void client_reg_remove(struct client_reg *r, struct client_info *ci);
/* Before freeing ci (added or not), once no job names its holder. */
void client_info_fini(struct client_info *ci);

/* A successful hello's client name (len 0: none). Any thread. */
void client_info_set_name(struct client_info *ci, const char *name, size_t len);
/* {"conn":ID,"client":NAME|null,"addr":ADDR} (new reference, or NULL). */
json_t *client_info_holder_json(struct client_info *ci);

/* The `clients` answer's array, oldest connection first (new reference, or
 * NULL when out of memory). Takes b's lock, then r's. Goroutine or any
 * thread. */
json_t *client_reg_json(struct client_reg *r, struct broker *b);

#endif
