/* What the config files share; not for other modules (they use config.h).
 *
 *   config_table.c   the key table: every key's name, syntax, field,
 *                    default, limits, flags and help line; lookup, typo
 *                    suggestions and --help, all generated from it;
 *   config_value.c   one key's value: text to field (syntax and limits
 *                    checked), field to text, defaults and freeing;
 *   config.c         where values come from: the command line and the
 *                    config file, then the checks across keys;
 *   config_reload.c  SIGHUP: what changed, stored atomically, then each
 *                    change's apply step. */
#ifndef CHANQ_DAEMON_CONFIG_INTERNAL_H
#define CHANQ_DAEMON_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "daemon/config.h"

/* A key's value syntax, and with it the type of its field. */
enum key_kind {
    K_ADDR_LIST, /* HOST:PORT, repeatable; empty clears (char *[] with a count) */
    K_ADDR,      /* HOST:PORT or empty for none (char *) */
    K_UNIX,      /* Unix socket path or empty for none (char *) */
    K_DIR,       /* a directory path (char *) */
    K_FILE,      /* a readable file, or empty for none (char *) */
    K_BOOL,      /* true/false; a bare flag on the command line (bool) */
    K_FSYNC,     /* always|interval|never (enum config_fsync) */
    K_LEVEL,     /* error|warn|info|debug (enum log_level) */
    K_LOGFMT,    /* text|json (enum log_format) */
    K_UINT,      /* decimal count (uint64_t) */
    K_SIZE,      /* bytes with optional K/M/G (size_t) */
    K_MS,        /* milliseconds (int64_t) */
    K_ACTION,    /* --config, --help, --version: command line only */
    K_PEERS,     /* ID@HOST:PORT[/HOST:PORT],... or empty for none (char *) */
};

enum {
    KEY_RELOAD = 1, /* SIGHUP applies a new value without a restart */
    KEY_CLI = 2,    /* only on the command line, never in the file */
    KEY_REREAD = 4, /* its apply step runs on every reload, changed or not */
};

/* How a reloaded value reaches the code that uses it, once config_reload
 * stored it in the live config (the steps are in config_reload.c). */
enum key_apply {
    APPLY_NONE,      /* not reloadable */
    APPLY_READ_LIVE, /* its users read the live field at every use */
    APPLY_LOGGER,    /* the logger's own level and format */
    APPLY_BROKER,    /* the broker's copy (config_hooks.broker) */
    APPLY_TLS,       /* the TLS context (config_hooks.tls) */
    APPLY_COUNT,
};

struct config_key {
    const char *name;   /* long flag and config-file key */
    enum key_kind kind; /* value syntax and field type */
    size_t off;         /* the field in struct config (KEY_FIELD) */
    const char *def;    /* default as text; NULL for none */
    uint64_t min;       /* numeric bounds, inclusive */
    uint64_t max;
    unsigned flags;       /* KEY_* */
    const char *arg;      /* metavariable for --help */
    const char *help;     /* one line for --help */
    enum key_apply apply; /* for KEY_RELOAD: how the daemon takes a new value */
};

#define KEY_FIELD(field) offsetof(struct config, field)
#define KIB 1024ull
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)

/* config_table.c. The table holds at most CONFIG_MAX_KEYS keys, so that
 * per-key scratch arrays can live on the stack. */
#define CONFIG_MAX_KEYS 64
extern const struct config_key config_keys[];
extern const size_t config_n_keys;

/* The key named by the first len bytes of name, or NULL. */
const struct config_key *config_key_find(const char *name, size_t len);

/* The name of the key nearest to a mistyped one, or NULL when none is near
 * enough to be a typo. */
const char *config_key_closest(const char *name, size_t len);

/* Prints the usage text (--help), generated from the table. */
void config_usage(FILE *out);

/* config_value.c */

/* Formats the reason for a failure into err (truncated to errlen). */
void config_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets key k from text v. Returns 0, or -1 with the reason in err (no
 * location: the caller adds "--flag" or "file:line"); the field is then
 * unchanged. */
int config_value_set(struct config *cfg, const struct config_key *k, const char *v, char *err,
                     size_t errlen);

/* Empties an address-list key (listen, tls-listen). */
void config_value_clear_list(struct config *cfg, const struct config_key *k);

/* Writes key k's value in *cfg as text (as a config file would say it),
 * truncated to len. */
void config_value_format(const struct config *cfg, const struct config_key *k, char *buf,
                         size_t len);

/* Copies a reloadable key's value from src to dst with an atomic store
 * (readers on other threads use config_get). Loop thread. */
void config_value_store(struct config *dst, const struct config *src, const struct config_key *k);

#endif
