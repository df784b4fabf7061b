/* chanq cluster: a cluster's members as each of them sees itself, and its
 * membership changes (docs/cluster.md). */
#include "chanq_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/cli/cli.h"

static const char cluster_usage[] =
    "Usage: chanq cluster [status] [--json]\n"
    "       chanq cluster add ID RAFT_IP:PORT/CLIENT_HOST:PORT\n"
    "       chanq cluster remove ID\n"
    "       chanq cluster transfer [ID]\n"
    "status (the default) asks the server for the members, then asks each\n"
    "member for its own view: role, term, applied log index and state digest\n"
    "(equal digests: the same state). add makes a node started with --join a\n"
    "voter once it has caught up; remove takes one out; transfer hands the\n"
    "leadership to ID (or to any up-to-date voter). The changes go to the\n"
    "leader (--server may name any member: a follower names the leader).\n"
    "\nOptions:\n"
    "  --json             status as JSON: {\"members\":[{...,\"view\":{...}}]}\n";

enum { OPT_JSON = OPT_FIRST_OWN };

/* `cluster` asked of server, or NULL when it cannot be reached or refuses
 * (a node that is down shows as unreachable). */
static json_t *
view_of(const struct cli *g, const char *server)
{
    struct chanq_connect_opts o;
    cli_connect_opts(g, &o);
    struct chanq_error err;
    struct chanq_conn *c = chanq_connect(server, &o, &err);
    if (!c)
        return NULL;
    json_t *resp = NULL;
    json_t *req = json_pack("{s:s}", "op", "cluster");
    json_t *view = NULL;
    if (req && chanq_request(c, req, &resp) == 0)
        view = json_incref(json_object_get(resp, "cluster"));
    json_decref(req);
    json_decref(resp);
    chanq_conn_free(c);
    return view;
}

static void
print_table(const json_t *members)
{
    printf("%-4s %-11s %-21s %-21s %6s %10s  %s\n", "ID", "ROLE", "RAFT", "CLIENT", "TERM",
           "APPLIED", "DIGEST");
    size_t i;
    const json_t *m;
    json_array_foreach (members, i, m) {
        const json_t *v = json_object_get(m, "view");
        const char *client = json_string_value(json_object_get(m, "client"));
        const char *digest = json_string_value(json_object_get(v, "state_digest"));
        printf("%-4lld %-11s %-21s %-21s ", (long long)json_integer_value(json_object_get(m, "id")),
               v ? json_string_value(json_object_get(v, "role")) : "unreachable",
               json_string_value(json_object_get(m, "raft")), client ? client : "-");
        if (v)
            printf("%6lld %10lld  %.16s\n", (long long)json_integer_value(json_object_get(v, "term")),
                   (long long)json_integer_value(json_object_get(v, "applied_index")),
                   digest ? digest : "-");
        else
            printf("%6s %10s  %s\n", "-", "-", "-");
    }
}

static int
cluster_status(struct cli *g, bool as_json)
{
    json_t *mine = view_of(g, g->server);
    if (!mine) {
        /* Again through the common path, for its error message and code. */
        return cli_run_request(g, json_pack("{s:s}", "op", "cluster"));
    }
    json_t *members = json_deep_copy(json_object_get(mine, "members"));
    size_t i;
    json_t *m;
    json_array_foreach (members, i, m) {
        const char *client = json_string_value(json_object_get(m, "client"));
        json_t *v = client ? view_of(g, client) : NULL;
        json_object_set_new(m, "view", v ? v : json_null());
    }
    if (as_json) {
        json_t *doc = json_pack("{s:O}", "members", members);
        cli_print_json(doc);
        json_decref(doc);
    } else {
        print_table(members);
    }
    json_decref(members);
    json_decref(mine);
    return CLI_OK;
}

static int64_t
member_id(const struct cli *g, const char *s)
{
    int64_t id = cli_i64(g, "ID", s);
    if (id < 1 || id > UINT32_MAX)
        cli_usage_error(g, "ID: expected 1..%u", UINT32_MAX);
    return id;
}

int
cmd_cluster(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, OPT_JSON},
                                         CLI_COMMON_OPTIONS};
    struct cli g;
    int opt;
    bool as_json = false;
    cli_init(&g, "cluster", cluster_usage);
    while ((opt = cli_getopt(&g, argc, argv, "h", opts)) != -1)
        if (!cli_common_opt(&g, opt, optarg))
            as_json = true;
    int n = argc - optind;
    const char *action = n ? argv[optind] : "status";
    char **args = argv + optind + (n ? 1 : 0);
    int nargs = n ? n - 1 : 0;
    if (strcmp(action, "status") == 0 && nargs == 0)
        return cluster_status(&g, as_json);
    if (strcmp(action, "add") == 0 && nargs == 2)
        return cli_run_request(&g, json_pack("{s:s,s:I,s:s}", "op", "cluster_add", "node",
                                             (json_int_t)member_id(&g, args[0]), "address",
                                             args[1]));
    if (strcmp(action, "remove") == 0 && nargs == 1)
        return cli_run_request(&g, json_pack("{s:s,s:I}", "op", "cluster_remove", "node",
                                             (json_int_t)member_id(&g, args[0])));
    if (strcmp(action, "transfer") == 0 && nargs <= 1) {
        json_t *req = json_pack("{s:s}", "op", "cluster_transfer");
        if (nargs)
            json_object_set_new(req, "node", json_integer(member_id(&g, args[0])));
        return cli_run_request(&g, req);
    }
    cli_usage_error(&g, "expected status, add ID ADDRESS, remove ID or transfer [ID]");
    return CLI_USAGE;
}
