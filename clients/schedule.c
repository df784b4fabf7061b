/* libchanq: the schedule op (see chanq.h, docs/scheduling.md). */
#include "chanq_config.h"

#include "clients/chanq.h"
#include "clients/client-internal.h"

#include <errno.h>

/* Sends req (taken), stores the answer's member key (new reference) in
 * *out when out is not NULL. */
static int
schedule_call(struct chanq_conn *c, json_t *req, const char *key, json_t **out)
{
    json_t *resp = NULL;
    if (out)
        *out = NULL;
    if (!req)
        return chanqi_conn_fail_io(c, ENOMEM);
    int rc = chanq_request(c, req, &resp);
    json_decref(req);
    if (rc == 0 && out) {
        json_t *v = json_object_get(resp, key);
        *out = v ? json_incref(v) : json_null();
    }
    json_decref(resp);
    return rc;
}

int
chanq_schedule_add(struct chanq_conn *c, const char *name, const struct chanq_schedule_spec *spec,
                   json_t **out)
{
    json_error_t jerr;
    json_t *payload = json_loads(spec->payload ? spec->payload : "", JSON_DECODE_ANY, &jerr);
    if (!payload)
        return chanqi_conn_fail(c, "bad_request", "payload template: not JSON: %s", jerr.text);
    json_t *req = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:s}", "op", "schedule", "action",
                            spec->replace ? "replace" : "create", "name", name, "cron",
                            spec->cron ? spec->cron : "", "queue", spec->queue ? spec->queue : "",
                            "payload", payload, "missed", spec->missed_once ? "once" : "skip");
    if (req && spec->tz)
        json_object_set_new(req, "tz", json_string(spec->tz));
    if (req && spec->ttr_ms > 0)
        json_object_set_new(req, "ttr_ms", json_integer(spec->ttr_ms));
    if (req && spec->max_attempts > 0)
        json_object_set_new(req, "max_attempts", json_integer(spec->max_attempts));
    return schedule_call(c, req, "schedule", out);
}

static int
schedule_action(struct chanq_conn *c, const char *action, const char *name)
{
    return schedule_call(
        c, json_pack("{s:s, s:s, s:s}", "op", "schedule", "action", action, "name", name), NULL,
        NULL);
}

int
chanq_schedule_pause(struct chanq_conn *c, const char *name)
{
    return schedule_action(c, "pause", name);
}

int
chanq_schedule_resume(struct chanq_conn *c, const char *name)
{
    return schedule_action(c, "resume", name);
}

int
chanq_schedule_delete(struct chanq_conn *c, const char *name)
{
    return schedule_action(c, "delete", name);
}

int
chanq_schedule_list(struct chanq_conn *c, json_t **out)
{
    return schedule_call(c, json_pack("{s:s, s:s}", "op", "schedule", "action", "list"),
                         "schedules", out);
}
