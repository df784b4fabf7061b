/* A disk-failure shim for the full-disk and failing-disk tests (LD_PRELOAD):
 * while the file named by $CHANQ_FAILWRITE_FLAG exists, writev(2) on a
 * regular file fails with ENOSPC, as it does on a full disk (sockets, which
 * libevent also writes with writev, are left alone); while the one named by
 * $CHANQ_FAILFSYNC_FLAG exists, fsync/fdatasync fail with EIO. Everything
 * else passes through. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static int
disk_full(void)
{
    const char *flag = getenv("CHANQ_FAILWRITE_FLAG");
    return flag && access(flag, F_OK) == 0;
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt);
ssize_t
writev(int fd, const struct iovec *iov, int iovcnt)
{
    static ssize_t (*real)(int, const struct iovec *, int);
    if (!real)
        real = (ssize_t(*)(int, const struct iovec *, int))dlsym(RTLD_NEXT, "writev");
    struct stat st;
    if (disk_full() && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        errno = ENOSPC;
        return -1;
    }
    return real(fd, iov, iovcnt);
}

/* While the file named by $CHANQ_FAILFSYNC_FLAG exists, fsync(2) and
 * fdatasync(2) of a regular file fail with EIO, as on a failing disk. */
static int
disk_failing(int fd)
{
    const char *flag = getenv("CHANQ_FAILFSYNC_FLAG");
    struct stat st;
    return flag && access(flag, F_OK) == 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

int fdatasync(int fd);
int
fdatasync(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (disk_failing(fd)) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}

int fsync(int fd);
int
fsync(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (disk_failing(fd)) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}
