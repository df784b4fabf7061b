/* One journal segment file, NNNNNNNNNNNNNNNN.log (16 hex digits of sequence):
 * a 16-byte header, then records framed as u32 length | u32 crc32c(payload) |
 * payload, little-endian. This module knows the byte layout and reads a file
 * back; opening, writing and syncing files is journal.c's business. */
#ifndef CHANQ_DAEMON_SEGMENT_H
#define CHANQ_DAEMON_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEGMENT_MAGIC "chanqseg"    /* 8 bytes, no NUL on disk */
#define SEGMENT_VERSION 1           /* u16 after the magic */
#define SEGMENT_HEADER_SIZE 16      /* magic, u16 version, u16 flags, u32 crc32c of bytes 0..11 */
#define SEGMENT_FRAME_SIZE 8        /* u32 length + u32 crc32c before each payload */
#define SEGMENT_MAX_RECORD (64u << 20) /* longest payload accepted (bytes) */
#define SEGMENT_NAME_LEN 20         /* "%016llx.log" */

/* Header flags. */
enum {
    /* The segment is the output of a compaction: it holds every live record
     * of all segments up to and including its sequence number, which are
     * therefore obsolete (replay deletes leftovers with a lower sequence). */
    SEGMENT_COMPACTED = 1u << 0,
};

/* Writes the header for `flags` into out. */
void segment_header(uint8_t out[SEGMENT_HEADER_SIZE], unsigned flags);

/* Checks a header: 0 with *flags set, or -EBADMSG (bad magic, crc or
 * version). */
int segment_header_check(const uint8_t in[SEGMENT_HEADER_SIZE], unsigned *flags);

/* Writes the frame of a record of len bytes (1..SEGMENT_MAX_RECORD) into dst,
 * which has room for SEGMENT_FRAME_SIZE + len bytes: length, checksum, then a
 * copy of rec. Returns the bytes written. */
size_t segment_frame(void *dst, const void *rec, size_t len);

/* "DIR/NNNNNNNNNNNNNNNN.log" into buf; returns 0, or -ENAMETOOLONG. */
int segment_path(char *buf, size_t size, const char *dir, uint64_t seq);

/* True when name is exactly 16 lowercase hex digits + ".log"; sets *seq. */
bool segment_name_parse(const char *name, uint64_t *seq);

/* What segment_reader_next found. */
enum segment_status {
    SEGMENT_RECORD,    /* a valid record: *rec / *len are set */
    SEGMENT_END,       /* clean end of file (or zeros running to it) */
    SEGMENT_SHORT,     /* fewer bytes than a frame header, or than its length says */
    SEGMENT_BAD_LENGTH, /* length 0 or above SEGMENT_MAX_RECORD */
    SEGMENT_BAD_CRC,   /* the payload does not match its checksum */
    SEGMENT_BAD_HEADER, /* the file header is short or does not check */
};

/* A read-only view of one segment file (mmap'd). A plain struct so callers
 * can keep it on the stack; treat the fields as read-only. */
struct segment_reader {
    const uint8_t *map;  /* the file's bytes (NULL when empty) */
    size_t size;         /* file size in bytes */
    size_t data_limit;   /* no byte at or past it was ever written (space
                          * allocated but unwritten reads as zeros): scans
                          * for the records' end start here, not at size */
    size_t offset;       /* the next record to read, or the bad one just reported */
    unsigned flags;      /* header flags (SEGMENT_COMPACTED) */
    bool header_ok;      /* false: the file is shorter than or has a bad header
                          * (flags then unknown: 0) */
    bool zero_tail;      /* SEGMENT_END came at zeros that run to the end of the
                          * file (space preallocated for records), not at EOF */
};

/* Maps the file at path. Returns 0 (a short or bad header is not an error
 * here: header_ok tells, and offset is 0), or a negative errno with a
 * message in err. Not thread-safe per reader; any thread. */
int segment_reader_open(struct segment_reader *r, const char *path, char *err, size_t errlen);

/* Unmaps. Borrowed record pointers become invalid. Safe on a zeroed or
 * closed reader. */
void segment_reader_close(struct segment_reader *r);

/* Reads the record at r->offset. On SEGMENT_RECORD sets *rec (borrowed, valid
 * until close) and *len, and advances. On any other status r->offset stays at
 * the bad frame (or the end) so the caller can report or cut there. */
enum segment_status segment_reader_next(struct segment_reader *r, const void **rec, size_t *len);

/* After a bad frame at r->offset (or a bad header): moves r->offset to the
 * next offset (after the bad frame's start; for a bad header, from where
 * the first record would be) where a valid record begins, and returns true;
 * or returns false (offset unchanged) when nothing valid follows, i.e. the
 * bad frame is a torn tail. */
bool segment_reader_resync(struct segment_reader *r);

/* A short name for a status, for messages: "short record", "bad length",
 * "bad checksum", "bad segment header". */
const char *segment_status_name(enum segment_status st);

#endif
