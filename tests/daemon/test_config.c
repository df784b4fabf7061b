/* daemon/config.c: defaults, flags, sizes, the config file with its
 * file:line errors, flags over the file, and the SIGHUP reload. */
#include "chanq_config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/config.h"
#include "tests/ops/unit_suites.h"

#define MIB (1024 * 1024)

/* Parses argv (NULL-terminated, without the program name) into *cfg. */
static int
parse(struct config *cfg, char *err, size_t errlen, const char *const *args)
{
    char *argv[64] = {"chanqd"};
    int argc = 1;
    for (; args && args[argc - 1]; argc++)
        argv[argc] = (char *)args[argc - 1];
    argv[argc] = NULL;
    ck_assert_msg(config_defaults(cfg) == 0, "config_defaults failed");
    err[0] = '\0';
    return config_parse_args(cfg, argc, argv, err, errlen);
}

/* Writes text to a new temp file; returns its malloc'd path. */
static char *
write_file(const char *text)
{
    char *path = strdup("/tmp/chanq-config-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_msg(fd >= 0, "mkstemp failed");
    ck_assert_msg(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "short write");
    close(fd);
    return path;
}

START_TEST(defaults_are_the_documented_values)
{
    struct config cfg;
    char err[512];
    ck_assert_msg(parse(&cfg, err, sizeof err, NULL) == 0, "empty command line refused: %s", err);
    ck_assert_msg(cfg.n_listen == 1 && strcmp(cfg.listen[0], "127.0.0.1:7420") == 0,
                  "default listen is not 127.0.0.1:7420");
    ck_assert_msg(cfg.unix_path == NULL && cfg.http == NULL && cfg.token_file == NULL,
                  "optional endpoints should be off by default");
    ck_assert_str_eq(cfg.data_dir, "./var");
    ck_assert_msg(!cfg.memory && !cfg.repair && !cfg.check_config, "flags should be off");
    ck_assert_msg(cfg.fsync == CONFIG_FSYNC_ALWAYS, "fsync default is not always");
    ck_assert_msg(cfg.threads == 0, "threads default is not 0");
    ck_assert_msg(cfg.max_frame == 1 * MIB, "max-frame default %zu", cfg.max_frame);
    ck_assert_msg(cfg.max_job == 512 * 1024, "max-job default %zu", cfg.max_job);
    ck_assert_msg(cfg.submit_wait_ms == 30000, "submit-wait default");
    ck_assert_msg(cfg.default_capacity == 1000, "default-capacity default");
    ck_assert_msg(cfg.log_level == LOG_INFO, "log-level default");
    ck_assert_msg(cfg.max_connections == 10000 && cfg.max_queues == 10000, "count limits");
    ck_assert_msg(cfg.max_memory == 1024ull * MIB, "max-memory default %zu", cfg.max_memory);
    ck_assert_msg(cfg.max_inflight == 64 && cfg.grace_ms == 5000, "inflight/grace defaults");
    config_free(&cfg);
}
END_TEST

START_TEST(every_flag_sets_its_field)
{
    struct config cfg;
    char err[512];
    const char *args[] = {"--listen", "127.0.0.1:1", "--listen=[::1]:2", "--unix", "/tmp/q.sock",
                          "--data-dir", "/tmp/d", "--fsync", "interval", "--threads", "3",
                          "--max-frame", "2M", "--max-job", "4K", "--submit-wait", "10",
                          "--default-capacity", "0", "--http", "127.0.0.1:9", "--log-level",
                          "debug", "--max-connections", "5", "--max-queues", "6",
                          "--max-memory", "8M", "--max-inflight", "7", "--grace-ms", "0",
                          "--repair", "--memory", NULL};
    ck_assert_msg(parse(&cfg, err, sizeof err, args) == 0, "refused: %s", err);
    ck_assert_msg(cfg.n_listen == 2 && strcmp(cfg.listen[1], "[::1]:2") == 0, "listen list");
    ck_assert_str_eq(cfg.unix_path, "/tmp/q.sock");
    ck_assert_str_eq(cfg.data_dir, "/tmp/d");
    ck_assert_str_eq(cfg.http, "127.0.0.1:9");
    ck_assert_msg(cfg.memory && cfg.repair, "bare flags not set");
    ck_assert_msg(cfg.fsync == CONFIG_FSYNC_INTERVAL && cfg.threads == 3, "fsync/threads");
    ck_assert_msg(cfg.max_frame == 2 * MIB && cfg.max_job == 4096, "sizes");
    ck_assert_msg(cfg.submit_wait_ms == 10 && cfg.default_capacity == 0, "wait/capacity");
    ck_assert_msg(cfg.log_level == LOG_DEBUG, "log level");
    ck_assert_msg(cfg.max_connections == 5 && cfg.max_queues == 6 && cfg.max_inflight == 7,
                  "limits");
    ck_assert_msg(cfg.max_memory == 8 * MIB && cfg.grace_ms == 0, "memory/grace");
    config_free(&cfg);
}
END_TEST

START_TEST(sizes_take_k_m_g_suffixes_and_refuse_junk)
{
    static const struct {
        const char *text;
        unsigned long long want;
    } good[] = {{"0", 0}, {"1", 1}, {"2K", 2048}, {"3m", 3 * MIB}, {"1G", 1ull << 30},
                {"4KiB", 4096}, {"5kb", 5120}};
    static const char *const bad[] = {"", "K", "1T", "1.5M", "-1", " 1", "1 K", "2KiBs",
                                      "99999999999999999999", "18014398509481984K"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t v = 77;
        ck_assert_msg(config_parse_size(good[i].text, &v) == 0 && v == good[i].want,
                      "'%s' parsed as %llu", good[i].text, (unsigned long long)v);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 77;
        ck_assert_msg(config_parse_size(bad[i], &v) < 0 && v == 77, "'%s' was accepted", bad[i]);
    }
}
END_TEST

START_TEST(bad_flags_are_refused_with_the_reason)
{
    static const struct {
        const char *args[4];
        const char *want;
    } cases[] = {
        {{"--max-frame", "abc"}, "--max-frame: 'abc' is not a size"},
        {{"--max-inflight", "0"}, "--max-inflight: 0 is out of range"},
        {{"--fsync", "sometimes"}, "--fsync: 'sometimes' is not always, interval or never"},
        {{"--log-level", "loud"}, "--log-level: 'loud' is not error"},
        {{"--listen", "localhost"}, "--listen: 'localhost' is not HOST:PORT"},
        {{"--listen", "127.0.0.1:99999"}, "is not HOST:PORT"},
        {{"--http", "[::1]7420"}, "--http: '[::1]7420' is not HOST:PORT"},
        {{"--bogus"}, "unknown option '--bogus' (see chanqd --help)"},
        {{"--listn", "127.0.0.1:1"}, "unknown option '--listn'; did you mean '--listen'?"},
        {{"--max-jobs=1K"}, "unknown option '--max-jobs'; did you mean '--max-job'?"},
        {{"--tls-clientca", "x"}, "did you mean '--tls-client-ca'?"},
        {{"--max-job"}, "option '--max-job' needs a value"},
        {{"stray"}, "unexpected argument 'stray'"},
        {{"--token-file", "/nonexistent/tokens"}, "--token-file: cannot read '/nonexistent"},
        {{"--config", "/nonexistent/chanqd.conf"}, "cannot read '/nonexistent/chanqd.conf'"},
        {{"--max-frame", "2K", "--max-job", "4K"}, "max-job (4096) must not exceed max-frame"},
        {{"--memory=maybe"}, "--memory: 'maybe' is not true or false"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config cfg;
        char err[512];
        ck_assert_msg(parse(&cfg, err, sizeof err, cases[i].args) < 0, "case %zu accepted", i);
        ck_assert_msg(strstr(err, cases[i].want), "case %zu: error '%s' lacks '%s'", i, err,
                      cases[i].want);
        config_free(&cfg);
    }
}
END_TEST

/* A lowered max-frame alone is legal: the unset max-job follows it. Only
 * two explicit values that conflict are an error. */
START_TEST(an_unset_max_job_follows_a_lowered_max_frame)
{
    static const struct {
        const char *args[5];
        size_t want_job;
    } cases[] = {
        {{"--max-frame", "4096"}, 2048},
        {{"--max-frame", "1K"}, 512},
        {{"--max-frame", "2M"}, 512 * 1024},
        {{"--max-frame", "4K", "--max-job", "4K"}, 4096},
        {{"--max-job", "100"}, 100},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config cfg;
        char err[512];
        ck_assert_msg(parse(&cfg, err, sizeof err, cases[i].args) == 0, "case %zu refused: %s", i,
                      err);
        ck_assert_msg(cfg.max_job == cases[i].want_job, "case %zu: max-job %zu, want %zu", i,
                      cfg.max_job, cases[i].want_job);
        config_free(&cfg);
    }
    /* Explicit in the file, lowered frame on the command line: a conflict. */
    char *path = write_file("max-job = 8K\n");
    struct config cfg;
    char err[512];
    const char *args[] = {"--config", path, "--max-frame", "4K", NULL};
    ck_assert_msg(parse(&cfg, err, sizeof err, args) < 0 && strstr(err, "must not exceed"),
                  "an explicit max-job over max-frame was accepted: %s", err);
    config_free(&cfg);
    unlink(path);
    free(path);
}
END_TEST

START_TEST(help_and_version_ask_to_exit_zero)
{
    struct config cfg;
    char err[512];
    const char *help[] = {"--max-frame", "junk", "--help", NULL};
    /* stdout is the test log: fine. */
    ck_assert_msg(parse(&cfg, err, sizeof err, help) == 1, "--help did not return 1");
    config_free(&cfg);
    const char *h[] = {"-h", NULL};
    ck_assert_msg(parse(&cfg, err, sizeof err, h) == 1, "-h did not return 1");
    config_free(&cfg);
    const char *version[] = {"--version", NULL};
    ck_assert_msg(parse(&cfg, err, sizeof err, version) == 1, "--version did not return 1");
    config_free(&cfg);
}
END_TEST

START_TEST(config_file_sets_keys_and_flags_override_it)
{
    char *path = write_file("# chanqd test config\n"
                            "\n"
                            "listen = 127.0.0.1:1111\n"
                            "   listen=127.0.0.1:2222   \n"
                            "max-inflight = 9\n"
                            "max-memory = 64M\r\n"
                            "  # indented comment\n"
                            "memory = yes\n"
                            "http =\n"
                            "log-level = warn\n");
    struct config cfg;
    char err[512];
    const char *args[] = {"--max-inflight", "3", "--config", path, NULL};
    ck_assert_msg(parse(&cfg, err, sizeof err, args) == 0, "refused: %s", err);
    ck_assert_msg(cfg.n_listen == 2 && strcmp(cfg.listen[1], "127.0.0.1:2222") == 0,
                  "file listen lines not both applied");
    ck_assert_msg(cfg.max_inflight == 3, "the flag did not override the file");
    ck_assert_msg(cfg.max_memory == 64 * MIB && cfg.memory && cfg.http == NULL, "file values");
    ck_assert_msg(cfg.log_level == LOG_WARN, "file log level");
    ck_assert_str_eq(cfg.config_file, path);
    config_free(&cfg);

    const char *args2[] = {"--config", path, "--listen", "127.0.0.1:3333", NULL};
    ck_assert_msg(parse(&cfg, err, sizeof err, args2) == 0, "refused: %s", err);
    ck_assert_msg(cfg.n_listen == 1 && strcmp(cfg.listen[0], "127.0.0.1:3333") == 0,
                  "--listen should replace the file's addresses");
    config_free(&cfg);
    unlink(path);
    free(path);
}
END_TEST

START_TEST(config_file_errors_name_the_file_and_line)
{
    static const struct {
        const char *text;
        int line;
        const char *want;
    } cases[] = {
        {"# ok\nmax-frame = 1M\nbogus = 1\n", 3, "unknown key 'bogus'"},
        {"max-inflght = 1\n", 1, "unknown key 'max-inflght'; did you mean 'max-inflight'?"},
        {"\n\n\n\nmax-job = lots\n", 5, "max-job: 'lots' is not a size"},
        {"listen 127.0.0.1:1\n", 1, "expected 'key = value'"},
        {"config = /etc/other.conf\n", 1, "'config' is only valid on the command line"},
        {"check-config = true\n", 1, "'check-config' is only valid on the command line"},
        {"fsync = always\nfsync = often\n", 2, "fsync: 'often'"},
        {"max-connections = 0\n", 1, "max-connections: 0 is out of range (1..10000000)"},
        {"memory = maybe\n", 1, "memory: 'maybe' is not true or false"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = write_file(cases[i].text);
        struct config cfg;
        char err[512], want[600];
        const char *args[] = {"--config", path, NULL};
        ck_assert_msg(parse(&cfg, err, sizeof err, args) < 0, "case %zu accepted", i);
        snprintf(want, sizeof want, "%s:%d: %s", path, cases[i].line, cases[i].want);
        ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "case %zu: got '%s', want '%s'", i,
                      err, want);
        config_free(&cfg);
        unlink(path);
        free(path);
    }
}
END_TEST

START_TEST(a_unix_socket_alone_needs_no_tcp_address)
{
    struct config cfg;
    char err[512];
    const char *args[] = {"--unix", "/tmp/x.sock", NULL};
    ck_assert_msg(parse(&cfg, err, sizeof err, args) == 0, "refused: %s", err);
    ck_assert_msg(cfg.n_listen == 0, "the default TCP address was added next to --unix");
    config_free(&cfg);
    char longpath[200];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    const char *args2[] = {"--unix", longpath, NULL};
    ck_assert_msg(parse(&cfg, err, sizeof err, args2) < 0 && strstr(err, "path longer"),
                  "an over-long unix path was accepted: %s", err);
    config_free(&cfg);
}
END_TEST

START_TEST(reload_applies_only_the_reloadable_keys)
{
    struct config live, fresh;
    char err[512];
    const char *a[] = {"--listen", "127.0.0.1:1", "--log-level", "error", NULL};
    const char *b[] = {"--listen", "127.0.0.1:2", "--log-level", "debug", "--max-connections",
                       "42", "--max-job", "1K", NULL};
    ck_assert_msg(parse(&live, err, sizeof err, a) == 0, "live: %s", err);
    ck_assert_msg(parse(&fresh, err, sizeof err, b) == 0, "fresh: %s", err);
    int n = config_reload(&live, &fresh, NULL);
    ck_assert_msg(n == 3, "%d keys changed, want 3 (log-level, max-connections, max-job)", n);
    ck_assert_msg(live.log_level == LOG_DEBUG && log_enabled(LOG_DEBUG),
                  "log level not applied");
    ck_assert_msg(config_get(&live, max_connections) == 42 && live.max_job == 1024,
                  "limits not applied");
    ck_assert_msg(strcmp(live.listen[0], "127.0.0.1:1") == 0, "listen changed without restart");
    ck_assert_msg(config_reload(&live, &fresh, NULL) == 0, "a second identical reload changed keys");
    log_set_level(LOG_INFO);
    config_free(&live);
    config_free(&fresh);
}
END_TEST

Suite *
config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, defaults_are_the_documented_values);
    tcase_add_test(tc, every_flag_sets_its_field);
    tcase_add_test(tc, sizes_take_k_m_g_suffixes_and_refuse_junk);
    tcase_add_test(tc, bad_flags_are_refused_with_the_reason);
    tcase_add_test(tc, an_unset_max_job_follows_a_lowered_max_frame);
    tcase_add_test(tc, help_and_version_ask_to_exit_zero);
    tcase_add_test(tc, config_file_sets_keys_and_flags_override_it);
    tcase_add_test(tc, config_file_errors_name_the_file_and_line);
    tcase_add_test(tc, a_unix_socket_alone_needs_no_tcp_address);
    tcase_add_test(tc, reload_applies_only_the_reloadable_keys);
    suite_add_tcase(s, tc);
    return s;
}
