#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "irp/timeutil.h"
#include "liveview.h"
#include "rundir.h"

struct liveview {
    uv_timer_t timer;
    FILE *out;
    bool color;
    const irp_playbook *pb;
    const char *run_id;
    irp_clock *clock;
    irp_engine *engine;
    int64_t started;
    unsigned lines;          /* lines of the previous frame, to draw over */
    bool dirty;
    bool paused;
    bool clock_paused;       /* the facilitator paused a simulation's clock */
};

static const char *state_color(irp_state s)
{
    switch (s) {
    case IRP_ST_RUNNING: return "\033[1;36m";
    case IRP_ST_SUCCEEDED: return "\033[32m";
    case IRP_ST_FAILED: case IRP_ST_TIMED_OUT: return "\033[1;31m";
    case IRP_ST_SKIPPED: case IRP_ST_CANCELLED: return "\033[2m";
    default: return "\033[33m";
    }
}

static unsigned term_rows(FILE *out)
{
    struct winsize ws;
    if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_row > 6)
        return ws.ws_row;
    return 24;
}

static void fmt_elapsed(int64_t ms, char *buf, size_t n)
{
    if (ms < 0)
        ms = 0;
    snprintf(buf, n, "%lld:%02lld", (long long)(ms / 60000), (long long)(ms / 1000 % 60));
}

/* "23h59m", "12m05s", "-1h02m" (past due). */
static void fmt_left(int64_t ms, char *buf, size_t n)
{
    const char *sign = ms < 0 ? "-" : "";
    long long s = (ms < 0 ? -ms : ms) / 1000;
    if (s >= 3600)
        snprintf(buf, n, "%s%lldh%02lldm", sign, s / 3600, s / 60 % 60);
    else
        snprintf(buf, n, "%s%lldm%02llds", sign, s / 60, s % 60);
}

/* Deadlines counting down, one line each; returns the lines drawn. */
static unsigned draw_deadlines(liveview *lv, irp_engine *e, int64_t now)
{
    unsigned lines = 0;
    for (size_t i = 0; i < irp_engine_ndeadlines(e); i++) {
        irp_deadline_info d;
        irp_engine_deadline(e, i, &d);
        char left[32] = "";
        if (d.due)
            fmt_left(d.due - now, left, sizeof left);
        bool hot = !strcmp(d.status, "warning") || !strcmp(d.status, "missed");
        fprintf(lv->out, "  %sdeadline %-11s%s %8s  %s\n", lv->color && hot ? "\033[1;31m" : "",
                d.status, lv->color && hot ? "\033[0m" : "", left, d.id);
        lines++;
    }
    return lines;
}

/* Active steps first (running, waiting), then the most recently ended,
 * as many as the terminal holds; a count of the rest. */
static void draw(liveview *lv)
{
    irp_engine *e = lv->engine;
    if (!e)
        return;
    int64_t now = irp_clock_wall_ms(lv->clock);
    size_t n = irp_engine_nsteps(e), counts[IRP_ST_INTERRUPTED + 1] = { 0 };
    unsigned nd = (unsigned)irp_engine_ndeadlines(e);
    unsigned rows = term_rows(lv->out);
    unsigned room = rows > nd + 6 ? rows - 4 - nd : 2, shown = 0;
    if (lv->lines)
        fprintf(lv->out, "\033[%uA\033[J", lv->lines);
    char el[32];
    fmt_elapsed(now - lv->started, el, sizeof el);
    fprintf(lv->out, "%s%s%s  %s  %s  %s\n", lv->color ? "\033[1m" : "",
            rundir_tlp_label(lv->pb->tlp), lv->color ? "\033[0m" : "", lv->pb->title, lv->run_id, el);
    if (irp_clock_is_virtual(lv->clock)) {
        /* A tabletop: the exercise's own date and time, and T+ since its start. */
        char at[IRP_TIME_BUFSZ];
        irp_time_format(now, at);
        int64_t t = (now - lv->started) / 1000;
        fprintf(lv->out, "  virtual time %.10s %.8sZ  T+%02lld:%02lld:%02lld%s\n", at, at + 11,
                (long long)(t / 3600), (long long)(t / 60 % 60), (long long)(t % 60),
                lv->clock_paused ? "  PAUSED (p Enter resumes)" : "  (p Enter pauses)");
        shown++;
    }
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n && shown < room; i++) {
            irp_state s = irp_engine_step_state(e, i);
            counts[s] += pass == 0;
            bool active = s == IRP_ST_RUNNING || s == IRP_ST_WAITING || s == IRP_ST_AWAITING_INPUT;
            if ((pass == 0) != active || (pass == 1 && !irp_state_ended(s)))
                continue;
            int64_t st, fin;
            irp_engine_step_times(e, i, &st, &fin);
            fmt_elapsed((fin ? fin : now) - st, el, sizeof el);
            fprintf(lv->out, "  %s%-11s%s %6s  %s\n", lv->color ? state_color(s) : "",
                    irp_state_name(s), lv->color ? "\033[0m" : "", st ? el : "", lv->pb->steps[i].id);
            shown++;
        }
    fprintf(lv->out, "  %zu pending, %zu running, %zu succeeded, %zu failed, %zu skipped\n",
            counts[IRP_ST_PENDING] + counts[IRP_ST_WAITING], counts[IRP_ST_RUNNING],
            counts[IRP_ST_SUCCEEDED], counts[IRP_ST_FAILED] + counts[IRP_ST_TIMED_OUT],
            counts[IRP_ST_SKIPPED] + counts[IRP_ST_CANCELLED]);
    shown += draw_deadlines(lv, e, now);
    fflush(lv->out);
    lv->lines = shown + 2;
    lv->dirty = false;
}

static void tick(uv_timer_t *t)
{
    liveview *lv = t->data;
    if (!lv->paused)
        draw(lv);
}

void liveview_clock_paused(liveview *lv, bool paused)
{
    if (lv) {
        lv->clock_paused = paused;
        lv->dirty = true;
    }
}

void liveview_pause(liveview *lv, bool paused)
{
    if (!lv)
        return;
    lv->paused = paused;
    lv->lines = 0;   /* never draw over the question and its answer */
}

liveview *liveview_new(uv_loop_t *loop, FILE *out, bool color, const irp_playbook *pb,
                       const char *run_id, irp_clock *clock)
{
    liveview *lv = calloc(1, sizeof *lv);
    if (!lv)
        return NULL;
    *lv = (liveview){ .out = out, .color = color, .pb = pb, .run_id = run_id, .clock = clock,
                      .started = irp_clock_wall_ms(clock) };
    uv_timer_init(loop, &lv->timer);
    lv->timer.data = lv;
    uv_timer_start(&lv->timer, tick, 250, 250);
    uv_unref((uv_handle_t *)&lv->timer);   /* the view never keeps a run alive */
    return lv;
}

void liveview_attach(liveview *lv, irp_engine *e)
{
    if (lv)
        lv->engine = e;
}

void liveview_poke(liveview *lv)
{
    if (lv)
        lv->dirty = true;
}

static void closed(uv_handle_t *h)
{
    free(h->data);
}

void liveview_finish(liveview *lv)
{
    if (!lv)
        return;
    draw(lv);
    lv->engine = NULL;
    uv_close((uv_handle_t *)&lv->timer, closed);
}
