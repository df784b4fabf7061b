/* A write-failure shim for the full-disk test (LD_PRELOAD): while the file
 * named by $CHANQ_FAILWRITE_FLAG exists, writev(2) on a regular file fails
 * with ENOSPC, as it does on a full disk (sockets, which libevent also
 * writes with writev, are left alone). Everything else passes through. */
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
