/* One key's value (config-internal.h): text to field with its syntax and
 * limits checked, field to text, the atomic store of a reload, and the
 * defaults. Knows nothing of where the text comes from. */
#include "chanq_config.h"

#include "daemon/config-internal.h"
#include "daemon/listen.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

static const char *const fsync_names[] = {"always", "interval", "never"};

const char *
config_fsync_name(enum config_fsync f)
{
    return fsync_names[f];
}

static void *
field(const struct config *cfg, const struct config_key *k)
{
    return (char *)cfg + k->off;
}

void
config_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int
parse_u64(const char *s, uint64_t *out, const char **end)
{
    if (!isdigit((unsigned char)*s))
        return -1;
    uint64_t v = 0;
    for (; isdigit((unsigned char)*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    *end = s;
    return 0;
}

int
config_parse_size(const char *s, uint64_t *out)
{
    uint64_t v, mult = 1;
    const char *p;
    if (parse_u64(s, &v, &p) < 0)
        return -1;
    switch (tolower((unsigned char)*p)) {
    case 'k':
        mult = KIB;
        break;
    case 'm':
        mult = MIB;
        break;
    case 'g':
        mult = GIB;
        break;
    case '\0':
        break;
    default:
        return -1;
    }
    if (mult != 1) {
        p++;
        if (tolower((unsigned char)*p) == 'i')
            p++;
        if (tolower((unsigned char)*p) == 'b')
            p++;
    }
    if (*p != '\0' || v > UINT64_MAX / mult)
        return -1;
    *out = v * mult;
    return 0;
}

static int
parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static int
check_addr(const char *v)
{
    char host[256], port[32];
    if (listener_split_addr(v, host, sizeof host, port, sizeof port) < 0)
        return -1;
    char *end;
    errno = 0;
    long p = strtol(port, &end, 10);
    return (*end || errno || p < 0 || p > 65535) ? -1 : 0;
}

/* One "ID@HOST:PORT[/HOST:PORT]" of a peers list (len bytes at s). */
static int
parse_peer(const char *s, size_t len, struct config_peer *p, char *err, size_t errlen)
{
    char item[160];
    if (len >= sizeof item) {
        config_fail(err, errlen, "peers: '%.*s' is too long", (int)len, s);
        return -1;
    }
    memcpy(item, s, len);
    item[len] = '\0';
    const char *end;
    uint64_t id;
    char *at = strchr(item, '@');
    if (!at || parse_u64(item, &id, &end) < 0 || end != at || id == 0 || id > UINT32_MAX) {
        config_fail(err, errlen, "peers: '%s' is not ID@IPV4:PORT (ID 1..%u)", item, UINT32_MAX);
        return -1;
    }
    char *client = strchr(at + 1, '/');
    if (client)
        *client++ = '\0';
    /* libraft's transport speaks IPv4 "a.b.c.d:port" only. */
    unsigned a, b, c, d, port;
    char extra;
    if (strlen(at + 1) >= sizeof p->raft ||
        sscanf(at + 1, "%u.%u.%u.%u:%u%c", &a, &b, &c, &d, &port, &extra) != 5 || a > 255 ||
        b > 255 || c > 255 || d > 255 || port == 0 || port > 65535) {
        config_fail(err, errlen, "peers: '%s' is not an IPv4 address and port", at + 1);
        return -1;
    }
    if (client && (strlen(client) >= sizeof p->client || check_addr(client) < 0)) {
        config_fail(err, errlen, "peers: client address '%s' is not HOST:PORT", client);
        return -1;
    }
    p->id = id;
    snprintf(p->raft, sizeof p->raft, "%s", at + 1);
    snprintf(p->client, sizeof p->client, "%s", client ? client : "");
    return 0;
}

int
config_parse_peers(const char *s, struct config_peer *out, size_t max, size_t *n, char *err,
                   size_t errlen)
{
    *n = 0;
    for (const char *p = s;; p++) {
        size_t len = strcspn(p, ",");
        if (*n == max) {
            config_fail(err, errlen, "peers: at most %zu nodes", max);
            return -1;
        }
        if (parse_peer(p, len, &out[*n], err, errlen) < 0)
            return -1;
        for (size_t i = 0; i < *n; i++) {
            if (out[i].id == out[*n].id || strcmp(out[i].raft, out[*n].raft) == 0) {
                config_fail(err, errlen, "peers: node %" PRIu64 " or address %s is listed twice",
                            out[*n].id, out[*n].raft);
                return -1;
            }
        }
        (*n)++;
        p += len;
        if (*p == '\0')
            return 0;
    }
}

/* The array and the count behind an address-list key (listen, tls-listen). */
static char **
addr_list(const struct config *cfg, const struct config_key *k, size_t **n)
{
    size_t count_off =
        k->off == KEY_FIELD(tls_listen) ? KEY_FIELD(n_tls_listen) : KEY_FIELD(n_listen);
    *n = (size_t *)((char *)cfg + count_off);
    return field(cfg, k);
}

void
config_value_clear_list(struct config *cfg, const struct config_key *k)
{
    size_t *n;
    char **list = addr_list(cfg, k, &n);
    for (size_t i = 0; i < *n; i++) {
        free(list[i]);
        list[i] = NULL;
    }
    *n = 0;
}

/* Appends v to an address-list key; an empty v clears the list. */
static int
list_add(struct config *cfg, const struct config_key *k, const char *v, char *err, size_t errlen)
{
    size_t *n;
    char **list = addr_list(cfg, k, &n);
    if (*v == '\0') {
        config_value_clear_list(cfg, k);
        return 0;
    }
    if (check_addr(v) < 0) {
        config_fail(err, errlen, "%s: '%s' is not HOST:PORT or [IPV6]:PORT", k->name, v);
        return -1;
    }
    if (*n == CONFIG_MAX_LISTEN) {
        config_fail(err, errlen, "%s: at most %d addresses", k->name, CONFIG_MAX_LISTEN);
        return -1;
    }
    if (!(list[*n] = strdup(v))) {
        config_fail(err, errlen, "%s: out of memory", k->name);
        return -1;
    }
    (*n)++;
    return 0;
}

/* Replaces the string at *slot with a copy of v (NULL when v is empty and
 * empty means "none"). */
static int
set_string(char **slot, const char *v, bool empty_is_none)
{
    char *copy = NULL;
    if (!(empty_is_none && *v == '\0') && !(copy = strdup(v)))
        return -1;
    free(*slot);
    *slot = copy;
    return 0;
}

static int
set_number(struct config *cfg, const struct config_key *k, const char *v, char *err, size_t errlen)
{
    uint64_t n;
    const char *end;
    int bad = k->kind == K_SIZE ? config_parse_size(v, &n) : parse_u64(v, &n, &end) || *end;
    if (bad) {
        config_fail(err, errlen, "%s: '%s' is not %s", k->name, v,
                    k->kind == K_SIZE ? "a size (bytes, or a number with a K, M or G suffix)"
                    : k->kind == K_MS ? "a number of milliseconds"
                                      : "a non-negative whole number");
        return -1;
    }
    if (n < k->min || n > k->max) {
        config_fail(err, errlen, "%s: %" PRIu64 " is out of range (%" PRIu64 "..%" PRIu64 ")",
                    k->name, n, k->min, k->max);
        return -1;
    }
    if (k->kind == K_SIZE)
        *(size_t *)field(cfg, k) = (size_t)n;
    else if (k->kind == K_MS)
        *(int64_t *)field(cfg, k) = (int64_t)n;
    else
        *(uint64_t *)field(cfg, k) = n;
    return 0;
}

int
config_value_set(struct config *cfg, const struct config_key *k, const char *v, char *err,
                 size_t errlen)
{
    int rc = 0;
    switch (k->kind) {
    case K_ADDR_LIST:
        return list_add(cfg, k, v, err, errlen);
    case K_ADDR:
        if (*v && check_addr(v) < 0)
            goto bad_addr;
        rc = set_string(field(cfg, k), v, true);
        break;
    case K_UNIX:
        if (strlen(v) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            config_fail(err, errlen, "%s: path longer than %zu bytes", k->name,
                        sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
            return -1;
        }
        rc = set_string(field(cfg, k), v, true);
        break;
    case K_DIR:
        if (!*v) {
            config_fail(err, errlen, "%s: empty path", k->name);
            return -1;
        }
        rc = set_string(field(cfg, k), v, false);
        if (rc == 0 && k->off == KEY_FIELD(data_dir))
            cfg->memory = false; /* --data-dir after --memory means the dir */
        break;
    case K_PEERS: {
        struct config_peer tmp[CONFIG_MAX_PEERS];
        size_t n;
        if (*v && config_parse_peers(v, tmp, CONFIG_MAX_PEERS, &n, err, errlen) < 0)
            return -1;
        rc = set_string(field(cfg, k), v, true);
        break;
    }
    case K_FILE:
    case K_ACTION:
        if (*v && access(v, R_OK) != 0) {
            config_fail(err, errlen, "%s: cannot read '%s': %s", k->name, v, strerror(errno));
            return -1;
        }
        rc = set_string(field(cfg, k), v, true);
        break;
    case K_BOOL:
        if (parse_bool(v, field(cfg, k)) < 0) {
            config_fail(err, errlen, "%s: '%s' is not true or false", k->name, v);
            return -1;
        }
        return 0;
    case K_FSYNC:
        for (size_t i = 0; i < 3; i++) {
            if (strcmp(v, fsync_names[i]) == 0) {
                *(enum config_fsync *)field(cfg, k) = (enum config_fsync)i;
                return 0;
            }
        }
        config_fail(err, errlen, "%s: '%s' is not always, interval or never", k->name, v);
        return -1;
    case K_LEVEL:
        if (log_level_parse(v, field(cfg, k)) < 0) {
            config_fail(err, errlen, "%s: '%s' is not error, warn, info or debug", k->name, v);
            return -1;
        }
        return 0;
    case K_LOGFMT:
        if (log_format_parse(v, field(cfg, k)) < 0) {
            config_fail(err, errlen, "%s: '%s' is not text or json", k->name, v);
            return -1;
        }
        return 0;
    case K_UINT:
    case K_SIZE:
    case K_MS:
        if (set_number(cfg, k, v, err, errlen) < 0)
            return -1;
        if (k->off == KEY_FIELD(max_job))
            cfg->max_job_set = true;
        return 0;
    }
    if (rc < 0)
        goto oom;
    return 0;

bad_addr:
    config_fail(err, errlen, "%s: '%s' is not HOST:PORT or [IPV6]:PORT", k->name, v);
    return -1;
oom:
    config_fail(err, errlen, "%s: out of memory", k->name);
    return -1;
}

void
config_value_format(const struct config *cfg, const struct config_key *k, char *buf, size_t len)
{
    void *p = field(cfg, k);
    const char *s;
    size_t *n;
    char **list;
    switch (k->kind) {
    case K_ADDR_LIST:
        buf[0] = '\0';
        list = addr_list(cfg, k, &n);
        for (size_t i = 0, off = 0; i < *n && off < len; i++)
            off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? " " : "", list[i]);
        return;
    case K_ADDR:
    case K_UNIX:
    case K_DIR:
    case K_FILE:
    case K_ACTION:
    case K_PEERS:
        s = *(char **)p;
        snprintf(buf, len, "%s", s ? s : "");
        return;
    case K_BOOL:
        snprintf(buf, len, "%s", *(bool *)p ? "true" : "false");
        return;
    case K_FSYNC:
        snprintf(buf, len, "%s", fsync_names[*(enum config_fsync *)p]);
        return;
    case K_LEVEL:
        snprintf(buf, len, "%s", log_level_name(*(enum log_level *)p));
        return;
    case K_LOGFMT:
        snprintf(buf, len, "%s", log_format_name(*(enum log_format *)p));
        return;
    case K_UINT:
        snprintf(buf, len, "%" PRIu64, *(uint64_t *)p);
        return;
    case K_SIZE:
        snprintf(buf, len, "%zu", *(size_t *)p);
        return;
    case K_MS:
        snprintf(buf, len, "%" PRId64, *(int64_t *)p);
        return;
    }
}

/* Only reloadable keys come here: scalars, and file paths that only the
 * loop thread reads. */
void
config_value_store(struct config *dst, const struct config *src, const struct config_key *k)
{
    void *d = field(dst, k), *s = field(src, k);
    switch (k->kind) {
    case K_LEVEL:
        __atomic_store_n((enum log_level *)d, *(enum log_level *)s, __ATOMIC_RELAXED);
        break;
    case K_LOGFMT:
        __atomic_store_n((enum log_format *)d, *(enum log_format *)s, __ATOMIC_RELAXED);
        break;
    case K_UINT:
        __atomic_store_n((uint64_t *)d, *(uint64_t *)s, __ATOMIC_RELAXED);
        break;
    case K_SIZE:
        __atomic_store_n((size_t *)d, *(size_t *)s, __ATOMIC_RELAXED);
        break;
    case K_MS:
        __atomic_store_n((int64_t *)d, *(int64_t *)s, __ATOMIC_RELAXED);
        break;
    case K_FILE:
        /* Paths only the loop thread reads (tls-*): a plain swap. */
        if (set_string(d, *(char **)s ? *(char **)s : "", true) < 0)
            log_error("reload: %s: out of memory, keeping the old path", k->name);
        break;
    default:
        break;
    }
}

void
config_free(struct config *cfg)
{
    for (size_t i = 0; i < config_n_keys; i++) {
        enum key_kind kd = config_keys[i].kind;
        if (kd == K_ADDR_LIST)
            config_value_clear_list(cfg, &config_keys[i]);
        if (kd == K_ADDR || kd == K_UNIX || kd == K_DIR || kd == K_FILE || kd == K_ACTION ||
            kd == K_PEERS) {
            char **slot = field(cfg, &config_keys[i]);
            free(*slot);
            *slot = NULL;
        }
    }
}

int
config_defaults(struct config *cfg)
{
    char err[256];
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < config_n_keys; i++) {
        /* The listen default applies only when nothing else is configured
         * (check_across_keys in config.c). */
        if (config_keys[i].def && config_keys[i].kind != K_ADDR_LIST &&
            config_value_set(cfg, &config_keys[i], config_keys[i].def, err, sizeof err) < 0) {
            config_free(cfg);
            return -ENOMEM;
        }
    }
    cfg->max_job_set = false; /* the default is not a choice (config.c) */
    return 0;
}
