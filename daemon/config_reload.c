/* SIGHUP (config.h): compares a freshly parsed config with the live one,
 * stores what may change without a restart, warns about the rest, then
 * runs each changed key's apply step once. */
#include "chanq_config.h"

#include "daemon/config-internal.h"

#include <string.h>

/* The apply steps. Each runs on the loop thread after every changed value
 * is stored, once per reload however many of its keys changed: the broker
 * takes four keys at a time, and a new certificate is only usable together
 * with its new key. */
typedef void apply_fn(const struct config *live, const struct config_hooks *hooks);

/* The users of the key read the live field with config_get() at every use
 * (the decoder per request, accept per connection, the stop per SIGTERM),
 * so the atomic store is the whole step. */
static void
apply_read_live(const struct config *live, const struct config_hooks *hooks)
{
}

/* The logger keeps its own level and format. */
static void
apply_logger(const struct config *live, const struct config_hooks *hooks)
{
    log_set_level(live->log_level);
    log_set_format(live->log_format);
}

/* The broker keeps its settings under its own lock. */
static void
apply_broker(const struct config *live, const struct config_hooks *hooks)
{
    if (hooks && hooks->broker)
        hooks->broker(hooks->arg, live);
}

static void
apply_tls(const struct config *live, const struct config_hooks *hooks)
{
    if (hooks && hooks->tls)
        hooks->tls(hooks->arg, live);
}

static apply_fn *const apply_steps[APPLY_COUNT] = {
    [APPLY_READ_LIVE] = apply_read_live,
    [APPLY_LOGGER] = apply_logger,
    [APPLY_BROKER] = apply_broker,
    [APPLY_TLS] = apply_tls,
};

/* Adds step to the steps to run, unless it is there already. */
static void
add_step(enum key_apply *steps, size_t *n, enum key_apply step)
{
    if (step == APPLY_NONE)
        return; /* a key without a step: the reload test fails on it */
    for (size_t i = 0; i < *n; i++)
        if (steps[i] == step)
            return;
    steps[(*n)++] = step;
}

int
config_reload(struct config *live, const struct config *fresh, const struct config_hooks *hooks)
{
    int changed = 0;
    enum key_apply steps[APPLY_COUNT];
    size_t nsteps = 0;
    for (size_t i = 0; i < config_n_keys; i++) {
        const struct config_key *k = &config_keys[i];
        char was[512], now[512];
        config_value_format(live, k, was, sizeof was);
        config_value_format(fresh, k, now, sizeof now);
        bool same = strcmp(was, now) == 0;
        if (k->flags & KEY_REREAD)
            add_step(steps, &nsteps, k->apply);
        if (same || (k->flags & KEY_CLI))
            continue;
        if (k->flags & KEY_RELOAD) {
            /* Logged first: a quieter log level would hide its own change. */
            log_info("reload: %s %s -> %s", k->name, was, now);
            config_value_store(live, fresh, k);
            add_step(steps, &nsteps, k->apply);
            changed++;
        } else {
            log_warn("reload: %s changed (%s -> %s) but needs a restart; keeping %s", k->name, was,
                     now, was);
        }
    }
    for (size_t i = 0; i < nsteps; i++)
        apply_steps[steps[i]](live, hooks);
    if (changed == 0)
        log_info("reload: nothing that can change without a restart changed");
    return changed;
}
