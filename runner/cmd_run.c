/* irp run PLAYBOOK: execute a playbook for real. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "irp/answers.h"
#include "irp/cli.h"
#include "irp/clock.h"
#include "irp/curl_lib.h"
#include "irp/curl_uv.h"
#include "irp/engine.h"
#include "irp/error.h"
#include "irp/inputs.h"
#include "irp/journal.h"
#include "irp/proc.h"
#include "irp/report.h"
#include "irp/timeutil.h"
#include "liveview.h"
#include "prompt.h"
#include "run_exec.h"
#include "rundir.h"
#include "strvec.h"
#include "thread.h"

extern char **environ;


typedef struct run_ui {
    const irp_cli_common *common;
    liveview *view;              /* on a terminal; NULL: one line per event */
    irp_engine *engine;
    uv_signal_t sigint, sigterm, sighup;
} run_ui;

static int parse_args(int argc, char **argv, run_args *a)
{
    a->jobs = 8;
    a->runs = "irp-runs";
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = strcmp(s, "-i") == 0 || strcmp(s, "--inputs") == 0 ||
                     strcmp(s, "--jobs") == 0 || strcmp(s, "--runs") == 0 ||
                     strcmp(s, "--operator") == 0 || strcmp(s, "--detected-at") == 0 ||
                     strcmp(s, "--answers") == 0;
        if (takes && !val)
            return irp_cli_usage_error("run", "%s needs a value", s);
        if (strcmp(s, "-i") == 0) {
            strvec_push(&a->iargs, val);
        } else if (strcmp(s, "--inputs") == 0) {
            a->inputs_file = val;
        } else if (strcmp(s, "--jobs") == 0) {
            char *end;
            long n = strtol(val, &end, 10);
            if (*end || n < 1 || n > 100000)
                return irp_cli_usage_error("run", "--jobs takes a number from 1 to 100000");
            a->jobs = (unsigned)n;
        } else if (strcmp(s, "--runs") == 0) {
            a->runs = val;
        } else if (strcmp(s, "--operator") == 0) {
            a->operator_name = val;
        } else if (strcmp(s, "--detected-at") == 0) {
            a->detected_at = val;
        } else if (strcmp(s, "--answers") == 0) {
            a->answers_file = val;
        } else if (strcmp(s, "--yes") == 0 || strcmp(s, "-y") == 0) {
            a->yes = true;
            continue;
        } else if (strcmp(s, "--no-fsync") == 0) {
            a->no_fsync = true;
            continue;
        } else if (s[0] == '-' && s[1]) {
            return irp_cli_usage_error("run", "unknown option '%s'", s);
        } else if (a->playbook) {
            return irp_cli_usage_error("run", "one playbook at a time ('%s' and '%s')",
                                       a->playbook, s);
        } else {
            a->playbook = s;
            continue;
        }
        i++;
    }
    if (!a->playbook)
        return irp_cli_usage_error("run", "no playbook given");
    return 0;
}

/* Steps this build cannot execute are refused before anything starts. */
static int check_runnable(const irp_playbook *pb)
{
    int bad = 0;
    for (size_t i = 0; i < pb->n_steps; i++) {
        const irp_step *s = &pb->steps[i];
        if (!irp_exec_real(s->action)) {
            fprintf(stderr, "%s:%u:%u: error: step '%s': this version of irp run cannot run "
                    "'%s' steps yet\n", pb->file, s->pos.line, s->pos.col, s->id,
                    irp_action_name(s->action));
            bad = 1;
        }
    }
    return bad;
}

/* Whether a step sends a notification through libcurl (a webhook or an
 * email; one to a file does not). */
static bool playbook_notifies(const irp_playbook *pb)
{
    for (size_t i = 0; i < pb->n_steps; i++)
        if (pb->steps[i].action == IRP_ACT_NOTIFY && pb->steps[i].act.notify->via != IRP_VIA_FILE)
            return true;
    return false;
}

/* The first `n`-byte needle in [p, end), or NULL.  A playbook of 100,000
 * steps has hundreds of thousands of ${{ }} spans: memmem's set-up for
 * each search cost more than memchr's scan to the next first byte. */
static const char *find(const char *p, const char *end, const char *needle, size_t n)
{
    while (p && (size_t)(end - p) >= n) {
        p = memchr(p, needle[0], (size_t)(end - p) - n + 1);
        if (!p || memcmp(p, needle, n) == 0)
            return p;
        p++;
    }
    return NULL;
}

/* Secrets referenced anywhere in templates: their values are redacted
 * from logs and removed from children's inherited environment.  Names are
 * found inside ${{ }} spans of the playbook's text. */
static int collect_secrets(const irp_playbook *pb, strvec *names, strvec *values)
{
    const char *p = pb->src, *end = pb->src + pb->src_len;
    int missing = 0;
    while ((p = find(p, end, "${{", 3))) {
        const char *close = find(p, end, "}}", 2);
        if (!close)
            break;
        for (const char *q = p; (q = find(q, close, "secrets.", 8)); q += 8) {
            const char *n = q + 8, *e = n;
            while (e < close && (e[0] == '_' || (e[0] >= 'A' && e[0] <= 'Z') ||
                                 (e[0] >= 'a' && e[0] <= 'z') || (e[0] >= '0' && e[0] <= '9')))
                e++;
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)(e - n), n);
            bool seen = false;
            for (size_t k = 0; k < names->n; k++)
                seen |= strcmp(names->v[k], name) == 0;
            if (seen || !*name)
                continue;
            strvec_push(names, name);
            const char *v = getenv(name);
            if (!v) {
                fprintf(stderr, "irp: secret '%s' is not set: export %s before the run\n",
                        name, name);
                missing = 1;
            } else {
                strvec_push(values, v);
            }
        }
        p = close + 2;
    }
    return missing;
}

static int base_env(const strvec *secret_names, strvec *env)
{
    for (char **e = environ; *e; e++) {
        bool secret = false;
        for (size_t k = 0; k < secret_names->n && !secret; k++) {
            size_t len = strlen(secret_names->v[k]);
            secret = strncmp(*e, secret_names->v[k], len) == 0 && (*e)[len] == '=';
        }
        if (!secret && strncmp(*e, "IRP_", 4) != 0 && strvec_push(env, *e))
            return IRP_ENOMEM;
    }
    return env->v ? 0 : strvec_push(env, "IRP_=1") ;
}

static void print_event(void *ctx, const json_t *ev)
{
    run_ui *ui = ctx;
    if (ui->common->quiet)
        return;
    if (ui->view) {
        liveview_poke(ui->view);
        return;
    }
    const char *name = json_string_value(json_object_get(ev, "event"));
    const char *ts = json_string_value(json_object_get(ev, "ts"));
    const char *inst = json_string_value(json_object_get(ev, "instance"));
    if (!inst)
        inst = json_string_value(json_object_get(ev, "step"));
    if (!inst)
        inst = json_string_value(json_object_get(ev, "deadline"));
    const char *detail = json_string_value(json_object_get(ev, "status"));
    if (!detail && strncmp(name, "deadline.", 9) == 0)
        detail = json_string_value(json_object_get(ev, "due"));
    if (!detail)
        detail = json_string_value(json_object_get(ev, "answer"));
    if (!detail)
        detail = json_string_value(json_object_get(ev, "reason"));
    if (!detail)
        detail = json_string_value(json_object_get(ev, "error"));
    if (!ui->common->verbose && (strcmp(name, "step.spawned") == 0))
        return;
    printf("%s %-15s %s%s%s\n", ts ? ts + 11 : "", name, inst ? inst : "",
           detail ? "  " : "", detail ? detail : "");
    fflush(stdout);
}

/* SPEC §4: a deadline still open when the run ends is on its last lines. */
static void print_open_deadlines(const irp_engine *e)
{
    for (size_t i = 0; i < irp_engine_ndeadlines(e); i++) {
        irp_deadline_info d;
        irp_engine_deadline(e, i, &d);
        if (strcmp(d.status, "open") != 0)
            continue;
        char due[IRP_TIME_BUFSZ] = "not started";
        if (d.due)
            irp_time_format(d.due, due);
        printf("deadline %s still open: due %s (%s)\n", d.id, due, d.title);
    }
}

/* The facilitator's key in a simulation on a terminal: `p` then Enter
 * pauses the virtual clock, and again resumes it. */
typedef struct sim_keys {
    irp_clock *clock;
    liveview *view;
    bool paused;
} sim_keys;

static void sim_key(void *ctx, const char *line)
{
    sim_keys *k = ctx;
    if (strcmp(line, "p") != 0 && strcmp(line, "P") != 0)
        return;
    k->paused = !k->paused;
    if (k->paused)
        irp_clock_pause(k->clock);
    else
        irp_clock_resume(k->clock);
    liveview_clock_paused(k->view, k->paused);
}

static void on_signal(uv_signal_t *h, int signum)
{
    run_ui *ui = h->data;
    if (signum == SIGHUP || !ui->engine)
        return;   /* the run goes on without its terminal; or it has ended */
    irp_engine_interrupt(ui->engine);
}

/* report.md is the Markdown report made from the journal just written,
 * the same text `irp report RUN_DIR` prints: built from the lines as they
 * were written when `rs` followed the whole journal, else read back.
 * Not writing it is exit 4. */
static int write_report(const char *dir, const irp_playbook *pb, irp_journal *j,
                        irp_report_stream *rs)
{
    char err[1024];
    int rc;
    if (rs && !irp_journal_tap_error(j) && irp_report_stream_finish(rs) == 0)
        rc = irp_report_stream_save(rs, dir, irp_journal_head(j), err, sizeof err);
    else
        rc = irp_report_save_pb(dir, pb, err, sizeof err);
    if (rc)
        fprintf(stderr, "irp: %s\n", err);
    return rc;
}

/* An instance id in --answers that matched no instance: a typo, or a
 * list that changed; the run has ended, so say it once. */
static void warn_unused_answers(const irp_answers *as)
{
    for (size_t i = 0; i < irp_answers_count(as); i++) {
        const irp_answer *x = irp_answers_at(as, i);
        if (!x->used && x->is_instance)
            fprintf(stderr, "%s:%u:%u: warning: '%s' matched no instance of step '%s'\n",
                    irp_answers_file(as), x->line, x->col, x->key, x->step->id);
    }
}

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* The syncs that end a simulation: its journal (and with its first sync
 * the run directory) and inputs.json (created unsynced), made durable on
 * a thread of their own while this one writes the report.  Not on the
 * loop's pool: waiting for it would run the loop, and with it timers and
 * close callbacks of a run that has ended.  The thread has the journal to itself: this one
 * only reads its head until end_sync_wait.  It first waits for the
 * copy's own thread (rundir_copy_start), which syncs the copy, if that
 * still writes. */
typedef struct end_sync {
    pthread_t thread;
    bool started;
    irp_journal *j;
    const char *dir;
    rundir_copy *copy;
    int journal_err, files_err;
} end_sync;

static void *end_sync_thread(void *arg)
{
    end_sync *es = arg;
    es->files_err = rundir_copy_finish(es->copy);
    es->copy = NULL;
    es->journal_err = irp_journal_sync(es->j);
    if (!es->files_err)
        es->files_err = rundir_sync_inputs(es->dir);
    return NULL;
}

static int end_sync_start(end_sync *es)
{
    irp_journal_set_fsync(es->j, true);   /* writes the batch */
    int rc = irp_journal_flush(es->j);
    if (rc)
        return rc;
    es->started = irp_thread_start(&es->thread, end_sync_thread, es);
    if (!es->started)
        end_sync_thread(es);
    return 0;
}

/* Wait for end_sync_start's syncs (or, without them, for the copy); their
 * first failure. */
static int end_sync_wait(end_sync *es)
{
    if (es->started)
        pthread_join(es->thread, NULL);
    es->started = false;
    if (es->copy) {
        es->files_err = rundir_copy_finish(es->copy);
        es->copy = NULL;
    }
    if (es->files_err)
        fprintf(stderr, "irp: cannot write %s/playbook.yaml or inputs.json: %s\n", es->dir,
                irp_strerror(es->files_err));
    return es->journal_err ? es->journal_err : es->files_err;
}

/* A new run directory, locked, with an empty journal; an exit status on
 * failure. */
static int open_new(const irp_playbook *pb, const run_args *a, const irp_value *inputs,
                    char run_id[256], char **dir, irp_journal **j, rundir_copy **copy)
{
    char err[512] = "";
    rundir_make_id(pb->id, run_id, 256);
    /* A simulation syncs its files when it ends (end_sync_start). */
    if (rundir_create(a->runs, run_id, pb, inputs, !a->sim, dir, err, sizeof err)) {
        fprintf(stderr, "irp: %s\n", err);
        return IRP_EXIT_JOURNAL;
    }
    long holder;
    int rc = rundir_lock(*dir, &holder);
    char jpath[4096];
    snprintf(jpath, sizeof jpath, "%s/journal.jsonl", *dir);
    if (!rc)
        rc = irp_journal_create(jpath, j);
    if (rc) {
        fprintf(stderr, "irp: cannot create %s: %s\n", jpath, irp_strerror(rc));
        free(*dir);
        *dir = NULL;
        return IRP_EXIT_JOURNAL;
    }
    if (a->sim && (rc = rundir_copy_start(*dir, pb->src, pb->src_len, copy)) != 0) {
        fprintf(stderr, "irp: cannot write to %s: %s\n", *dir, irp_strerror(rc));
        irp_journal_close(*j);
        *j = NULL;
        free(*dir);
        *dir = NULL;
        return IRP_EXIT_JOURNAL;
    }
    return 0;
}

static int execute(const irp_playbook *pb, run_args *a, irp_value *inputs, const strvec *env,
                   const strvec *redact, const irp_cli_common *common)
{
    char run_id[256], sha[IRP_SHA256_HEX];
    char *dir = NULL;
    irp_journal *j = NULL;
    rundir_copy *copy = NULL;
    int rc = a->resume ? run_resume_open(pb, a, &dir, &j)
                       : open_new(pb, a, inputs, run_id, &dir, &j, &copy);
    if (rc)
        return rc;
    if (a->resume)
        snprintf(run_id, sizeof run_id, "%s", a->resume->run_id);
    /* A new run's report follows its journal from the first line; a
     * resumed one's journal began in an earlier process. */
    irp_report_stream *rs = NULL;
    if (!a->resume && irp_report_stream_new(pb, dir, &rs) == 0)
        irp_journal_set_tap(j, irp_report_stream_feed, rs);
    /* A simulation acts on nothing real, so its steps need not wait for
     * their step.started to reach the disk (at --speed max that wait was
     * most of its time); the whole journal is synced when it ends. */
    irp_journal_set_fsync(j, !a->no_fsync && !a->sim);
    /* A simulation's copy hashes the playbook on its own thread. */
    if (!copy)
        irp_sha256_hex(pb->src, pb->src_len, sha);
    int64_t detected = -1;
    /* SPEC §1.2: --detected-at, else the input detected_at, else the start. */
    const char *det = a->detected_at;
    const irp_value *dv = det ? NULL : irp_value_map_get(inputs, "detected_at", 11);
    if (dv && irp_value_type_of(dv) == IRP_VALUE_STRING)
        det = irp_value_string(dv, NULL);
    if (det)
        irp_time_parse(det, strlen(det), &detected);
    const char *op = a->operator_name;
    struct passwd *pw = op ? NULL : getpwuid(getuid());
    if (!op)
        op = getenv("USER") ? getenv("USER") : pw ? pw->pw_name : "unknown";

    /* Notifications use libcurl: loaded and set up once, only by a run
     * that sends one, before the loop and its thread pool start (the
     * report's thread may run already; it never calls libcurl).  Without
     * it the run goes on, and each notification fails saying why. */
    if (!a->sim && playbook_notifies(pb) && irp_curl_load() != 0)
        fprintf(stderr, "irp: warning: notifications cannot be sent: %s\n",
                irp_curl_load_error());
    uv_loop_t loop;
    uv_loop_init(&loop);
    irp_clock *clock = NULL;
    /* Lines are written in batches (irp_journal_set_batch): a run's
     * before the loop next waits or when an action needs them on disk
     * (with --no-fsync: written), a simulation's every 20 ms.  98,000
     * skipped steps are then a few writes, not 98,000 each under its own
     * lock. */
    irp_journal_set_batch(j, &loop, a->sim ? IRP_BATCH_LAZY : IRP_BATCH_TURN);
    if (a->sim)
        irp_clock_create_virtual(&loop, a->sim->start_ms, a->sim->speed, &clock);
    else
        irp_clock_create_real(&loop, &clock);
    run_ui ui = { .common = common };
    irp_engine_opts o = {
        .pb = pb, .loop = &loop, .clock = clock, .journal = j, .mode = a->sim ? "simulate" : "run",
        .run_id = run_id, .run_dir = dir, .operator_name = op, .playbook_sha256 = sha,
        .inputs = inputs, .detected_at_ms = detected, .jobs = a->jobs, .yes = a->yes,
        .answers = a->answers, .rerun_interrupted = a->rerun_interrupted,
        .base_env = (const char *const *)env->v,
        .redact = redact->v ? (const char *const *)redact->v : (const char *const[]){ NULL },
        .executor = a->sim ? a->sim->executor : irp_exec_real,
        /* Quiet, no event is shown: none is made into an object for it. */
        .on_event = common->quiet ? NULL : print_event,
        .ctx = &ui, .auto_answer = a->sim && a->sim->auto_answer,
        .seed = a->sim ? a->sim->seed : 0,
    };
    if (!common->quiet && isatty(STDOUT_FILENO))
        ui.view = liveview_new(&loop, stdout, common->color, pb, run_id, clock);
    prompter *asker = prompter_new(&loop, ui.view);
    if (asker)
        o.prompter = prompter_iface(asker);
    sim_keys keys = { clock, ui.view, false };
    if (a->sim && ui.view)
        prompter_on_idle_line(asker, sim_key, &keys);
    irp_engine_new(&o, &ui.engine);
    uv_signal_t *sigs[] = { &ui.sigint, &ui.sigterm, &ui.sighup };
    int signums[] = { SIGINT, SIGTERM, SIGHUP };
    for (int i = 0; i < 3; i++) {
        uv_signal_init(&loop, sigs[i]);
        sigs[i]->data = &ui;
        uv_signal_start(sigs[i], on_signal, signums[i]);
        uv_unref((uv_handle_t *)sigs[i]);
    }
    liveview_attach(ui.view, ui.engine);
    if (!common->quiet && !ui.view)
        printf("%s  %s  run %s\n", rundir_tlp_label(pb->tlp), pb->title, run_id);
    if (copy)
        rundir_copy_sha256(copy, sha);   /* for run.started */
    if (a->resume)
        run_resume_start(a, ui.engine);
    else
        irp_engine_start(ui.engine);
    if (a->sim)
        a->sim->view = ui.view;
    if (a->sim && a->sim->started && !irp_engine_done(ui.engine))
        a->sim->started(a->sim->ctx, ui.engine, clock);
    while (!irp_engine_done(ui.engine) && uv_run(&loop, UV_RUN_DEFAULT) != 0)
        ;
    if (!irp_engine_done(ui.engine))
        uv_run(&loop, UV_RUN_DEFAULT);
    liveview_finish(ui.view);
    irp_run_status st = irp_engine_status(ui.engine);
    int jerr = irp_engine_journal_error(ui.engine);
    end_sync es = { .j = j, .dir = dir, .copy = copy };
    if (a->sim && !a->no_fsync && !jerr && (jerr = end_sync_start(&es)) != 0)
        fprintf(stderr, "irp: cannot write the journal: %s\n", irp_strerror(jerr));
    if (!jerr && (jerr = irp_journal_flush(j)) != 0)
        fprintf(stderr, "irp: cannot write the journal: %s\n", irp_strerror(jerr));
    static const char *const names[] = { "succeeded", "failed", "interrupted" };
    const char *head = irp_journal_head(j);
    int rerr = write_report(dir, pb, j, rs);
    int serr = end_sync_wait(&es);
    if (serr && !jerr) {
        jerr = serr;
        if (!es.files_err)
            fprintf(stderr, "irp: cannot write the journal: %s\n", irp_strerror(jerr));
    }
    if (rerr && !jerr)
        jerr = IRP_EIO;
    irp_journal_set_tap(j, NULL, NULL);
    irp_report_stream_free(rs);
    if (!common->quiet || st != IRP_RUN_SUCCEEDED)
        printf("run %s %s; journal head %s\n", run_id, names[st], head);
    print_open_deadlines(ui.engine);
    printf("%s\n", dir);
    fflush(stdout);

    /* The run has ended: a Ctrl-C now has nothing to stop, and must
     * neither reach the engine being freed nor kill irp once the signal
     * watchers are closed (libuv then restores the default action).
     * Blocked, it stays pending and dies with the process.  libuv's pool
     * threads block every signal, so this thread is the only target. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    irp_engine *engine = ui.engine;
    ui.engine = NULL;
    if (a->sim && a->sim->ended)
        a->sim->ended(a->sim->ctx);
    irp_engine_free(engine);
    prompter_close(asker);
    /* A run that ended inside irp_engine_start left libuv's stop flag set:
     * one turn clears it, so the close callbacks below do run. */
    uv_run(&loop, UV_RUN_NOWAIT);
    irp_clock_close(clock);
    irp_journal_close(j);
    irp_proc_shutdown(&loop);
    irp_curl_shutdown(&loop);
    uv_walk(&loop, close_walk, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(dir);
    if (jerr)
        return IRP_EXIT_JOURNAL;
    return st == IRP_RUN_INTERRUPTED ? IRP_EXIT_INTERRUPTED
           : st == IRP_RUN_FAILED    ? IRP_EXIT_FAILED : IRP_EXIT_OK;
}

int run_loaded(const irp_playbook *pb, run_args *a, irp_value *inputs,
               const irp_cli_common *common)
{
    strvec names = STRVEC_INIT, values = STRVEC_INIT, env = STRVEC_INIT;
    int status = IRP_EXIT_USAGE;
    if (!check_runnable(pb) && !collect_secrets(pb, &names, &values) && !base_env(&names, &env))
        status = execute(pb, a, inputs, &env, &values, common);
    if (status != IRP_EXIT_USAGE)
        warn_unused_answers(a->answers);
    strvec_release(&names);
    strvec_release(&values);
    strvec_release(&env);
    return status;
}

int irp_cmd_run(int argc, char **argv, const irp_cli_common *common)
{
    run_args a = { 0 };
    int rc = parse_args(argc, argv, &a);
    if (rc) {
        strvec_release(&a.iargs);
        return rc;
    }
    int64_t t;
    if (a.detected_at && irp_time_parse(a.detected_at, strlen(a.detected_at), &t) != 0) {
        strvec_release(&a.iargs);
        return irp_cli_usage_error("run", "--detected-at takes an RFC 3339 time with an offset");
    }
    irp_diag_list diags = IRP_DIAG_LIST_INIT;
    irp_playbook *pb = NULL;
    irp_value *inputs = NULL;
    int status = IRP_EXIT_USAGE;
    rc = irp_playbook_load(a.playbook, &diags, &pb);
    if (!rc)
        rc = irp_inputs_resolve(pb, a.iargs.v, a.iargs.n, a.inputs_file, false, &diags, &inputs);
    if (!rc && a.answers_file) {
        int arc = irp_answers_load(pb, a.answers_file, &diags, &a.answers);
        rc = rc ? rc : arc;
    }
    irp_diag_sort(&diags);
    irp_diag_print(&diags, stderr, common->color);
    if (rc == IRP_ENOMEM)
        status = IRP_EXIT_INTERNAL;
    else if (!rc)
        status = run_loaded(pb, &a, inputs, common);
    irp_answers_free(a.answers);
    irp_value_unref(inputs);
    irp_playbook_free(pb);
    irp_diag_list_release(&diags);
    strvec_release(&a.iargs);
    return status;
}
