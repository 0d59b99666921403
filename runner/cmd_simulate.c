/* irp simulate PLAYBOOK: a tabletop exercise on a virtual clock (SPEC §5).
 *
 * The same engine and run directory as `irp run` (run_loaded), with a
 * virtual clock, the simulated executors (exec_sim.c), and the scenario's
 * injects delivered on that clock: each is journaled (inject.delivered)
 * and shown at its virtual instant, then applied -- `fail` through
 * irp_engine_inject_fail, `set` through irp_engine_set_var. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "irp/answers.h"
#include "irp/cli.h"
#include "irp/clock.h"
#include "irp/engine.h"
#include "irp/error.h"
#include "irp/inputs.h"
#include "irp/scenario.h"
#include "irp/timeutil.h"
#include "liveview.h"
#include "run_exec.h"

#define DEFAULT_SPEED 60.0

typedef struct sim_opts {
    run_args run;
    const char *scenario_file;
    double speed;
    uint64_t seed;
    bool auto_answer;
} sim_opts;

struct session;

typedef struct inject_timer {
    irp_timer timer;
    struct session *s;
    const irp_inject *inj;
    bool delivered;
} inject_timer;

typedef struct session {
    const irp_scenario *sc;      /* NULL: no scenario */
    const irp_cli_common *common;
    run_sim *sim;
    irp_engine *engine;
    inject_timer *timers;
    size_t n;
} session;

/* ---- arguments ------------------------------------------------------ */

static int parse_speed(const char *val, double *speed)
{
    if (strcmp(val, "max") == 0) {
        *speed = IRP_CLOCK_SPEED_MAX;
        return 0;
    }
    char *end;
    double d = strtod(val, &end);
    if (end == val || *end || !isfinite(d) || d <= 0 || d > IRP_CLOCK_SPEED_LIMIT)
        return irp_cli_usage_error("simulate", "--speed takes 'max' or a number of virtual "
                                   "seconds per real second, above 0 and at most %g",
                                   IRP_CLOCK_SPEED_LIMIT);
    *speed = d;
    return 0;
}

static int parse_seed(const char *val, uint64_t *seed)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(val, &end, 10);
    if (end == val || *end || errno == ERANGE || val[0] < '0' || val[0] > '9')
        return irp_cli_usage_error("simulate", "--seed takes a whole number from 0 to "
                                   "18446744073709551615");
    *seed = n;
    return 0;
}

static int parse_option(sim_opts *o, const char *s, const char *val)
{
    run_args *a = &o->run;
    if (strcmp(s, "-i") == 0) {
        strvec_push(&a->iargs, val);
    } else if (strcmp(s, "--inputs") == 0) {
        a->inputs_file = val;
    } else if (strcmp(s, "--jobs") == 0) {
        char *end;
        long n = strtol(val, &end, 10);
        if (*end || end == val || n < 1 || n > 100000)
            return irp_cli_usage_error("simulate", "--jobs takes a number from 1 to 100000");
        a->jobs = (unsigned)n;
    } else if (strcmp(s, "--runs") == 0) {
        a->runs = val;
    } else if (strcmp(s, "--operator") == 0) {
        a->operator_name = val;
    } else if (strcmp(s, "--answers") == 0) {
        a->answers_file = val;
    } else if (strcmp(s, "--scenario") == 0) {
        o->scenario_file = val;
    } else if (strcmp(s, "--speed") == 0) {
        return parse_speed(val, &o->speed);
    } else {
        return parse_seed(val, &o->seed);
    }
    return 0;
}

static int parse_args(int argc, char **argv, sim_opts *o)
{
    static const char *const with_value[] = { "-i", "--inputs", "--jobs", "--runs", "--operator",
                                              "--answers", "--scenario", "--speed", "--seed" };
    o->run.jobs = 8;
    o->run.runs = "irp-runs";
    o->speed = DEFAULT_SPEED;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        bool takes = false;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++)
            takes |= strcmp(s, with_value[k]) == 0;
        if (takes) {
            if (i + 1 >= argc)
                return irp_cli_usage_error("simulate", "%s needs a value", s);
            int rc = parse_option(o, s, argv[++i]);
            if (rc)
                return rc;
        } else if (strcmp(s, "--auto") == 0) {
            o->auto_answer = true;
        } else if (s[0] == '-' && s[1]) {
            return irp_cli_usage_error("simulate", "unknown option '%s'", s);
        } else if (o->run.playbook) {
            return irp_cli_usage_error("simulate", "one playbook at a time ('%s' and '%s')",
                                       o->run.playbook, s);
        } else {
            o->run.playbook = s;
        }
    }
    if (!o->run.playbook)
        return irp_cli_usage_error("simulate", "no playbook given");
    return 0;
}

/* ---- injects -------------------------------------------------------- */

/* "T+00:30", "T+72:00", "T+01:30:15", "T+00:00:00.250". */
static void t_plus(int64_t ms, char *buf, size_t n)
{
    long long s = (long long)(ms / 1000), rest = (long long)(ms % 1000);
    int len = snprintf(buf, n, "T+%02lld:%02lld", s / 3600, s / 60 % 60);
    if ((s % 60 || rest) && len > 0 && (size_t)len < n)
        len += snprintf(buf + len, n - (size_t)len, ":%02lld", s % 60);
    if (rest && len > 0 && (size_t)len < n)
        snprintf(buf + len, n - (size_t)len, ".%03lld", rest);
}

/* The inject as the room sees it, one line, hard to miss. */
static void show(session *s, const irp_inject *inj)
{
    if (s->common->quiet)
        return;
    char when[48];
    t_plus(inj->at_ms, when, sizeof when);
    bool bold = s->common->color && isatty(STDOUT_FILENO);
    printf("%s*** INJECT %s", bold ? "\033[1;33m" : "", when);
    if (inj->title)
        printf(" %s%s", inj->title, inj->message || inj->fail || inj->n_set ? ":" : "");
    if (inj->message)
        printf(" %s", inj->message);
    if (inj->fail)
        printf(" %s fails", inj->fail);
    for (size_t i = 0; i < inj->n_set; i++) {
        char *text = NULL;
        irp_value_render(inj->set_values[i], &text, NULL);
        printf("%s %s = %s", i ? "," : "", inj->set_names[i], text ? text : "?");
        free(text);
    }
    printf("%s\n", bold ? "\033[0m" : "");
    fflush(stdout);
    /* The next frame of the live view goes below the inject, not over it. */
    liveview_pause(s->sim->view, false);
}

static json_t *inject_fields(const session *s, const irp_inject *inj)
{
    json_t *f = json_object();
    json_object_set_new(f, "inject", json_integer((json_int_t)inj->index));
    if (s->sc->id)
        json_object_set_new(f, "scenario", json_string(s->sc->id));
    return f;
}

static void deliver(irp_timer *t)
{
    inject_timer *it = t->data;
    session *s = it->s;
    const irp_inject *inj = it->inj;
    irp_engine *e = s->engine;
    if (irp_engine_done(e))
        return;
    it->delivered = true;
    json_t *f = inject_fields(s, inj);
    if (inj->title)
        json_object_set_new(f, "title", json_string(inj->title));
    if (inj->message)
        json_object_set_new(f, "message", json_string(inj->message));
    if (inj->fail)
        json_object_set_new(f, "fail", json_string(inj->fail));
    if (inj->n_set) {
        json_t *set = json_object();
        for (size_t i = 0; i < inj->n_set; i++)
            json_object_set_new(set, inj->set_names[i], irp_value_to_json(inj->set_values[i], 0));
        json_object_set_new(f, "set", set);
    }
    if (irp_engine_emit(e, "inject.delivered", f))
        return;   /* the journal failed: the engine stops the run */
    /* Shown before it is applied: the room hears the news, then sees
     * what it does. */
    show(s, inj);
    for (size_t i = 0; i < inj->n_set; i++)
        irp_engine_set_var(e, inj->set_names[i], irp_value_ref(inj->set_values[i]));
    if (inj->fail && irp_engine_inject_fail(e, inj->fail) == 1) {
        json_t *g = inject_fields(s, inj);
        json_object_set_new(g, "fail", json_string(inj->fail));
        json_object_set_new(g, "reason", json_string("already ended"));
        irp_engine_emit(e, "inject.ignored", g);
        if (!s->common->quiet)
            printf("    (%s had already ended: the inject changes nothing)\n", inj->fail);
    }
}

/* The engine has started: every inject goes on the clock, due at its
 * `at` after the start (now is 0 there, and stays exact: virtual). */
static void sim_started(void *ctx, irp_engine *e, irp_clock *clock)
{
    session *s = ctx;
    s->engine = e;
    if (!s->sc || !s->sc->n_injects)
        return;
    s->timers = calloc(s->sc->n_injects, sizeof *s->timers);
    if (!s->timers) {
        fprintf(stderr, "irp simulate: out of memory: the scenario's injects are not "
                        "delivered\n");
        return;
    }
    s->n = s->sc->n_injects;
    int64_t now = irp_clock_now_ms(clock);
    for (size_t i = 0; i < s->n; i++) {
        inject_timer *it = &s->timers[i];
        *it = (inject_timer){ .s = s, .inj = &s->sc->injects[i] };
        it->timer.data = it;
        int rc = irp_timer_start(clock, &it->timer, it->inj->at_ms - now, deliver);
        if (rc)
            fprintf(stderr, "irp simulate: inject %zu cannot be scheduled: %s\n", i,
                    irp_strerror(rc));
    }
}

/* Injects still pending when the run ended are never delivered: said
 * once, on stderr (stdout's last line is the run directory). */
static void sim_ended(void *ctx)
{
    session *s = ctx;
    size_t left = 0;
    for (size_t i = 0; i < s->n; i++) {
        irp_timer_stop(&s->timers[i].timer);
        left += !s->timers[i].delivered;
    }
    if (left && !s->common->quiet)
        fprintf(stderr, "irp simulate: %zu inject%s not delivered: the run ended before %s\n",
                left, left == 1 ? "" : "s", left == 1 ? "it" : "them");
}

/* ---- the command ---------------------------------------------------- */

static int64_t wall_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Load everything the exercise needs; every problem is reported, not
 * only the first.  IRP_ENOMEM, another error when something is wrong. */
static int load_all(sim_opts *o, irp_diag_list *diags, irp_playbook **pb, irp_value **inputs,
                    irp_scenario **sc)
{
    int rc = irp_playbook_load(o->run.playbook, diags, pb);
    if (rc)
        return rc;
    run_args *a = &o->run;
    rc = irp_inputs_resolve(*pb, a->iargs.v, a->iargs.n, a->inputs_file, false, diags, inputs);
    if (a->answers_file) {
        int arc = irp_answers_load(*pb, a->answers_file, diags, &a->answers);
        rc = rc == IRP_ENOMEM ? rc : arc ? arc : rc;
    }
    if (o->scenario_file) {
        int src = irp_scenario_load(*pb, o->scenario_file, diags, sc);
        rc = rc == IRP_ENOMEM ? rc : src ? src : rc;
    }
    return rc;
}

int irp_cmd_simulate(int argc, char **argv, const irp_cli_common *common)
{
    sim_opts o = { 0 };
    int rc = parse_args(argc, argv, &o);
    if (rc) {
        strvec_release(&o.run.iargs);
        return rc;
    }
    irp_diag_list diags = IRP_DIAG_LIST_INIT;
    irp_playbook *pb = NULL;
    irp_value *inputs = NULL;
    irp_scenario *sc = NULL;
    int status = IRP_EXIT_USAGE;
    rc = load_all(&o, &diags, &pb, &inputs, &sc);
    irp_diag_sort(&diags);
    irp_diag_print(&diags, stderr, common->color);
    if (rc == IRP_ENOMEM) {
        status = IRP_EXIT_INTERNAL;
    } else if (!rc) {
        session s = { .sc = sc, .common = common };
        run_sim sim = {
            .start_ms = sc && sc->has_start ? sc->start_ms : wall_now_ms(),
            .speed = o.speed, .seed = o.seed, .auto_answer = o.auto_answer,
            .executor = irp_exec_sim, .started = sim_started, .ended = sim_ended, .ctx = &s,
        };
        s.sim = &sim;
        o.run.sim = &sim;
        status = run_loaded(pb, &o.run, inputs, common);
        free(s.timers);
    }
    irp_scenario_free(sc);
    irp_answers_free(o.run.answers);
    irp_value_unref(inputs);
    irp_playbook_free(pb);
    irp_diag_list_release(&diags);
    strvec_release(&o.run.iargs);
    return status;
}
