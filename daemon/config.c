/* Where chanqd's settings come from (config.h): the command line and the
 * config file it names, applied key by key through the table
 * (config-internal.h), then the checks that span several keys. */
#include "chanq_config.h"

#include "daemon/config-internal.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *
config_trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* One line of a config file. Returns 0, or -1 with the reason in err. */
static int
load_line(struct config *cfg, char *line, char *err, size_t errlen)
{
    char *s = config_trim(line);
    if (*s == '\0' || *s == '#')
        return 0;
    char *eq = strchr(s, '=');
    if (!eq) {
        config_fail(err, errlen, "expected 'key = value', got '%s'", s);
        return -1;
    }
    *eq = '\0';
    char *name = config_trim(s);
    char *value = config_trim(eq + 1);
    const struct config_key *k = config_key_find(name, strlen(name));
    if (!k) {
        const char *near = config_key_closest(name, strlen(name));
        if (near)
            config_fail(err, errlen, "unknown key '%s'; did you mean '%s'?", name, near);
        else
            config_fail(err, errlen, "unknown key '%s'", name);
        return -1;
    }
    if (k->flags & KEY_CLI) {
        config_fail(err, errlen, "'%s' is only valid on the command line", name);
        return -1;
    }
    return config_value_set(cfg, k, value, err, errlen);
}

/* Applies "key = value" lines of the file at path onto *cfg. Returns 0, or
 * -1 with "path:line: reason" in err. */
static int
load_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        config_fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    char why[384];
    int rc = 0;
    for (unsigned lineno = 1; getline(&line, &cap, f) >= 0; lineno++) {
        if (load_line(cfg, line, why, sizeof why) < 0) {
            config_fail(err, errlen, "%s:%u: %s", path, lineno, why);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        config_fail(err, errlen, "%s: read error: %s", path, strerror(errno));
        rc = -1;
    }
    free(line);
    fclose(f);
    return rc;
}

/* Splits argv[*i] into its key and value (from "=value" or the next
 * argument, advancing *i). Returns the key, or NULL with the reason in err. */
static const struct config_key *
arg_next(int argc, char *const *argv, int *i, const char **value, char *err, size_t errlen)
{
    const char *a = argv[*i];
    if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
        config_fail(err, errlen, "unexpected argument '%s'", a);
        return NULL;
    }
    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const struct config_key *k = config_key_find(name, len);
    if (!k) {
        const char *near = config_key_closest(name, len);
        if (near)
            config_fail(err, errlen, "unknown option '--%.*s'; did you mean '--%s'?", (int)len,
                        name, near);
        else
            config_fail(err, errlen, "unknown option '--%.*s' (see chanqd --help)", (int)len, name);
        return NULL;
    }
    if (eq) {
        *value = eq + 1;
    } else if (k->kind == K_BOOL) {
        *value = "true";
    } else if (*i + 1 < argc) {
        *value = argv[++*i];
    } else {
        config_fail(err, errlen, "option '--%s' needs a value (%s)", k->name, k->arg);
        return NULL;
    }
    return k;
}

static bool
is_word(const char *a, const char *word)
{
    return strncmp(a, "--", 2) == 0 && strcmp(a + 2, word) == 0;
}

/* Cluster mode: node-id and peers go together, name this node, and need a
 * data dir (the Raft log is the journal) and a chanqd built with them. A
 * joining node needs its node-id and raft-listen; peers may leave it out
 * (the leader's configuration names it once it is added). */
static int
cluster_finish(const struct config *cfg, char *err, size_t errlen)
{
    if (cfg->node_id == 0 && !cfg->peers && !cfg->raft_listen && !cfg->join)
        return 0;
#ifndef CHANQ_CLUSTER
    config_fail(err, errlen,
                "node-id, raft-listen, peers, join: this chanqd was built without cluster "
                "support (configure --without-cluster)");
    return -1;
#else
    struct config_peer peers[CONFIG_MAX_PEERS];
    size_t n;
    if (cfg->join && (cfg->node_id == 0 || !cfg->raft_listen)) {
        config_fail(err, errlen, "join needs node-id and raft-listen");
        return -1;
    }
    if (!cfg->join && (cfg->node_id == 0 || !cfg->peers)) {
        config_fail(err, errlen, "cluster mode needs both node-id and peers");
        return -1;
    }
    if (cfg->memory) {
        config_fail(err, errlen,
                    "cluster mode keeps its log in data-dir: it cannot run with memory");
        return -1;
    }
    if (cfg->join && !cfg->peers)
        return 0;
    if (config_parse_peers(cfg->peers, peers, CONFIG_MAX_PEERS, &n, err, errlen) < 0)
        return -1;
    if (cfg->join)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (peers[i].id == cfg->node_id)
            return 0;
    config_fail(err, errlen, "node-id %" PRIu64 " is not among peers", cfg->node_id);
    return -1;
#endif
}

/* Cross-key checks and the listen default, once every source is applied. */
static int
check_across_keys(struct config *cfg, char *err, size_t errlen)
{
    /* An unset max-job follows a lowered max-frame, leaving half of the
     * line to the rest of the request (1M frames: the 512K default). */
    if (!cfg->max_job_set && cfg->max_job > cfg->max_frame / 2)
        cfg->max_job = cfg->max_frame / 2;
    if (cfg->max_job > cfg->max_frame) {
        config_fail(err, errlen, "max-job (%zu) must not exceed max-frame (%zu)", cfg->max_job,
                    cfg->max_frame);
        return -1;
    }
    if (cfg->n_tls_listen > 0 && (!cfg->tls_cert || !cfg->tls_key)) {
        config_fail(err, errlen, "tls-listen needs tls-cert and tls-key");
        return -1;
    }
    if (cluster_finish(cfg, err, errlen) < 0)
        return -1;
    /* The plain default only when nothing at all is configured: a TLS-only
     * setup gets no cleartext port it did not ask for. */
    if (cfg->n_listen == 0 && !cfg->unix_path && cfg->n_tls_listen == 0) {
        const struct config_key *k = config_key_find("listen", strlen("listen"));
        return config_value_set(cfg, k, k->def, err, errlen);
    }
    return 0;
}

int
config_parse_args(struct config *cfg, int argc, char *const *argv, char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        if (is_word(argv[i], "help") || strcmp(argv[i], "-h") == 0) {
            config_usage(stdout);
            return 1;
        }
        if (is_word(argv[i], "version")) {
            printf("chanqd %s\n", PACKAGE_VERSION);
            return 1;
        }
    }
    /* Pass 1: only --config, so that the file is applied before the flags. */
    for (int i = 1; i < argc; i++) {
        const char *v;
        const struct config_key *k = arg_next(argc, argv, &i, &v, err, errlen);
        if (!k)
            return -1;
        if (k->off == KEY_FIELD(config_file) && k->kind == K_ACTION &&
            config_value_set(cfg, k, v, err, errlen) < 0)
            return -1;
    }
    if (cfg->config_file && load_file(cfg, cfg->config_file, err, errlen) < 0)
        return -1;
    /* Pass 2: every flag, overriding the file. --listen (--tls-listen) on
     * the command line replaces the file's list rather than adding to it. */
    bool list_from_flags[CONFIG_MAX_KEYS] = {false};
    for (int i = 1; i < argc; i++) {
        const char *v;
        const struct config_key *k = arg_next(argc, argv, &i, &v, err, errlen);
        if (!k)
            return -1; /* cannot happen: pass 1 read the same argv */
        if (k->kind == K_ACTION)
            continue;
        if (k->kind == K_ADDR_LIST && !list_from_flags[k - config_keys]) {
            config_value_clear_list(cfg, k);
            list_from_flags[k - config_keys] = true;
        }
        char why[384];
        if (config_value_set(cfg, k, v, why, sizeof why) < 0) {
            config_fail(err, errlen, "--%s", why);
            return -1;
        }
    }
    return check_across_keys(cfg, err, errlen);
}
