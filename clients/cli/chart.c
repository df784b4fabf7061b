/* chanq loadtest: CSV and SVG output of the per-second series. */
#include "chanq_config.h"

#include "clients/cli/chart.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

int
chart_write_csv(const char *path, const struct sample *s, size_t n)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "t_s,submitted_per_s,acked_per_s,rejected_per_s,depth,capacity,"
               "waiting_submitters,blocked_ms_total,p50_ms,p99_ms,rss_mib\n");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.3f,%.3f,%.1f\n", s[i].t,
                s[i].submitted, s[i].acked, s[i].rejected, s[i].depth, s[i].capacity,
                s[i].waiting_submitters, s[i].blocked_ms, s[i].p50_ms, s[i].p99_ms, s[i].rss_mib);
    return fclose(f) == 0 ? 0 : -1;
}

#define W 960.0        /* image width */
#define PANEL_H 170.0  /* plot height per panel */
#define GAP 62.0       /* room for a panel's title and x labels */
#define LEFT 78.0      /* room for y labels */
#define RIGHT 150.0    /* room for the legend */
#define TOP 48.0       /* room for the chart title */

/* A line of one panel: which field, its colour and name. */
struct line {
    size_t offset;     /* offsetof(struct sample, field) */
    const char *color; /* stroke */
    const char *name;  /* legend */
    bool dashed;       /* reference lines (capacity) */
    double width;      /* stroke width: a wide line stays visible under a thin one */
};

struct panel {
    const char *title;      /* above the plot */
    const char *unit;       /* y axis */
    struct line lines[3];   /* up to 3; name NULL ends */
};

static double
field(const struct sample *s, size_t off)
{
    double v;
    memcpy(&v, (const char *)s + off, sizeof v);
    return v;
}

/* 1, 2 or 5 times a power of ten, >= v. */
static double
nice_ceiling(double v)
{
    if (v <= 0)
        return 1;
    static const double steps[] = {1, 1.2, 1.6, 2, 2.5, 3, 4, 5, 6, 8, 10};
    double p = pow(10, floor(log10(v)));
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++)
        if (v <= steps[k] * p * 1.0000001)
            return steps[k] * p;
    return 10 * p;
}

static void
fmt_num(char *buf, size_t n, double v)
{
    if (v >= 1e6)
        snprintf(buf, n, "%.3gM", v / 1e6);
    else if (v >= 1e4)
        snprintf(buf, n, "%.3gk", v / 1e3);
    else
        snprintf(buf, n, "%.4g", v);
}

static void
draw_panel(FILE *f, const struct panel *pn, double y0, const struct sample *s, size_t n,
           double tmax)
{
    double ymax = 0;
    for (int l = 0; l < 3 && pn->lines[l].name; l++)
        for (size_t i = 0; i < n; i++)
            if (field(&s[i], pn->lines[l].offset) > ymax)
                ymax = field(&s[i], pn->lines[l].offset);
    ymax = nice_ceiling(ymax);
    double pw = W - LEFT - RIGHT;
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"14\" font-weight=\"bold\">%s</text>\n",
            LEFT, y0 - 10, pn->title);
    fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"#fafafa\" "
               "stroke=\"#999\"/>\n",
            LEFT, y0, pw, PANEL_H);
    for (int k = 0; k <= 4; k++) {
        double y = y0 + PANEL_H - PANEL_H * k / 4;
        char lab[32];
        fmt_num(lab, sizeof lab, ymax * k / 4);
        fprintf(f, "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n",
                LEFT, y, LEFT + pw, y);
        fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%s</text>\n",
                LEFT - 6, y + 4, lab);
    }
    fprintf(f, "<text x=\"16\" y=\"%.0f\" font-size=\"11\" transform=\"rotate(-90 16 %.0f)\" "
               "text-anchor=\"middle\">%s</text>\n",
            y0 + PANEL_H / 2, y0 + PANEL_H / 2, pn->unit);
    double tstep = nice_ceiling(tmax / 8);
    for (double t = 0; t <= tmax + 1e-9; t += tstep) {
        double x = LEFT + pw * t / tmax;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#eee\"/>\n", x,
                y0, x, y0 + PANEL_H);
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"middle\">%.0fs</text>\n",
                x, y0 + PANEL_H + 14, t);
    }
    for (int l = 0; l < 3 && pn->lines[l].name; l++) {
        const struct line *ln = &pn->lines[l];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\"%s points=\"",
                ln->color, ln->width > 0 ? ln->width : 2, ln->dashed ? " stroke-dasharray=\"6 4\"" : "");
        for (size_t i = 0; i < n; i++) {
            double v = field(&s[i], ln->offset);
            if (v < 0)
                continue;
            fprintf(f, "%.1f,%.1f ", LEFT + pw * s[i].t / tmax, y0 + PANEL_H - PANEL_H * v / ymax);
        }
        fprintf(f, "\"/>\n");
        double ly = y0 + 18 + 20 * l;
        fprintf(f, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" "
                   "stroke-width=\"3\"%s/>\n",
                W - RIGHT + 12, ly, W - RIGHT + 36, ly, ln->color,
                ln->dashed ? " stroke-dasharray=\"6 4\"" : "");
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" font-size=\"12\">%s</text>\n", W - RIGHT + 42,
                ly + 4, ln->name);
    }
}

int
chart_write_svg(const char *path, const struct sample *s, size_t n, const char *title)
{
    static const struct panel panels[] = {
        {"Queue depth (queued jobs)", "jobs",
         {{offsetof(struct sample, capacity), "#d62728", "capacity", true, 2},
          {offsetof(struct sample, depth), "#1f77b4", "depth", false, 2},
          {offsetof(struct sample, waiting_submitters), "#9467bd", "waiting submits", false, 2}}},
        {"Throughput (submitted drawn wide, acked thin on top)", "jobs / s",
         {{offsetof(struct sample, submitted), "#ff7f0e", "submitted/s", false, 5},
          {offsetof(struct sample, acked), "#2ca02c", "acked/s", false, 1.5},
          {offsetof(struct sample, rejected), "#d62728", "rejected/s", false, 1.5}}},
        {"Latency, submit to ack", "ms",
         {{offsetof(struct sample, p99_ms), "#d62728", "p99", false, 2},
          {offsetof(struct sample, p50_ms), "#1f77b4", "p50", false, 2},
          {0, NULL, NULL, false, 0}}},
        {"chanqd resident memory", "MiB",
         {{offsetof(struct sample, rss_mib), "#8c564b", "RSS", false, 2},
          {0, NULL, NULL, false, 0},
          {0, NULL, NULL, false, 0}}},
    };
    size_t np = sizeof panels / sizeof panels[0];
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    double tmax = n > 0 && s[n - 1].t > 0 ? s[n - 1].t : 1;
    double h = TOP + np * (PANEL_H + GAP);
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, h, W, h);
    fprintf(f, "<text x=\"%.0f\" y=\"26\" font-size=\"16\" font-weight=\"bold\">", LEFT);
    for (const char *p = title; *p; p++) {
        if (*p == '<')
            fputs("&lt;", f);
        else if (*p == '&')
            fputs("&amp;", f);
        else
            fputc(*p, f);
    }
    fputs("</text>\n", f);
    for (size_t i = 0; i < np; i++)
        draw_panel(f, &panels[i], TOP + GAP - 20 + i * (PANEL_H + GAP), s, n, tmax);
    fputs("</svg>\n", f);
    return fclose(f) == 0 ? 0 : -1;
}
