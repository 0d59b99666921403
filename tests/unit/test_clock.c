/* The clock: timer order, callbacks that start and stop timers, the three
 * kinds of time, holds, pauses and closing.  Callbacks only count and
 * record; the assertions run after uv_run() returns (libuv test-timer.c). */
#include <setjmp.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <uv.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#include "irp/clock.h"
#include "irp/error.h"
#include "irp/timeutil.h"

#define container_of(ptr, type, member) \
    ((type *)((char *)(ptr) - offsetof(type, member)))

#define HOUR_MS ((int64_t)3600 * 1000)

/* ---- fixture: a loop and at most one clock ------------------------------- */

typedef struct fixture {
    uv_loop_t loop;
    irp_clock *clock;   /* closed by teardown unless a test closed it */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    *state = f;
    return 0;
}

/* Every test ends here: after the clock closes the loop has no handle
 * left, so uv_loop_close() succeeds; valgrind and ASan see any leak. */
static int teardown(void **state)
{
    fixture *f = *state;
    irp_clock_close(f->clock);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

static irp_clock *make_max(fixture *f)
{
    assert_int_equal(irp_clock_create_virtual(&f->loop, 0, IRP_CLOCK_SPEED_MAX, &f->clock), 0);
    return f->clock;
}

static irp_clock *make_real(fixture *f)
{
    assert_int_equal(irp_clock_create_real(&f->loop, &f->clock), 0);
    return f->clock;
}

static uint64_t real_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* CPU time of this process in ms: what a run costs, unlike real time,
 * which stretches when the machine is busy with other tests. */
static uint64_t cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Valgrind runs code some 20-50 times slower: limits on CPU time stretch. */
static double slowdown(void)
{
    return RUNNING_ON_VALGRIND ? 40.0 : 1.0;
}

/* ---- a timer that records when and in which order it fired --------------- */

typedef struct probe {
    irp_timer timer;
    irp_clock *clock;
    int64_t want_due;     /* on the clock's timeline */
    uint64_t order;       /* the test's own count of starts */
    int fired;
    int64_t fired_now;
    uint64_t fired_rank;  /* position in the global firing order */
    uint64_t fired_real;  /* uv_hrtime() in ms */
} probe;

typedef struct fire_log {
    probe **fired;
    size_t n, cap;
    uint64_t starts;
} fire_log;

static fire_log g_log;

static void log_reset(size_t cap)
{
    free(g_log.fired);
    g_log.fired = calloc(cap ? cap : 1, sizeof *g_log.fired);
    assert_non_null(g_log.fired);
    g_log.n = 0;
    g_log.cap = cap;
    g_log.starts = 0;
}

static void log_free(void)
{
    free(g_log.fired);
    memset(&g_log, 0, sizeof g_log);
}

static void on_probe(irp_timer *t)
{
    probe *p = container_of(t, probe, timer);
    p->fired++;
    p->fired_now = irp_clock_now_ms(p->clock);
    p->fired_real = real_ms();
    p->fired_rank = g_log.n;
    if (g_log.n < g_log.cap)
        g_log.fired[g_log.n] = p;
    g_log.n++;
}

static void probe_start_cb(irp_clock *c, probe *p, int64_t delay, irp_timer_cb cb)
{
    p->clock = c;
    p->want_due = irp_clock_now_ms(c) + (delay < 0 ? 0 : delay);
    p->order = g_log.starts++;
    assert_int_equal(irp_timer_start(c, &p->timer, delay, cb), 0);
}

static void probe_start(irp_clock *c, probe *p, int64_t delay)
{
    probe_start_cb(c, p, delay, on_probe);
}

/* xorshift64*: the same sequence on every machine. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

/* The log fired in (due, start order), each exactly at its due time. */
static void assert_log_sorted(void)
{
    size_t bad_order = 0, bad_now = 0;
    size_t n = g_log.n < g_log.cap ? g_log.n : g_log.cap;

    for (size_t i = 0; i < n; i++) {
        probe *p = g_log.fired[i];
        if (p->fired_now != p->want_due)
            bad_now++;
        if (i == 0)
            continue;
        probe *q = g_log.fired[i - 1];
        if (q->want_due > p->want_due || (q->want_due == p->want_due && q->order > p->order))
            bad_order++;
    }
    assert_int_equal(bad_order, 0);
    assert_int_equal(bad_now, 0);
}

/* ---- the heap ------------------------------------------------------------ */

/* 10,000 timers with many equal dues; a quarter stopped, a quarter
 * restarted (which makes them the latest started at their new due). */
static void test_clock_heap_order_random_timers(void **state)
{
    enum { N = 10000 };
    fixture *f = *state;
    irp_clock *c = make_max(f);
    probe *p = calloc(N, sizeof *p);
    uint64_t seed = 42;
    size_t live = N;

    assert_non_null(p);
    log_reset(N);
    for (size_t i = 0; i < N; i++)
        probe_start(c, &p[i], (int64_t)(rng_next(&seed) % 500));
    for (size_t i = 0; i < N; i++) {
        uint64_t r = rng_next(&seed) % 4;
        if (r == 0) {
            irp_timer_stop(&p[i].timer);
            live--;
        } else if (r == 1) {
            probe_start(c, &p[i], (int64_t)(rng_next(&seed) % 500));
        }
    }
    uv_run(&f->loop, UV_RUN_DEFAULT);

    assert_int_equal(g_log.n, live);
    assert_log_sorted();
    for (size_t i = 0; i < N; i++) {
        assert_true(p[i].fired <= 1);
        assert_false(irp_timer_active(&p[i].timer));
    }
    free(p);
    log_free();
}

/* Starting an active timer moves it and makes it the latest started. */
static void test_clock_restart_moves_timer(void **state)
{
    fixture *f = *state;
    irp_clock *c = make_max(f);
    probe a = { 0 }, b = { 0 }, d = { 0 };

    log_reset(8);
    probe_start(c, &a, 100);
    probe_start(c, &b, 10);
    probe_start(c, &d, 10);
    assert_int_equal(irp_timer_due(&a.timer), 100);
    probe_start(c, &a, 10);   /* now after b and d at 10 */
    probe_start(c, &b, 10);   /* now after a */
    uv_run(&f->loop, UV_RUN_DEFAULT);

    assert_int_equal(g_log.n, 3);
    assert_ptr_equal(g_log.fired[0], &d);
    assert_ptr_equal(g_log.fired[1], &a);
    assert_ptr_equal(g_log.fired[2], &b);
    assert_int_equal(a.fired_now, 10);
    log_free();
}

/* ---- callbacks that start and stop timers -------------------------------- */

typedef struct stopper {
    probe self;
    irp_timer *victims[3];
} stopper;

static void on_stopper(irp_timer *t)
{
    stopper *s = container_of(t, stopper, self.timer);
    on_probe(t);
    irp_timer_stop(t);   /* itself: already inactive, a no-op */
    for (int i = 0; i < 3; i++)
        if (s->victims[i])
            irp_timer_stop(s->victims[i]);
}

/* A callback stops a timer due at the same instant, one due later, and
 * itself; only the untouched timer still fires. */
static void run_stop_from_callback(fixture *f, irp_clock *c, int64_t unit)
{
    stopper a = { 0 };
    probe same = { 0 }, later = { 0 }, kept = { 0 };

    log_reset(8);
    probe_start_cb(c, &a.self, unit, on_stopper);
    probe_start(c, &same, unit);
    probe_start(c, &kept, 2 * unit);
    probe_start(c, &later, 3 * unit);
    a.victims[0] = &same.timer;
    a.victims[1] = &later.timer;
    uv_run(&f->loop, UV_RUN_DEFAULT);

    assert_int_equal(g_log.n, 2);
    assert_int_equal(a.self.fired, 1);
    assert_int_equal(kept.fired, 1);
    assert_int_equal(same.fired, 0);
    assert_int_equal(later.fired, 0);
    assert_false(irp_timer_active(&same.timer));
    assert_false(irp_timer_active(&later.timer));
    log_free();
}

static void test_clock_stop_from_callback_virtual(void **state)
{
    fixture *f = *state;
    run_stop_from_callback(f, make_max(f), 1000);
}

static void test_clock_stop_from_callback_real(void **state)
{
    fixture *f = *state;
    run_stop_from_callback(f, make_real(f), 10);
}

typedef struct periodic {
    irp_timer timer;
    irp_clock *clock;
    int64_t period;
    int runs, want_runs;
    int64_t nows[16];
} periodic;

static void on_periodic(irp_timer *t)
{
    periodic *p = container_of(t, periodic, timer);
    p->nows[p->runs++] = irp_clock_now_ms(p->clock);
    if (p->runs < p->want_runs && irp_timer_start(p->clock, t, p->period, on_periodic) != 0)
        p->runs = -1000;
}

static void test_clock_periodic_restart_self_virtual(void **state)
{
    fixture *f = *state;
    periodic p = { .period = 250, .want_runs = 10 };

    p.clock = make_max(f);
    assert_int_equal(irp_timer_start(p.clock, &p.timer, p.period, on_periodic), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);

    assert_int_equal(p.runs, 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(p.nows[i], (i + 1) * 250);
    assert_false(irp_timer_active(&p.timer));
}

static void test_clock_periodic_restart_self_real(void **state)
{
    fixture *f = *state;
    periodic p = { .period = 10, .want_runs = 5 };
    int64_t start;

    p.clock = make_real(f);
    start = irp_clock_now_ms(p.clock);
    assert_int_equal(irp_timer_start(p.clock, &p.timer, p.period, on_periodic), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);

    assert_int_equal(p.runs, 5);
    assert_true(p.nows[0] - start >= 10);
    for (int i = 1; i < 5; i++)
        assert_true(p.nows[i] - p.nows[i - 1] >= 10);
}

typedef struct spawner {
    probe self;
    probe *child;
} spawner;

static void on_spawner(irp_timer *t)
{
    spawner *s = container_of(t, spawner, self.timer);
    on_probe(t);
    probe_start(s->self.clock, s->child, 0);
}

/* A timer started with no delay by a callback fires at the same instant,
 * after every timer of the batch that was already pending. */
static void test_clock_zero_delay_from_callback_fires_after_batch(void **state)
{
    fixture *f = *state;
    irp_clock *c = make_max(f);
    spawner a = { 0 };
    probe child = { 0 }, b = { 0 }, later = { 0 };

    log_reset(8);
    a.child = &child;
    probe_start_cb(c, &a.self, 100, on_spawner);
    probe_start(c, &b, 100);
    probe_start(c, &later, 101);
    uv_run(&f->loop, UV_RUN_DEFAULT);

    assert_int_equal(g_log.n, 4);
    assert_ptr_equal(g_log.fired[0], &a.self);
    assert_ptr_equal(g_log.fired[1], &b);
    assert_ptr_equal(g_log.fired[2], &child);
    assert_ptr_equal(g_log.fired[3], &later);
    assert_int_equal(child.fired_now, 100);
    log_free();
}

/* ---- a timer that restarts itself at once must not starve the loop -------- */

typedef struct spinner {
    irp_timer timer;
    irp_clock *clock;
    uv_timer_t stop;      /* a plain libuv timer: real I/O */
    long runs;
} spinner;

static void on_spinner(irp_timer *t)
{
    spinner *s = container_of(t, spinner, timer);
    s->runs++;
    irp_timer_start(s->clock, t, 0, on_spinner);
}

static void on_spinner_stop(uv_timer_t *h)
{
    spinner *s = container_of(h, spinner, stop);
    irp_timer_stop(&s->timer);
    uv_close((uv_handle_t *)h, NULL);
}

static void run_spinner(fixture *f, irp_clock *c)
{
    spinner s = { .clock = c };

    assert_int_equal(uv_timer_init(&f->loop, &s.stop), 0);
    assert_int_equal(uv_timer_start(&s.stop, on_spinner_stop, 20, 0), 0);
    assert_int_equal(irp_timer_start(c, &s.timer, 0, on_spinner), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);   /* a hang here fails by timeout */

    assert_true(s.runs > 1);
    assert_false(irp_timer_active(&s.timer));
}

static void test_clock_zero_delay_loop_yields_real(void **state)
{
    fixture *f = *state;
    run_spinner(f, make_real(f));
}

static void test_clock_zero_delay_loop_yields_virtual(void **state)
{
    fixture *f = *state;
    irp_clock *c = make_max(f);
    run_spinner(f, c);
    assert_int_equal(irp_clock_now_ms(c), 0);   /* time never moved */
}

/* ---- virtual time at max speed ------------------------------------------- */

static void count_turn(uv_prepare_t *h)
{
    (*(uint64_t *)h->data)++;
}

/* 72 virtual hours, 100,000 timers: each fires at its exact virtual ms,
 * in far fewer turns of the loop than instants (a turn goes on from
 * instant to instant for up to a millisecond), and the whole run costs
 * well under a second.  Measured in CPU time
 * (user + system, the poll of each loop turn included) so a loaded
 * machine running tests in parallel cannot fail it; real time, which
 * equals it on an idle machine, is printed and only bounded loosely. */
static void test_clock_max_72h_100k_timers_fast_and_exact(void **state)
{
    enum { N = 100000 };
    fixture *f = *state;
    int64_t start_wall = 1694196000000;   /* 2023-09-08T18:00:00Z */
    irp_clock *c;
    probe *p = calloc(N, sizeof *p);
    uint64_t seed = 7, t0, cpu0, took, cpu, turns = 0;
    int64_t last = 0;
    uv_prepare_t turn;

    assert_non_null(p);
    assert_int_equal(uv_prepare_init(&f->loop, &turn), 0);
    turn.data = &turns;
    assert_int_equal(uv_prepare_start(&turn, count_turn), 0);
    uv_unref((uv_handle_t *)&turn);
    assert_int_equal(irp_clock_create_virtual(&f->loop, start_wall, IRP_CLOCK_SPEED_MAX, &f->clock), 0);
    c = f->clock;
    log_reset(N);
    t0 = real_ms();
    cpu0 = cpu_ms();
    for (size_t i = 0; i < N; i++) {
        probe_start(c, &p[i], (int64_t)(rng_next(&seed) % (uint64_t)(72 * HOUR_MS + 1)));
        if (p[i].want_due > last)
            last = p[i].want_due;
    }
    uv_run(&f->loop, UV_RUN_DEFAULT);
    took = real_ms() - t0;
    cpu = cpu_ms() - cpu0;

    assert_int_equal(g_log.n, N);
    assert_log_sorted();
    assert_int_equal(irp_clock_now_ms(c), last);
    assert_int_equal(irp_clock_wall_ms(c), start_wall + last);
    assert_true(last > 71 * HOUR_MS);
    print_message("    100,000 timers over 72 virtual hours: %llu ms CPU, %llu ms real, "
                  "%llu loop turns\n", (unsigned long long)cpu, (unsigned long long)took,
                  (unsigned long long)turns);
    assert_true(turns > 0 && turns < N / 10);
    uv_close((uv_handle_t *)&turn, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);   /* the close, while `turn` exists */
    assert_true((double)cpu < 1000.0 * slowdown());
    assert_true((double)took < 20000.0 * slowdown());
    free(p);
    log_free();
}

typedef struct holder {
    probe self;
    uv_timer_t release;   /* real I/O that ends the hold */
    int holds;            /* how many the callback takes */
    void (*undo)(irp_clock *c);   /* NULL: irp_clock_release */
    size_t fired_at_release;
    int64_t now_at_release;
} holder;

static void on_holder(irp_timer *t)
{
    holder *h = container_of(t, holder, self.timer);
    on_probe(t);
    for (int i = 0; i < h->holds; i++)
        irp_clock_hold(h->self.clock);
}

static void on_release(uv_timer_t *ut)
{
    holder *h = container_of(ut, holder, release);
    h->fired_at_release = g_log.n;
    h->now_at_release = irp_clock_now_ms(h->self.clock);
    (h->undo ? h->undo : irp_clock_release)(h->self.clock);
    if (--h->holds > 0)
        return;   /* the libuv timer repeats until every hold is released */
    uv_close((uv_handle_t *)ut, NULL);
}

/* A callback takes two holds; for 2 x 30 ms of real time nothing else
 * fires (not even a timer of the same instant) and now stands still. */
static void test_clock_hold_blocks_until_release(void **state)
{
    fixture *f = *state;
    irp_clock *c = make_max(f);
    holder h = { .holds = 2 };
    probe same = { 0 }, later = { 0 };
    uint64_t t0 = real_ms();

    log_reset(8);
    probe_start_cb(c, &h.self, 10, on_holder);
    probe_start(c, &same, 10);
    probe_start(c, &later, 20);
    assert_int_equal(uv_timer_init(&f->loop, &h.release), 0);
    assert_int_equal(uv_timer_start(&h.release, on_release, 30, 30), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);

    assert_true(real_ms() - t0 >= 60);
    assert_int_equal(h.holds, 0);
    /* At the last release, only the holder had fired, at 10. */
    assert_int_equal(h.fired_at_release, 1);
    assert_int_equal(h.now_at_release, 10);
    assert_int_equal(g_log.n, 3);
    assert_log_sorted();
    log_free();
}

/* A hold taken before the loop runs keeps every timer from firing. */
static void test_clock_hold_before_run(void **state)
{
    fixture *f = *state;
    irp_clock *c = make_max(f);
    holder h = { .holds = 1 };
    probe p = { 0 };

    log_reset(4);
    h.self.clock = c;
    irp_clock_hold(c);
    probe_start(c, &p, 5);
    assert_int_equal(uv_timer_init(&f->loop, &h.release), 0);
    assert_int_equal(uv_timer_start(&h.release, on_release, 20, 0), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);

    assert_int_equal(h.fired_at_release, 0);
    assert_int_equal(h.now_at_release, 0);
    assert_int_equal(p.fired, 1);
    assert_int_equal(p.fired_now, 5);
    log_free();
}

/* At max speed a pause stops time like a hold. */
static void test_clock_max_pause_blocks_until_resume(void **state)
{
    fixture *f = *state;
    irp_clock *c = make_max(f);
    holder h = { .holds = 1, .undo = irp_clock_resume };
    probe p = { 0 };

    log_reset(4);
    h.self.clock = c;
    irp_clock_pause(c);
    probe_start(c, &p, 5);
    assert_int_equal(uv_timer_init(&f->loop, &h.release), 0);
    assert_int_equal(uv_timer_start(&h.release, on_release, 20, 0), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);

    assert_int_equal(h.fired_at_release, 0);
    assert_int_equal(h.now_at_release, 0);
    assert_int_equal(p.fired, 1);
    assert_int_equal(p.fired_now, 5);
    log_free();
}

/* A real or speed clock counts holds but keeps time. */
static void run_hold_ignored(fixture *f, irp_clock *c, int64_t delay)
{
    probe p = { 0 };

    log_reset(4);
    irp_clock_hold(c);
    probe_start(c, &p, delay);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    irp_clock_release(c);

    assert_int_equal(p.fired, 1);
    assert_true(p.fired_now >= p.want_due);   /* a real loop may be late */
    log_free();
}

static void test_clock_hold_ignored_by_real_clock(void **state)
{
    fixture *f = *state;
    run_hold_ignored(f, make_real(f), 5);
}

static void test_clock_hold_ignored_at_speed(void **state)
{
    fixture *f = *state;
    assert_int_equal(irp_clock_create_virtual(&f->loop, 0, 3600, &f->clock), 0);
    run_hold_ignored(f, f->clock, 100 * 1000);   /* about 28 ms real */
}

/* ---- virtual time at a speed --------------------------------------------- */

static void test_clock_speed_3600_hour_takes_a_second(void **state)
{
    fixture *f = *state;
    int64_t start_wall = 1694196000000;
    irp_clock *c;
    probe p = { 0 };
    uint64_t t0;
    int64_t wall_at_fire;

    log_reset(4);
    t0 = real_ms();
    assert_int_equal(irp_clock_create_virtual(&f->loop, start_wall, 3600, &f->clock), 0);
    c = f->clock;
    probe_start(c, &p, HOUR_MS);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    wall_at_fire = start_wall + p.fired_now;

    assert_int_equal(p.fired, 1);
    assert_int_equal(p.fired_now, HOUR_MS);
    assert_int_equal(wall_at_fire, start_wall + HOUR_MS);
    print_message("    1 virtual hour at speed 3600: %llu ms real\n",
                  (unsigned long long)(p.fired_real - t0));
    assert_true(p.fired_real - t0 >= 700);
    assert_true(p.fired_real - t0 <= 2500);
    assert_true(irp_clock_now_ms(c) >= HOUR_MS);
    log_free();
}

typedef struct pauser {
    irp_clock *clock;
    uv_timer_t ut;
    int step;
    int64_t now_at_pause, now_at_resume;
    uint64_t real_at_pause, real_at_resume;
} pauser;

/* Real 200 ms: pause; real 700 ms: resume. */
static void on_pauser(uv_timer_t *ut)
{
    pauser *s = container_of(ut, pauser, ut);
    if (s->step++ == 0) {
        irp_clock_pause(s->clock);
        s->now_at_pause = irp_clock_now_ms(s->clock);
        s->real_at_pause = real_ms();
        return;
    }
    uv_update_time(ut->loop);   /* so "now" is read after the pause */
    s->now_at_resume = irp_clock_now_ms(s->clock);
    s->real_at_resume = real_ms();
    irp_clock_resume(s->clock);
    uv_close((uv_handle_t *)ut, NULL);
}

/* Half a second paused pushes the 1-hour timer half a second later, and
 * virtual time does not move while paused. */
static void test_clock_speed_pause_resume_shifts_timer(void **state)
{
    fixture *f = *state;
    pauser s = { 0 };
    probe p = { 0 };
    uint64_t t0, paused;

    log_reset(4);
    t0 = real_ms();
    assert_int_equal(irp_clock_create_virtual(&f->loop, 0, 3600, &f->clock), 0);
    s.clock = f->clock;
    probe_start(s.clock, &p, HOUR_MS);
    assert_int_equal(uv_timer_init(&f->loop, &s.ut), 0);
    assert_int_equal(uv_timer_start(&s.ut, on_pauser, 200, 500), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    paused = s.real_at_resume - s.real_at_pause;

    assert_int_equal(s.step, 2);
    assert_int_equal(p.fired, 1);
    assert_int_equal(p.fired_now, HOUR_MS);
    assert_int_equal(s.now_at_resume, s.now_at_pause);
    assert_true(s.now_at_pause >= 100 * 3600);   /* ran 200 ms before */
    assert_true(paused >= 450);
    print_message("    paused %llu ms; 1 virtual hour took %llu ms real\n",
                  (unsigned long long)paused, (unsigned long long)(p.fired_real - t0));
    /* About 1 s of running time plus the pause. */
    assert_true(p.fired_real - t0 >= 700 + paused);
    assert_true(p.fired_real - t0 <= 2500 + paused);
    log_free();
}

/* ---- real time ----------------------------------------------------------- */

static void test_clock_real_50ms_after_50ms(void **state)
{
    fixture *f = *state;
    irp_clock *c = make_real(f);
    probe p = { 0 };
    uint64_t t0;
    int64_t now0;

    log_reset(4);
    /* Read before the loop's time is: libuv truncates to whole ms. */
    t0 = real_ms();
    uv_update_time(&f->loop);
    now0 = irp_clock_now_ms(c);
    probe_start(c, &p, 50);
    uv_run(&f->loop, UV_RUN_DEFAULT);

    assert_int_equal(p.fired, 1);
    assert_true(p.fired_now - now0 >= 50);
    /* The clock's own monotonic time is exact; against uv_hrtime() allow
     * one ms, as libuv reads CLOCK_MONOTONIC_COARSE where its tick is 1 ms. */
    assert_true(p.fired_real - t0 >= 49);
    assert_true(p.fired_real - t0 < 1000);
    log_free();
}

static void test_clock_real_wall_is_utc_now(void **state)
{
    fixture *f = *state;
    irp_clock *c = make_real(f);
    int64_t wall = irp_clock_wall_ms(c);
    int64_t sys = (int64_t)time(NULL) * 1000;

    assert_false(irp_clock_is_virtual(c));
    assert_true(wall >= sys - 2000 && wall <= sys + 2000);
}

/* ---- wall time in virtual mode ------------------------------------------- */

typedef struct wall_probe {
    probe self;
    int64_t wall;
} wall_probe;

static void on_wall_probe(irp_timer *t)
{
    wall_probe *w = container_of(t, wall_probe, self.timer);
    on_probe(t);
    w->wall = irp_clock_wall_ms(w->self.clock);
}

static void test_clock_virtual_wall_is_start_plus_elapsed(void **state)
{
    static const char start_text[] = "2023-09-08T18:00:00Z";
    fixture *f = *state;
    int64_t start;
    irp_clock *c;
    wall_probe a = { 0 }, b = { 0 };

    log_reset(4);
    assert_int_equal(irp_time_parse(start_text, sizeof start_text - 1, &start), 0);
    assert_int_equal(irp_clock_create_virtual(&f->loop, start, IRP_CLOCK_SPEED_MAX, &f->clock), 0);
    c = f->clock;
    assert_true(irp_clock_is_virtual(c));
    assert_int_equal(irp_clock_now_ms(c), 0);
    assert_int_equal(irp_clock_wall_ms(c), start);
    probe_start_cb(c, &a.self, 30 * 60 * 1000, on_wall_probe);
    probe_start_cb(c, &b.self, 72 * HOUR_MS + 1, on_wall_probe);
    uv_run(&f->loop, UV_RUN_DEFAULT);

    assert_int_equal(a.wall, start + 30 * 60 * 1000);
    assert_int_equal(b.wall, start + 72 * HOUR_MS + 1);
    assert_int_equal(irp_clock_wall_ms(c), start + 72 * HOUR_MS + 1);
    log_free();
}

/* ---- closing ------------------------------------------------------------- */

/* Closing with timers armed: none fires, all read inactive, stopping them
 * afterwards is harmless, and every handle and byte is released. */
static void run_close_with_armed(fixture *f, irp_clock *c)
{
    enum { N = 300 };
    probe *p = calloc(N, sizeof *p);

    assert_non_null(p);
    log_reset(N);
    for (size_t i = 0; i < N; i++)
        probe_start(c, &p[i], (int64_t)(i % 3) * 5);
    irp_clock_close(c);
    f->clock = NULL;
    uv_run(&f->loop, UV_RUN_DEFAULT);

    assert_int_equal(g_log.n, 0);
    for (size_t i = 0; i < N; i++) {
        assert_false(irp_timer_active(&p[i].timer));
        irp_timer_stop(&p[i].timer);
    }
    free(p);
    log_free();
}

static void test_clock_close_with_timers_armed_real(void **state)
{
    fixture *f = *state;
    run_close_with_armed(f, make_real(f));
}

static void test_clock_close_with_timers_armed_speed(void **state)
{
    fixture *f = *state;
    assert_int_equal(irp_clock_create_virtual(&f->loop, 0, 60, &f->clock), 0);
    run_close_with_armed(f, f->clock);
}

static void test_clock_close_with_timers_armed_max(void **state)
{
    fixture *f = *state;
    run_close_with_armed(f, make_max(f));
}

typedef struct closer {
    probe self;
    fixture *f;
} closer;

static void on_closer(irp_timer *t)
{
    closer *k = container_of(t, closer, self.timer);
    on_probe(t);
    irp_clock_close(k->f->clock);
    k->f->clock = NULL;
}

/* A callback closes the clock: the rest of its batch and later timers
 * never fire, and the loop ends with nothing left open. */
static void run_close_from_callback(fixture *f, irp_clock *c, int64_t unit)
{
    closer k = { .f = f };
    probe same = { 0 }, later = { 0 };

    log_reset(4);
    probe_start_cb(c, &k.self, unit, on_closer);
    probe_start(c, &same, unit);
    probe_start(c, &later, 2 * unit);
    uv_run(&f->loop, UV_RUN_DEFAULT);

    assert_int_equal(g_log.n, 1);
    assert_int_equal(k.self.fired, 1);
    assert_false(irp_timer_active(&same.timer));
    assert_false(irp_timer_active(&later.timer));
    log_free();
}

static void test_clock_close_from_callback_max(void **state)
{
    fixture *f = *state;
    run_close_from_callback(f, make_max(f), 100);
}

static void test_clock_close_from_callback_real(void **state)
{
    fixture *f = *state;
    run_close_from_callback(f, make_real(f), 5);
}

/* ---- arguments ----------------------------------------------------------- */

static void test_clock_rejects_bad_arguments(void **state)
{
    fixture *f = *state;
    irp_clock *c = NULL;
    probe p = { 0 };

    assert_int_equal(irp_clock_create_virtual(&f->loop, 0, -1, &c), IRP_EINVAL);
    assert_int_equal(irp_clock_create_virtual(&f->loop, 0, NAN, &c), IRP_EINVAL);
    assert_int_equal(irp_clock_create_virtual(&f->loop, 0, 2e6, &c), IRP_ERANGE);
    assert_null(c);

    c = make_max(f);
    log_reset(4);
    probe_start(c, &p, 1000);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    /* now is 1000: this due would overflow */
    assert_int_equal(irp_timer_start(c, &p.timer, INT64_MAX - 10, on_probe), IRP_ERANGE);
    assert_false(irp_timer_active(&p.timer));
    assert_int_equal(irp_timer_start(c, &p.timer, 5, NULL), IRP_EINVAL);
    /* A negative delay is due at once. */
    assert_int_equal(irp_timer_start(c, &p.timer, -500, on_probe), 0);
    assert_int_equal(irp_timer_due(&p.timer), 1000);
    assert_int_equal(irp_clock_reserve(c, IRP_CLOCK_MAX_TIMERS + 1), IRP_ELIMIT);
    assert_int_equal(irp_clock_reserve(c, 1000), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(p.fired, 2);
    assert_int_equal(p.fired_now, 1000);
    log_free();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_clock_heap_order_random_timers),
        T(test_clock_restart_moves_timer),
        T(test_clock_stop_from_callback_virtual),
        T(test_clock_stop_from_callback_real),
        T(test_clock_periodic_restart_self_virtual),
        T(test_clock_periodic_restart_self_real),
        T(test_clock_zero_delay_from_callback_fires_after_batch),
        T(test_clock_zero_delay_loop_yields_real),
        T(test_clock_zero_delay_loop_yields_virtual),
        T(test_clock_max_72h_100k_timers_fast_and_exact),
        T(test_clock_hold_blocks_until_release),
        T(test_clock_hold_before_run),
        T(test_clock_max_pause_blocks_until_resume),
        T(test_clock_hold_ignored_by_real_clock),
        T(test_clock_hold_ignored_at_speed),
        T(test_clock_speed_3600_hour_takes_a_second),
        T(test_clock_speed_pause_resume_shifts_timer),
        T(test_clock_real_50ms_after_50ms),
        T(test_clock_real_wall_is_utc_now),
        T(test_clock_virtual_wall_is_start_plus_elapsed),
        T(test_clock_close_with_timers_armed_real),
        T(test_clock_close_with_timers_armed_speed),
        T(test_clock_close_with_timers_armed_max),
        T(test_clock_close_from_callback_max),
        T(test_clock_close_from_callback_real),
        T(test_clock_rejects_bad_arguments),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
