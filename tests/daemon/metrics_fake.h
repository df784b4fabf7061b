/* A fake stats document (the shape of daemon/http.h) with every field that
 * /metrics renders, shared by the renderer's tests in check_daemon_unit and
 * check_promcheck. */
#ifndef CHANQ_TESTS_DAEMON_METRICS_FAKE_H
#define CHANQ_TESTS_DAEMON_METRICS_FAKE_H

extern const char metrics_fake_doc[];

/* metrics_render of metrics_fake_doc (malloc'd); fails the test when the
 * document does not parse or the rendering fails. */
char *metrics_render_fake(void);

#endif
