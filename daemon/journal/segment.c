/* Segment files: header, record framing and a reader that tells a torn tail
 * from corruption in the middle (via resync). */
#include "chanq_config.h"

#include "daemon/journal/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/journal/crc32c.h"

static inline void
put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void
put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t
get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t
get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void
segment_header(uint8_t out[SEGMENT_HEADER_SIZE], unsigned flags)
{
    memcpy(out, SEGMENT_MAGIC, 8);
    put_le16(out + 8, SEGMENT_VERSION);
    put_le16(out + 10, (uint16_t)flags);
    put_le32(out + 12, crc32c(0, out, 12));
}

int
segment_header_check(const uint8_t in[SEGMENT_HEADER_SIZE], unsigned *flags)
{
    if (memcmp(in, SEGMENT_MAGIC, 8) != 0 || get_le32(in + 12) != crc32c(0, in, 12) ||
        get_le16(in + 8) != SEGMENT_VERSION)
        return -EBADMSG;
    *flags = get_le16(in + 10);
    return 0;
}

size_t
segment_frame(void *dst, const void *rec, size_t len)
{
    uint8_t *p = dst;
    put_le32(p, (uint32_t)len);
    put_le32(p + 4, crc32c(0, rec, len));
    memcpy(p + SEGMENT_FRAME_SIZE, rec, len);
    return SEGMENT_FRAME_SIZE + len;
}

int
segment_path(char *buf, size_t size, const char *dir, uint64_t seq)
{
    int n = snprintf(buf, size, "%s/%016llx.log", dir, (unsigned long long)seq);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

bool
segment_name_parse(const char *name, uint64_t *seq)
{
    uint64_t v = 0;
    if (strlen(name) != SEGMENT_NAME_LEN || strcmp(name + 16, ".log") != 0)
        return false;
    for (int i = 0; i < 16; i++) {
        char c = name[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *seq = v;
    return true;
}

/* The end of the file's last data region (SEEK_DATA/SEEK_HOLE): past it the
 * file holds only space allocated and never written (a preallocated
 * segment), which would take ~35 ms per MiB to read back as zeros. ext4 and
 * XFS report unwritten extents as holes and look at dirty pages too. Where
 * the calls are not supported, the whole size. */
static size_t
written_limit(int fd, size_t size)
{
    off_t pos = 0, end = 0;
    for (;;) {
        off_t data = lseek(fd, pos, SEEK_DATA);
        if (data < 0)
            return errno == ENXIO ? (size_t)end : size;
        off_t hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0)
            return size;
        end = hole;
        if ((size_t)hole >= size)
            return size;
        pos = hole;
    }
}

int
segment_reader_open(struct segment_reader *r, const char *path, char *err, size_t errlen)
{
    struct stat st;
    memset(r, 0, sizeof(*r));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    if (fstat(fd, &st) != 0) {
        int e = errno;
        snprintf(err, errlen, "cannot stat %s: %s", path, strerror(e));
        close(fd);
        return -e;
    }
    r->size = (size_t)st.st_size;
    if (r->size > 0) {
        void *m = mmap(NULL, r->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            snprintf(err, errlen, "cannot map %s: %s", path, strerror(e));
            close(fd);
            return -e;
        }
        r->map = m;
        madvise(m, r->size, MADV_SEQUENTIAL);
    }
    r->data_limit = written_limit(fd, r->size);
    close(fd);
    if (r->size >= SEGMENT_HEADER_SIZE && segment_header_check(r->map, &r->flags) == 0) {
        r->header_ok = true;
        r->offset = SEGMENT_HEADER_SIZE;
    }
    return 0;
}

void
segment_reader_close(struct segment_reader *r)
{
    if (r->map)
        munmap((void *)r->map, r->size);
    memset(r, 0, sizeof(*r));
}

/* Checks the frame at off without moving the reader. */
static enum segment_status
frame_at(const struct segment_reader *r, size_t off, size_t *len)
{
    if (off == r->size)
        return SEGMENT_END;
    if (r->size - off < SEGMENT_FRAME_SIZE)
        return SEGMENT_SHORT;
    const uint8_t *p = r->map + off;
    uint32_t n = get_le32(p);
    /* A zero length is refused so that a zero-filled tail (a file extended
     * but never written before a crash) cannot pass for valid records. */
    if (n == 0 || n > SEGMENT_MAX_RECORD)
        return SEGMENT_BAD_LENGTH;
    if (r->size - off - SEGMENT_FRAME_SIZE < n)
        return SEGMENT_SHORT;
    if (crc32c(0, p + SEGMENT_FRAME_SIZE, n) != get_le32(p + 4))
        return SEGMENT_BAD_CRC;
    *len = n;
    return SEGMENT_RECORD;
}

/* Just past the file's last non-zero byte at or after `from` (`from` when
 * only zeros follow): where preallocated space, which reads as zeros,
 * begins. Steps back a word at a time through the zeros. */
static size_t
data_end(const struct segment_reader *r, size_t from)
{
    size_t end = r->data_limit < r->size ? r->data_limit : r->size;
    if (end < from)
        return from;
    while (end > from && ((uintptr_t)(r->map + end) & 7) && r->map[end - 1] == 0)
        end--;
    while (end >= from + 8 && !((uintptr_t)(r->map + end) & 7) &&
           *(const uint64_t *)(const void *)(r->map + end - 8) == 0)
        end -= 8;
    while (end > from && r->map[end - 1] == 0)
        end--;
    return end;
}

enum segment_status
segment_reader_next(struct segment_reader *r, const void **rec, size_t *len)
{
    if (!r->header_ok && r->offset < SEGMENT_HEADER_SIZE)
        return r->size == 0 ? SEGMENT_END : SEGMENT_BAD_HEADER;
    size_t n = 0;
    enum segment_status st = frame_at(r, r->offset, &n);
    if (st == SEGMENT_RECORD) {
        *rec = r->map + r->offset + SEGMENT_FRAME_SIZE;
        *len = n;
        r->offset += SEGMENT_FRAME_SIZE + n;
    } else if (st != SEGMENT_END && data_end(r, r->offset) == r->offset) {
        /* Space preallocated for records that never came (a zero length
         * is never a record): the log ends here. */
        r->zero_tail = true;
        st = SEGMENT_END;
    }
    return st;
}

/* Moves r->offset to the first offset at or after `from` where a valid
 * record begins. A record starts at or before the file's last non-zero byte
 * (its length is not zero): the scan need not crawl through preallocated
 * zeros. */
static bool
scan_for_record(struct segment_reader *r, size_t from)
{
    size_t n;
    size_t last = data_end(r, from);
    for (size_t off = from; off < last && off + SEGMENT_FRAME_SIZE <= r->size; off++) {
        if (frame_at(r, off, &n) == SEGMENT_RECORD) {
            r->offset = off;
            return true;
        }
    }
    return false;
}

bool
segment_reader_resync(struct segment_reader *r)
{
    size_t n;
    /* A damaged header says nothing about the records behind it. */
    if (!r->header_ok && r->offset < SEGMENT_HEADER_SIZE)
        return scan_for_record(r, SEGMENT_HEADER_SIZE);
    /* Only a record whose checksum matches counts: a random 8-byte window
     * passes with odds of 2^-32. The common case, a flipped payload byte,
     * finds the next record right after the bad frame's claimed end. */
    if (r->size - r->offset >= SEGMENT_FRAME_SIZE) {
        uint32_t claimed = get_le32(r->map + r->offset);
        size_t next = r->offset + SEGMENT_FRAME_SIZE + claimed;
        if (claimed > 0 && claimed <= r->size - r->offset - SEGMENT_FRAME_SIZE &&
            frame_at(r, next, &n) == SEGMENT_RECORD) {
            r->offset = next;
            return true;
        }
    }
    return scan_for_record(r, r->offset + 1);
}

const char *
segment_status_name(enum segment_status st)
{
    switch (st) {
    case SEGMENT_RECORD: return "record";
    case SEGMENT_END: return "end";
    case SEGMENT_SHORT: return "short record";
    case SEGMENT_BAD_LENGTH: return "bad length";
    case SEGMENT_BAD_CRC: return "bad checksum";
    case SEGMENT_BAD_HEADER: return "bad segment header";
    }
    return "unknown";
}
