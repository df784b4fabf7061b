/* Whom a leader heard from lately (see contact.h). A handful of members:
 * linear search over an array. */
#include "chanq_config.h"

#include "daemon/cluster/contact.h"

#include <stdlib.h>

struct heard {
    uint64_t id;
    uint64_t ms;
};

struct contact {
    uint64_t lead_ms; /* contact_lead's time: the floor of every member's */
    size_t n, max;
    struct heard heard[];
};

struct contact *
contact_new(size_t max_members)
{
    struct contact *c = calloc(1, sizeof *c + max_members * sizeof c->heard[0]);
    if (c)
        c->max = max_members;
    return c;
}

void
contact_free(struct contact *c)
{
    free(c);
}

void
contact_lead(struct contact *c, uint64_t now_ms)
{
    c->lead_ms = now_ms;
}

static struct heard *
find(const struct contact *c, uint64_t id)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->heard[i].id == id)
            return (struct heard *)&c->heard[i];
    return NULL;
}

void
contact_heard(struct contact *c, uint64_t id, uint64_t now_ms)
{
    struct heard *h = find(c, id);
    if (!h && c->n < c->max) {
        h = &c->heard[c->n++];
        h->id = id;
    }
    if (h && now_ms > h->ms)
        h->ms = now_ms;
}

static uint64_t
last_heard(const struct contact *c, uint64_t id)
{
    const struct heard *h = find(c, id);
    uint64_t ms = h ? h->ms : 0;
    return ms > c->lead_ms ? ms : c->lead_ms;
}

bool
contact_quorum(const struct contact *c, const uint64_t *voters, size_t nvoters,
               uint64_t self, uint64_t now_ms, uint64_t window_ms)
{
    size_t in_contact = 0;
    for (size_t i = 0; i < nvoters; i++)
        if (voters[i] == self || now_ms <= last_heard(c, voters[i]) + window_ms)
            in_contact++;
    return nvoters == 0 || 2 * in_contact > nvoters;
}
