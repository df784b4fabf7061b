/* chanq work: a command's process, its pipes and its exit. */
#include "chanq_config.h"

#include "clients/cli/child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#define STDOUT_LIMIT (1024 * 1024)
#define STDERR_TAIL 2048
#define DRAIN_AFTER_EXIT_MS 200

extern char **environ;

struct child {
    pid_t pid;            /* also the process group id */
    int pidfd;            /* readable once the child exits; -1 after reaping */
    int in_fd;            /* stdin pipe, -1 once the payload is written */
    int out_fd, err_fd;   /* stdout / stderr pipes, -1 at EOF */
    char *input;          /* payload copy */
    size_t input_len, input_off;
    char *out;            /* stdout so far, NUL-terminated */
    size_t out_len, out_cap;
    char err[STDERR_TAIL + 1]; /* stderr tail, NUL-terminated */
    size_t err_len;
    bool exited;          /* reaped */
    int status;           /* wait status once exited */
    struct timespec exit_time; /* to stop waiting for pipes held by orphans */
};

static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* envp = environ + extra. */
static char **
build_env(char *const extra[])
{
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (extra && extra[m])
        m++;
    char **env = calloc(n + m + 1, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool overridden = false;
        for (size_t j = 0; j < m && !overridden; j++) {
            size_t eq = (size_t)(strchr(extra[j], '=') - extra[j]);
            overridden = strncmp(environ[i], extra[j], eq + 1) == 0;
        }
        if (!overridden)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++)
        env[k++] = extra[j];
    return env;
}

/* 0 when path is a regular file we may execute, else an errno (exec says
 * EACCES for a directory; EISDIR tells the user more). */
static int
executable(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return errno;
    if (S_ISDIR(st.st_mode))
        return EISDIR;
    if (!S_ISREG(st.st_mode) || faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) < 0)
        return EACCES;
    return 0;
}

/* The kernel runs a "#!" script's interpreter; a missing one fails the exec
 * with ENOENT, which would only show once a job is fetched. */
static int
check_interpreter(const char *path, char *msg, size_t len)
{
    char line[256];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0; /* execute-only files exist; let exec decide */
    ssize_t n = read(fd, line, sizeof line - 1);
    close(fd);
    if (n < 2 || line[0] != '#' || line[1] != '!')
        return 0;
    line[n] = '\0';
    char *interp = line + 2 + strspn(line + 2, " \t");
    interp[strcspn(interp, " \t\r\n")] = '\0';
    int e = *interp ? executable(interp) : ENOEXEC;
    if (e)
        snprintf(msg, len, "interpreter '%s': %s", interp, strerror(e));
    return e;
}

/* 0 when path can be started, else an errno and why in msg. */
static int
check_file(const char *path, char *msg, size_t len)
{
    int e = executable(path);
    if (e) {
        snprintf(msg, len, "%s", strerror(e));
        return e;
    }
    return check_interpreter(path, msg, len);
}

int
child_check_command(const char *file, char *msg, size_t len)
{
    if (!*file) {
        snprintf(msg, len, "empty command name");
        return -1;
    }
    if (strchr(file, '/'))
        return check_file(file, msg, len) ? -1 : 0;
    /* execvp()'s search: PATH (glibc's default when unset), an empty entry
     * is the current directory; a candidate that exists but cannot run is
     * reported only if no later one can. */
    const char *path = getenv("PATH");
    if (!path)
        path = "/bin:/usr/bin";
    bool seen = false;
    for (const char *dir = path;; dir += strcspn(dir, ":") + 1) {
        int dlen = (int)strcspn(dir, ":");
        char cand[4096], why[512];
        snprintf(cand, sizeof cand, "%.*s/%s", dlen ? dlen : 1, dlen ? dir : ".", file);
        int e = check_file(cand, why, sizeof why);
        if (e == 0)
            return 0;
        if (e != ENOENT && e != ENOTDIR && !seen) {
            snprintf(msg, len, "%s: %s", cand, why);
            seen = true;
        }
        if (!dir[dlen])
            break;
    }
    if (!seen)
        snprintf(msg, len, "'%s' not found in PATH", file);
    return -1;
}

struct child *
child_spawn(char *const argv[], char *const env[], const char *input, size_t len)
{
    int in[2], out[2], err[2];
    struct child *ch = calloc(1, sizeof *ch);
    if (!ch)
        return NULL;
    ch->pidfd = ch->in_fd = ch->out_fd = ch->err_fd = -1;
    if (pipe2(in, O_CLOEXEC) < 0)
        goto out_free;
    if (pipe2(out, O_CLOEXEC) < 0)
        goto out_close_in;
    if (pipe2(err, O_CLOEXEC) < 0)
        goto out_close_out;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO);
    posix_spawnattr_init(&attr);
    /* Its own process group, so SIGTERM reaches a shell's children too; the
     * worker blocks SIGTERM/SIGINT, the command must not inherit that. */
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGPIPE);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &dfl);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                         POSIX_SPAWN_SETSIGDEF);
    char **envp = build_env(env);
    int rc = envp ? posix_spawnp(&ch->pid, argv[0], &fa, &attr, argv, envp) : ENOMEM;
    free(envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (rc != 0) {
        close(in[1]);
        close(out[0]);
        close(err[0]);
        errno = rc;
        goto out_free;
    }
    ch->in_fd = in[1];
    ch->out_fd = out[0];
    ch->err_fd = err[0];
    fcntl(ch->in_fd, F_SETFL, O_NONBLOCK);
    fcntl(ch->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(ch->err_fd, F_SETFL, O_NONBLOCK);
    ch->pidfd = (int)syscall(SYS_pidfd_open, ch->pid, 0);
    ch->input = malloc(len + 1);
    if (ch->input)
        memcpy(ch->input, input, len);
    ch->input_len = ch->input ? len : 0;
    ch->out = malloc(4096);
    ch->out_cap = ch->out ? 4096 : 0;
    if (ch->out)
        ch->out[0] = '\0';
    return ch;
out_close_out:
    close(out[0]);
    close(out[1]);
out_close_in:
    close(in[0]);
    close(in[1]);
out_free:
    free(ch);
    return NULL;
}

int
child_pollfds(const struct child *ch, struct pollfd *p)
{
    int n = 0;
    if (ch->in_fd >= 0)
        p[n++] = (struct pollfd){.fd = ch->in_fd, .events = POLLOUT};
    if (ch->out_fd >= 0)
        p[n++] = (struct pollfd){.fd = ch->out_fd, .events = POLLIN};
    if (ch->err_fd >= 0)
        p[n++] = (struct pollfd){.fd = ch->err_fd, .events = POLLIN};
    if (!ch->exited && ch->pidfd >= 0)
        p[n++] = (struct pollfd){.fd = ch->pidfd, .events = POLLIN};
    return n;
}

static void
close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void
write_input(struct child *ch)
{
    while (ch->input_off < ch->input_len) {
        ssize_t w = write(ch->in_fd, ch->input + ch->input_off, ch->input_len - ch->input_off);
        if (w > 0) {
            ch->input_off += (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        break; /* EPIPE: the command does not read its stdin */
    }
    close_fd(&ch->in_fd);
}

static void
read_stdout(struct child *ch)
{
    char buf[8192];
    ssize_t r;
    while ((r = read(ch->out_fd, buf, sizeof buf)) > 0) {
        size_t keep = (size_t)r;
        if (ch->out_len + keep > STDOUT_LIMIT)
            keep = STDOUT_LIMIT - ch->out_len;
        if (ch->out_len + keep + 1 > ch->out_cap) {
            size_t cap = ch->out_cap * 2;
            while (cap < ch->out_len + keep + 1)
                cap *= 2;
            char *p = realloc(ch->out, cap);
            if (!p)
                continue;
            ch->out = p;
            ch->out_cap = cap;
        }
        memcpy(ch->out + ch->out_len, buf, keep);
        ch->out_len += keep;
        ch->out[ch->out_len] = '\0';
    }
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
        close_fd(&ch->out_fd);
}

static void
read_stderr(struct child *ch)
{
    char buf[4096];
    ssize_t r;
    while ((r = read(ch->err_fd, buf, sizeof buf)) > 0) {
        size_t n = (size_t)r;
        if (n >= STDERR_TAIL) {
            memcpy(ch->err, buf + n - STDERR_TAIL, STDERR_TAIL);
            ch->err_len = STDERR_TAIL;
        } else {
            if (ch->err_len + n > STDERR_TAIL) {
                size_t drop = ch->err_len + n - STDERR_TAIL;
                memmove(ch->err, ch->err + drop, ch->err_len - drop);
                ch->err_len -= drop;
            }
            memcpy(ch->err + ch->err_len, buf, n);
            ch->err_len += n;
        }
        ch->err[ch->err_len] = '\0';
    }
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
        close_fd(&ch->err_fd);
}

static void
reap(struct child *ch, int flags)
{
    if (ch->exited)
        return;
    int status;
    pid_t r = waitpid(ch->pid, &status, flags);
    if (r == ch->pid) {
        ch->exited = true;
        ch->status = status;
        clock_gettime(CLOCK_MONOTONIC, &ch->exit_time);
        close_fd(&ch->pidfd);
    }
}

void
child_pump(struct child *ch, const struct pollfd *p, int n)
{
    for (int i = 0; i < n; i++) {
        if (!p[i].revents)
            continue;
        if (p[i].fd == ch->in_fd)
            write_input(ch);
        else if (p[i].fd == ch->out_fd)
            read_stdout(ch);
        else if (p[i].fd == ch->err_fd)
            read_stderr(ch);
    }
    /* Without a pidfd (old kernels) this polls; the caller's poll timeout
     * bounds how late an exit is seen. */
    reap(ch, WNOHANG);
    if (ch->in_fd >= 0 && ch->exited)
        close_fd(&ch->in_fd);
}

bool
child_done(const struct child *ch)
{
    if (!ch->exited)
        return false;
    if (ch->out_fd < 0 && ch->err_fd < 0)
        return true;
    int64_t exited_ms = (int64_t)ch->exit_time.tv_sec * 1000 + ch->exit_time.tv_nsec / 1000000;
    return mono_ms() - exited_ms > DRAIN_AFTER_EXIT_MS;
}

void
child_signal(struct child *ch, int sig)
{
    if (!ch->exited)
        kill(-ch->pid, sig);
}

int
child_status(const struct child *ch)
{
    return ch->status;
}

const char *
child_stdout(const struct child *ch, size_t *len)
{
    *len = ch->out_len;
    return ch->out ? ch->out : "";
}

const char *
child_stderr_tail(const struct child *ch)
{
    return ch->err;
}

void
child_free(struct child *ch)
{
    if (!ch)
        return;
    if (!ch->exited) {
        kill(-ch->pid, SIGKILL);
        reap(ch, 0);
    }
    close_fd(&ch->in_fd);
    close_fd(&ch->out_fd);
    close_fd(&ch->err_fd);
    close_fd(&ch->pidfd);
    free(ch->input);
    free(ch->out);
    free(ch);
}
