/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of the
 * journal's records. Table-driven, slicing-by-8. */
#ifndef CHANQ_DAEMON_CRC32C_H
#define CHANQ_DAEMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends `crc` (0 to start) over len bytes of buf and returns the new value;
 * crc32c(crc32c(0, a, n), b, m) equals the checksum of a followed by b.
 * crc32c(0, "123456789", 9) == 0xE3069283. Any thread; the tables are built
 * once, on the first call (pthread_once). */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#endif
