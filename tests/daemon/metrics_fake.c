/* The fake stats document of the metrics tests (see metrics_fake.h). */
#include "chanq_config.h"

#include "tests/daemon/metrics_fake.h"

#include <check.h>
#include <jansson.h>
#include <string.h>

#include "daemon/metrics.h"

const char metrics_fake_doc[] =
    "{\"server\":{\"uptime_s\":12,\"connections\":3,\"goroutines\":40,\"threads\":2,"
    "\"rss_bytes\":1048576,\"version\":\"0.1.0\","
    "\"jobs\":{\"queued\":5,\"reserved\":1,\"delayed\":0,\"dead\":2,\"done\":7,"
    "\"cancelled\":1,\"expired\":0,\"tracked\":16,\"keys\":6,\"payload_bytes\":2048},"
    "\"journal\":{\"bytes\":4096,\"fsync\":\"always\",\"last_fsync_us\":420,"
    "\"records\":900,\"batches\":30,\"batch_wait_us\":1500000,"
    "\"fsync_hist\":{\"le_us\":[100,1000,10000],\"counts\":[2,7,8],\"sum_us\":500000,"
    "\"count\":9}}},"
    "\"queues\":{\"mail\":{\"capacity\":10,\"depth\":3,\"reserved\":1,\"delayed\":0,\"dead\":2,"
    "\"waiting_submitters\":0,\"waiting_fetchers\":4,\"paused\":false,\"closed\":true,"
    "\"submitted\":100,\"delivered\":90,\"acked\":80,\"nacked\":5,\"expired\":1,"
    "\"cancelled\":2,\"rejected_full\":3,\"blocked_ms\":1500,\"oldest_age_ms\":2500,"
    "\"concurrency\":3,\"rate\":100,\"rate_per_ms\":1000,\"burst\":10,\"rate_tokens\":7,"
    "\"run_hist\":{\"le_ms\":[5,1000],\"counts\":[60,78],\"sum_ms\":9000,\"count\":80}},"
    "\"we\\\"ird\\\\q\\nname\":{\"depth\":1,\"paused\":true}}}";

char *
metrics_render_fake(void)
{
    json_t *doc = json_loads(metrics_fake_doc, 0, NULL);
    ck_assert_msg(doc, "fake document does not parse");
    size_t len;
    char *text = metrics_render(doc, &len);
    json_decref(doc);
    ck_assert_msg(text && len == strlen(text), "render failed");
    return text;
}
