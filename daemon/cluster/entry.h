/* A Raft entry's payload: one group-commit batch of the broker's journal
 * records (daemon/jrec.h), and a snapshot's records, in one framing: an
 * 8-byte header (a version byte, three zero bytes, the 4-byte length of
 * what follows), then each record as a 4-byte length and its bytes, then
 * zero bytes up to a multiple of 8. Lengths are little-endian. The padding
 * is there because libraft 0.15's on-disk log only reads back entries
 * whose size is a multiple of 8 (others are taken for corruption at the
 * next start). Decoding is strict (a cut record, a zero or oversized
 * length, an unknown version, bad padding is corruption), so every node
 * rejects a bad entry the same way. No I/O; the builder allocates with
 * raft_malloc, so that a built entry can be handed to libraft as it is. */
#ifndef CHANQ_DAEMON_CLUSTER_ENTRY_H
#define CHANQ_DAEMON_CLUSTER_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#define ENTRY_VERSION 1
#define ENTRY_MAX_RECORD (64u << 20) /* the journal's own record limit */

/* A growing entry. Zero-initialise it; entry_add the records (or
 * entry_seal for an entry of none); then take buf/len (raft_malloc'd:
 * hand it to raft_apply, or raft_free it) or entry_reset to drop it. */
struct entry_builder {
    uint8_t *buf; /* NULL until the first record */
    size_t len;   /* the whole entry, padding included: a multiple of 8 */
    size_t used;  /* header and records, without the padding */
    size_t cap;
};

/* Appends one record (1..ENTRY_MAX_RECORD bytes). Returns 0, -EMSGSIZE or
 * -ENOMEM (the builder is unchanged). */
int entry_add(struct entry_builder *b, const void *rec, size_t len);

/* Makes b a valid entry even when it has no record. 0 or -ENOMEM. */
int entry_seal(struct entry_builder *b);

/* A journal_emit_fn / broker_snapshot_write emit: arg is a builder. */
int entry_emit(void *builder, const void *rec, size_t len);

/* Frees what b holds and zeroes it. */
void entry_reset(struct entry_builder *b);

/* Calls fn for each record of the entry, in order: 0 when every call
 * returned 0 and the entry was well formed; -EBADMSG for a malformed
 * entry (checked in full before the first call, so a bad entry calls fn
 * for nothing); or fn's first error (later records are not passed). */
typedef int entry_record_fn(void *arg, const void *rec, size_t len);
int entry_each(const void *buf, size_t len, entry_record_fn *fn, void *arg);

/* Records in a well-formed entry, or -EBADMSG. */
long entry_count(const void *buf, size_t len);

#endif
