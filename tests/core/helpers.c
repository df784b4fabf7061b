/* Helpers for the core suites (see helpers.h). */
#include "chanq_config.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/sched.h"
#include "tests/core/helpers.h"

void
run_main(go_fn *body, void *arg, int nthreads)
{
    int rc = sched_run_main(body, arg, nthreads);
    ck_assert_msg(rc == 0, "sched_run_main failed: %d", rc);
}

void
death_run(void (*fn)(void), struct death *d)
{
    int fds[2];
    memset(d, 0, sizeof *d);
    ck_assert_msg(pipe(fds) == 0, "pipe failed");
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork failed");
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        close(fds[1]);
        signal(SIGABRT, SIG_DFL);
        fn();
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while ((r = read(fds[0], d->err + n, sizeof d->err - 1 - n)) > 0)
        n += (size_t)r;
    d->err[n] = '\0';
    close(fds[0]);
    int st;
    ck_assert_msg(waitpid(pid, &st, 0) == pid, "waitpid failed");
    if (WIFSIGNALED(st))
        d->signal = WTERMSIG(st);
    else
        d->status = WEXITSTATUS(st);
}
