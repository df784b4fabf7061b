/* Black-box harness: a real chanqd process on a free loopback port. */
#include "chanq_config.h"

#include "tests/harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ARGS 64
#if defined(CHANQ_ASAN) || defined(CHANQ_TSAN)
#define START_TIMEOUT_MS 30000 /* a sanitized chanqd replays several times slower */
#else
#define START_TIMEOUT_MS 10000
#endif
/* Sanitizer builds run several times slower: give every read more time. */
#if defined(CHANQ_ASAN) || defined(CHANQ_TSAN)
#define READ_TIMEOUT_MS 60000
#else
#define READ_TIMEOUT_MS 10000
#endif

struct harness {
    pid_t pid;                    /* the daemon, or 0 when not running */
    int port;                     /* bound port, from its log */
    char dir[256];                /* temp dir: data/ and chanqd.log */
    char log_path[300];           /* the daemon's stderr */
    const char *argv[MAX_ARGS];   /* command line, reused by restart */
    char listen_arg[64];          /* --listen value (port 0 first, then fixed) */
    char data_dir[300];           /* --data-dir value */
    bool log_format_added;        /* --log-format from CHANQ_TEST_LOG_FORMAT */
};

/* Test-only per-fd read buffers, so pipelined lines are never lost between
 * recv_line calls. */
#define MAX_FDS 65536
struct rbuf {
    char *data;
    size_t len, cap;
};
static struct rbuf rbufs[MAX_FDS];

int64_t
harness_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *
chanqd_path(void)
{
    static char path[4096];
    const char *top = getenv("top_builddir");
    snprintf(path, sizeof path, "%s/daemon/chanqd", top ? top : ".");
    return path;
}

char *
harness_log(const struct harness *h)
{
    FILE *f = fopen(h->log_path, "r");
    if (!f)
        return strdup("");
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, mem);
    fclose(mem);
    fclose(f);
    return buf;
}

/* CHANQ_TEST_LOG_FORMAT=FORMAT starts every chanqd with --log-format
 * FORMAT, unless the test gives its own --config or --log-format (the
 * reload suite changes the format through its file).
 * CHANQ_TEST_LOG_KEEP=DIR then appends each such chanqd's log (every run,
 * restarts included) to a file in DIR, for tests/json-logs.py to check. */
static bool
has_arg(const char *const *args, const char *name)
{
    for (size_t i = 0; args && args[i]; i++)
        if (strcmp(args[i], name) == 0)
            return true;
    return false;
}

static void
keep_log(const struct harness *h)
{
    const char *dir = getenv("CHANQ_TEST_LOG_KEEP");
    if (!h->log_format_added || !dir || !*dir)
        return;
    char path[600];
    snprintf(path, sizeof path, "%s/harness-%d-%s.log", dir, (int)getpid(),
             strrchr(h->dir, '/') + 1);
    char *log = harness_log(h);
    if (!*log) {
        free(log);
        return;
    }
    FILE *f = fopen(path, "a");
    if (!f || fputs(log, f) == EOF)
        fprintf(stderr, "harness: cannot keep the log in %s\n", path);
    if (f)
        fclose(f);
    free(log);
}

static int
find_port(const struct harness *h)
{
    char *log = harness_log(h);
    const char *p = strstr(log, "listening on 127.0.0.1:");
    int port = p ? atoi(p + strlen("listening on 127.0.0.1:")) : 0;
    free(log);
    return port;
}

static int
spawn(struct harness *h)
{
    keep_log(h); /* a restart starts the file again */
    int logfd = open(h->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (logfd < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(logfd);
        return -1;
    }
    if (pid == 0) {
        dup2(logfd, STDERR_FILENO);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, STDIN_FILENO);
        dup2(devnull, STDOUT_FILENO);
        execv(h->argv[0], (char *const *)h->argv);
        fprintf(stderr, "exec %s: %s\n", h->argv[0], strerror(errno));
        _exit(127);
    }
    close(logfd);
    h->pid = pid;
    int64_t until = harness_now_ms() + START_TIMEOUT_MS;
    while (harness_now_ms() < until) {
        int port = find_port(h);
        if (port > 0) {
            h->port = port;
            return 0;
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            h->pid = 0;
            break;
        }
        usleep(5000);
    }
    char *log = harness_log(h);
    fprintf(stderr, "harness: chanqd did not start; its log:\n%s\n", log);
    free(log);
    if (h->pid)
        harness_kill9(h);
    return -1;
}

struct harness *
harness_start(const char *const *extra_args)
{
    struct harness *h = calloc(1, sizeof *h);
    snprintf(h->dir, sizeof h->dir, "/tmp/chanq-test-XXXXXX");
    if (!mkdtemp(h->dir)) {
        free(h);
        return NULL;
    }
    snprintf(h->log_path, sizeof h->log_path, "%s/chanqd.log", h->dir);
    snprintf(h->data_dir, sizeof h->data_dir, "%s/data", h->dir);
    snprintf(h->listen_arg, sizeof h->listen_arg, "127.0.0.1:0");
    size_t n = 0;
    h->argv[n++] = strdup(chanqd_path());
    h->argv[n++] = "--listen";
    h->argv[n++] = h->listen_arg;
    h->argv[n++] = "--data-dir";
    h->argv[n++] = h->data_dir;
    const char *fmt = getenv("CHANQ_TEST_LOG_FORMAT");
    if (fmt && *fmt && !has_arg(extra_args, "--config") && !has_arg(extra_args, "--log-format")) {
        h->argv[n++] = "--log-format";
        h->argv[n++] = fmt;
        h->log_format_added = true;
    }
    for (size_t i = 0; extra_args && extra_args[i] && n < MAX_ARGS - 1; i++)
        h->argv[n++] = extra_args[i];
    h->argv[n] = NULL;
    if (spawn(h) < 0) {
        harness_stop(h);
        return NULL;
    }
    /* Restarts keep the port, so clients and logs stay comparable. */
    snprintf(h->listen_arg, sizeof h->listen_arg, "127.0.0.1:%d", h->port);
    return h;
}

void
harness_kill9(struct harness *h)
{
    if (h->pid <= 0)
        return;
    kill(h->pid, SIGKILL);
    waitpid(h->pid, NULL, 0);
    h->pid = 0;
}

static int
wait_exit(pid_t pid, int timeout_ms)
{
    int64_t until = harness_now_ms() + timeout_ms;
    while (harness_now_ms() < until) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (r < 0)
            return -1;
        usleep(2000);
    }
    return -2;
}

int
harness_restart(struct harness *h)
{
    if (h->pid > 0) {
        kill(h->pid, SIGTERM);
        if (wait_exit(h->pid, READ_TIMEOUT_MS) == -2)
            harness_kill9(h);
        h->pid = 0;
    }
    return spawn(h);
}

int
harness_stop(struct harness *h)
{
    int rc = 0;
    if (h->pid > 0) {
        kill(h->pid, SIGTERM);
        rc = wait_exit(h->pid, READ_TIMEOUT_MS);
        if (rc == -2) {
            harness_kill9(h);
            rc = -1;
        }
    }
    if (rc != 0) {
        char *log = harness_log(h);
        fprintf(stderr, "harness: chanqd exit status %d; its log:\n%s\n", rc, log);
        free(log);
    }
    keep_log(h);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", h->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "harness: could not remove %s\n", h->dir);
    free((char *)h->argv[0]);
    free(h);
    return rc;
}

int
harness_port(const struct harness *h)
{
    return h->port;
}

pid_t
harness_pid(const struct harness *h)
{
    return h->pid;
}

const char *
harness_dir(const struct harness *h)
{
    return h->dir;
}

int
harness_dial(const struct harness *h)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)h->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fd < MAX_FDS)
        rbufs[fd].len = 0;
    return fd;
}

void
harness_close(int fd)
{
    if (fd < 0)
        return;
    if (fd < MAX_FDS) {
        free(rbufs[fd].data);
        memset(&rbufs[fd], 0, sizeof rbufs[fd]);
    }
    close(fd);
}

int
send_line(int fd, const char *line)
{
    size_t len = strlen(line);
    char *buf = malloc(len + 1);
    memcpy(buf, line, len);
    buf[len] = '\n';
    size_t off = 0;
    while (off < len + 1) {
        ssize_t w = send(fd, buf + off, len + 1 - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            free(buf);
            return -1;
        }
        off += (size_t)w;
    }
    free(buf);
    return 0;
}

static char *
take_line(struct rbuf *b)
{
    char *nl = b->len ? memchr(b->data, '\n', b->len) : NULL;
    if (!nl)
        return NULL;
    size_t n = (size_t)(nl - b->data);
    char *line = malloc(n + 1);
    memcpy(line, b->data, n);
    line[n] = '\0';
    memmove(b->data, nl + 1, b->len - n - 1);
    b->len -= n + 1;
    return line;
}

char *
recv_line_timeout(int fd, int timeout_ms)
{
    if (fd < 0 || fd >= MAX_FDS)
        return NULL;
    struct rbuf *b = &rbufs[fd];
    int64_t until = harness_now_ms() + timeout_ms;
    for (;;) {
        char *line = take_line(b);
        if (line)
            return line;
        int left = (int)(until - harness_now_ms());
        if (left <= 0)
            return NULL;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, left) <= 0)
            return NULL;
        if (b->cap - b->len < 65536) {
            b->cap = b->cap ? b->cap * 2 : 131072;
            b->data = realloc(b->data, b->cap);
        }
        ssize_t r = recv(fd, b->data + b->len, b->cap - b->len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return NULL;
        b->len += (size_t)r;
    }
}

char *
recv_line(int fd)
{
    return recv_line_timeout(fd, READ_TIMEOUT_MS);
}

json_t *
recv_json(int fd)
{
    char *line = recv_line(fd);
    if (!line)
        return NULL;
    json_t *j = json_loads(line, 0, NULL);
    if (!j)
        fprintf(stderr, "harness: not JSON: %s\n", line);
    free(line);
    return j;
}

json_t *
request(int fd, const char *line)
{
    if (send_line(fd, line) < 0)
        return NULL;
    for (int i = 0; i < 1000; i++) {
        json_t *j = recv_json(fd);
        if (!j || !json_object_get(j, "event"))
            return j;
        json_decref(j);
    }
    return NULL;
}

bool
no_data_within(int fd, int timeout_ms)
{
    if (fd >= 0 && fd < MAX_FDS && rbufs[fd].len > 0)
        return false;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return poll(&pfd, 1, timeout_ms) == 0;
}

const char *
error_code(const json_t *resp)
{
    const char *code = json_string_value(json_object_get(json_object_get(resp, "error"), "code"));
    return code ? code : "";
}
