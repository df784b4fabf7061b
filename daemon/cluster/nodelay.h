/* libraft's TCP transport with TCP_NODELAY on every connection. libraft
 * 0.15 never sets it, so a small AppendEntries waits for the ACK of the
 * previous segment (Nagle) while the receiver delays that ACK (~40 ms):
 * a one-record entry then takes ~43 ms to commit instead of well under
 * one. This wraps raft_uv_tcp_init's transport and sets the option on each
 * stream it accepts or connects, before libraft sees it. It also cuts the
 * client address ("/HOST:PORT", see replica.h) off every address it is
 * given, so the configuration can carry it.
 *
 * Loop thread only (the replica thread's libuv loop). */
#ifndef CHANQ_DAEMON_CLUSTER_NODELAY_H
#define CHANQ_DAEMON_CLUSTER_NODELAY_H

#include <raft/uv.h>

/* Longest Raft address (before any "/client" part) the transport takes. */
#define NODELAY_ADDRESS_MAX 64

/* Public so the replica can embed it; treat the fields as private. */
struct nodelay_transport {
    struct raft_uv_transport outer; /* what raft_uv_init gets */
    struct raft_uv_transport inner; /* libraft's TCP transport */
    raft_uv_accept_cb accept_cb;    /* raft_uv's, given to listen */
    raft_uv_transport_close_cb close_cb;
    char self_address[NODELAY_ADDRESS_MAX]; /* this node's, as init gave it */
};

/* Sets up t on loop. Returns 0 or a libraft error code (RAFT_NOMEM). */
int nodelay_init(struct nodelay_transport *t, struct uv_loop_s *loop);
/* Listen on address (IPv4:port) instead of raft_init's, which the
 * transport still tells the peers it connects to: libraft's handshake
 * carries it and a peer answers there. Before raft_init. 0 or a libraft
 * error code. */
int nodelay_set_bind_address(struct nodelay_transport *t, const char *address);
/* The transport to pass to raft_uv_init (borrowed, inside t). */
struct raft_uv_transport *nodelay_transport(struct nodelay_transport *t);
/* Frees what nodelay_init made: after raft_uv has closed the transport. */
void nodelay_close(struct nodelay_transport *t);

#endif
