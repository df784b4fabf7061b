/* One command run by `chanq work` for one job: spawned in its own process
 * group with the payload on stdin, stdout kept (the result), the tail of
 * stderr kept (the error), its exit seen through a pidfd. */
#ifndef CHANQ_CLI_CHILD_H
#define CHANQ_CLI_CHILD_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct child;

/* Checks, without running it, that `file` can be started: found as
 * execvp()/posix_spawnp() search PATH (a name with a '/' is taken as is), a
 * regular file we may execute, and for a "#!" script, its interpreter too.
 * Returns 0, or -1 with why in msg ("'foo' not found in PATH",
 * "Permission denied", "/usr/bin/foo: Permission denied" for a PATH
 * match, ...). Cannot foresee every exec failure
 * (ETXTBSY, ENOEXEC, a race with rm): child_spawn may still fail. */
int child_check_command(const char *file, char *msg, size_t len);

/* Starts argv[0] (searched in PATH) with `env` added to the environment
 * ("NAME=value" strings, NULL-terminated), `input` (len bytes, copied) on
 * stdin. Returns a new child (free it with child_free), or NULL with errno. */
struct child *child_spawn(char *const argv[], char *const env[], const char *input, size_t len);

/* Fills up to 4 pollfds for what the child is waiting on; returns how many. */
int child_pollfds(const struct child *ch, struct pollfd *p);

/* Moves data for the pollfds filled by child_pollfds (after poll returned)
 * and reaps the child when it exited. Never blocks. */
void child_pump(struct child *ch, const struct pollfd *p, int n);

/* True once the child exited and its output pipes are drained (or it exited
 * and they stay open: background processes are not waited for). */
bool child_done(const struct child *ch);

/* Sends sig to the child's process group (no-op once done). */
void child_signal(struct child *ch, int sig);

/* wait(2) status; valid once child_done. */
int child_status(const struct child *ch);

/* Everything the command wrote to stdout (up to a limit), NUL-terminated.
 * Borrowed, valid until child_free. */
const char *child_stdout(const struct child *ch, size_t *len);

/* The last bytes it wrote to stderr, NUL-terminated. Borrowed. */
const char *child_stderr_tail(const struct child *ch);

/* Kills the process group if still running, reaps it, closes every fd and
 * frees ch. NULL is ignored. */
void child_free(struct child *ch);

#endif
