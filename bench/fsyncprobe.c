/* fsyncprobe: what a durable write costs on this machine's disk, the
 * floor under chanqd's --fsync always (docs/performance.md, "Where a
 * durable cycle's time goes").
 *
 * Each of T threads (1, 2, 4, 8) writes RECORD bytes at the end of a shared,
 * preallocated file and calls fdatasync, for SECONDS each; printed per
 * thread count: operations/s, mean latency, and CPU time per operation
 * (user + system of the whole process, so a VM's virtio work shows).
 *
 * usage: bench/fsyncprobe [DIR] [SECONDS] [RECORD]   (defaults: ., 2, 600) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define FILE_BYTES (256ll << 20)
#define MAX_THREADS 8

struct probe {
    int fd;
    size_t record;
    double seconds;
    atomic_llong off;   /* next write offset */
    atomic_llong ops;   /* operations done */
    atomic_llong lat_ns; /* their summed latency */
    atomic_int failed;
};

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double
cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void *
writer(void *arg)
{
    struct probe *p = arg;
    char *buf = malloc(p->record);
    if (!buf) {
        atomic_store(&p->failed, ENOMEM);
        return NULL;
    }
    memset(buf, 'x', p->record);
    double end = now_s() + p->seconds;
    while (now_s() < end && !atomic_load(&p->failed)) {
        /* Wraps around to stay inside the allocated blocks. */
        long long off = atomic_fetch_add(&p->off, (long long)p->record) %
                        (FILE_BYTES - (long long)p->record);
        double t = now_s();
        if (pwrite(p->fd, buf, p->record, off) != (ssize_t)p->record || fdatasync(p->fd) != 0) {
            atomic_store(&p->failed, errno ? errno : EIO);
            break;
        }
        atomic_fetch_add(&p->lat_ns, (long long)((now_s() - t) * 1e9));
        atomic_fetch_add(&p->ops, 1);
    }
    free(buf);
    return NULL;
}

static int
run(struct probe *p, int threads)
{
    pthread_t tid[MAX_THREADS];
    atomic_store(&p->ops, 0);
    atomic_store(&p->lat_ns, 0);
    double t0 = now_s(), c0 = cpu_s();
    int started = 0;
    for (; started < threads; started++)
        if (pthread_create(&tid[started], NULL, writer, p) != 0)
            break;
    for (int i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    double wall = now_s() - t0, cpu = cpu_s() - c0;
    long long ops = atomic_load(&p->ops);
    if (started < threads || atomic_load(&p->failed) || ops == 0) {
        fprintf(stderr, "fsyncprobe: %d threads failed: %s\n", threads,
                strerror(atomic_load(&p->failed) ? atomic_load(&p->failed) : EAGAIN));
        return -1;
    }
    printf("threads %d: %8.0f ops/s, mean latency %6.0f us, cpu %5.1f us per op\n", threads,
           (double)ops / wall, (double)atomic_load(&p->lat_ns) / (double)ops / 1e3,
           cpu / (double)ops * 1e6);
    return 0;
}

int
main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    struct probe p = {.seconds = argc > 2 ? atof(argv[2]) : 2.0,
                      .record = argc > 3 ? (size_t)atol(argv[3]) : 600};
    if (p.seconds <= 0 || p.record == 0 || p.record > (1u << 20)) {
        fprintf(stderr, "usage: fsyncprobe [DIR] [SECONDS > 0] [RECORD 1..1048576]\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/fsyncprobe.%ld.tmp", dir, (long)getpid());
    p.fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (p.fd < 0) {
        fprintf(stderr, "fsyncprobe: %s: %s\n", path, strerror(errno));
        return 1;
    }
    /* Preallocated and synced, like a chanqd segment under --fsync always. */
    int rc = posix_fallocate(p.fd, 0, FILE_BYTES);
    if (rc == 0 && fsync(p.fd) != 0)
        rc = errno;
    if (rc != 0) {
        fprintf(stderr, "fsyncprobe: preallocating %s: %s\n", path, strerror(rc));
        unlink(path);
        return 1;
    }
    printf("fsyncprobe: %zu-byte pwrite + fdatasync into %s, %.1f s per row\n", p.record, dir,
           p.seconds);
    int status = 0;
    for (int t = 1; t <= MAX_THREADS && status == 0; t *= 2)
        status = run(&p, t);
    close(p.fd);
    unlink(path);
    return status == 0 ? 0 : 1;
}
