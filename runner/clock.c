/* irp — the clock (see include/irp/clock.h for the contract).
 *
 * Pending timers sit in one binary min-heap of pointers ordered by
 * (due, seq): finding the next timer is O(1), starting and stopping one
 * O(log n), so a playbook with 100,000 instances never scans a list (the
 * Redis ae.c mistake).  Each timer knows its place in the heap, which is
 * what makes stopping an arbitrary timer cheap.
 *
 * Three uv handles, embedded here, drive every kind of clock:
 *
 *   step  a uv_check handle, always active but unreferenced (it must not
 *         keep the loop alive by itself).  Check handles run after the
 *         poll for I/O, so the I/O that poll found is handled before any
 *         timer fires.  All timer callbacks run from it, and only when
 *         `spin` is active.
 *   spin  a uv_idle handle with an empty callback.  An active idle handle
 *         makes libuv poll with a zero timeout and keeps the loop alive:
 *         it is active exactly when a timer may fire at the end of this
 *         turn ("fire now").
 *   wake  a uv_timer_t for the real and speed clocks, armed for the real
 *         moment the earliest timer falls due; its callback starts `spin`.
 *
 * Timers started by a callback while others fire wait for the next batch
 * (those with seq >= the batch's limit), so a timer that restarts itself
 * with no delay gives the loop a turn instead of starving it (libuv
 * 1.44's own timers would run it again and again within one turn) -- at
 * max speed after at most a millisecond of batches (fire_due).
 */
#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>

#include "irp/clock.h"
#include "irp/error.h"

#define container_of(ptr, type, member) \
    ((type *)((char *)(ptr) - offsetof(type, member)))

#define HEAP_FIRST_CAP ((size_t)64)
/* Longest real wait armed at once (about 35 years): a far-off virtual
 * timer at a slow speed would overflow the arithmetic; waking early only
 * means looking again. */
#define WAKE_MAX ((uint64_t)1 << 40)

typedef enum { KIND_REAL, KIND_SPEED, KIND_MAX } clock_kind;

struct irp_clock {
    uv_loop_t *loop;          /* borrowed */
    uv_check_t step;          /* see the top of this file */
    uv_idle_t spin;
    uv_timer_t wake;
    int open_handles;         /* the struct is freed when this reaches 0 */
    clock_kind kind;
    double speed;             /* speed: virtual ms per real ms */
    int64_t start_wall;       /* virtual: wall time when now is 0 */
    int64_t now;              /* virtual: the last now handed out */
    int64_t base_v;           /* speed: virtual time at loop time base_r; */
    uint64_t base_r;          /*   while paused, where time stopped */
    unsigned holds;
    unsigned pauses;
    uint64_t next_seq;
    irp_timer **heap;         /* heap[0] is the next timer to fire */
    size_t n, cap;
    bool firing;              /* inside fire_due(): rearm once at its end */
    bool closing;
};

/* ---- the heap ---------------------------------------------------------- */

static bool timer_before(const irp_timer *a, const irp_timer *b)
{
    if (a->due != b->due)
        return a->due < b->due;
    return a->seq < b->seq;
}

static irp_timer *heap_min(const irp_clock *c)
{
    return c->n ? c->heap[0] : NULL;
}

static void heap_put(irp_clock *c, size_t i, irp_timer *t)
{
    c->heap[i] = t;
    t->heap_pos = i + 1;
}

static void heap_up(irp_clock *c, size_t i)
{
    irp_timer *t = c->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, c->heap[parent]))
            break;
        heap_put(c, i, c->heap[parent]);
        i = parent;
    }
    heap_put(c, i, t);
}

static void heap_down(irp_clock *c, size_t i)
{
    irp_timer *t = c->heap[i];

    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= c->n)
            break;
        if (child + 1 < c->n && timer_before(c->heap[child + 1], c->heap[child]))
            child++;
        if (!timer_before(c->heap[child], t))
            break;
        heap_put(c, i, c->heap[child]);
        i = child;
    }
    heap_put(c, i, t);
}

static int heap_reserve(irp_clock *c, size_t need)
{
    size_t cap = c->cap ? c->cap : HEAP_FIRST_CAP;
    irp_timer **heap;

    if (need <= c->cap)
        return 0;
    if (need > IRP_CLOCK_MAX_TIMERS)
        return IRP_ELIMIT;
    while (cap < need)
        cap *= 2;
    if (cap > IRP_CLOCK_MAX_TIMERS)
        cap = IRP_CLOCK_MAX_TIMERS;
    heap = realloc(c->heap, cap * sizeof *heap);
    if (!heap)
        return IRP_ENOMEM;
    c->heap = heap;
    c->cap = cap;
    return 0;
}

static void heap_insert(irp_clock *c, irp_timer *t)
{
    heap_put(c, c->n++, t);
    heap_up(c, c->n - 1);
}

/* Take `t` out; the last leaf fills its place and moves whichever way the
 * order asks. */
static void heap_remove(irp_clock *c, irp_timer *t)
{
    size_t i = t->heap_pos - 1;
    irp_timer *last = c->heap[--c->n];

    t->heap_pos = 0;
    t->clock = NULL;
    if (last == t)
        return;
    heap_put(c, i, last);
    if (i > 0 && timer_before(last, c->heap[(i - 1) / 2]))
        heap_up(c, i);
    else
        heap_down(c, i);
}

/* ---- time ---------------------------------------------------------------- */

static bool is_virtual(const irp_clock *c)
{
    return c->kind != KIND_REAL;
}

/* No timer fires and virtual time stands still.  Holds stop only a max
 * clock: at speed X time runs on while the engine waits, as it would in
 * the room. */
static bool frozen(const irp_clock *c)
{
    if (!is_virtual(c))
        return false;
    return c->pauses > 0 || (c->kind == KIND_MAX && c->holds > 0);
}

/* Where a running speed clock's virtual time is at loop time `r`. */
static int64_t speed_at(const irp_clock *c, uint64_t r)
{
    return c->base_v + (int64_t)((double)(r - c->base_r) * c->speed);
}

/* The speed clock's time by real time alone, before clamping to the next
 * timer.  Loop time, so it is read once per loop turn. */
static int64_t speed_target(const irp_clock *c)
{
    if (c->pauses)
        return c->base_v;
    return speed_at(c, uv_now(c->loop));
}

/* Move a speed clock's now to its target, but never past a pending timer,
 * so that timer still fires with now equal to its due time. */
static void speed_refresh(irp_clock *c)
{
    int64_t t = speed_target(c);
    const irp_timer *next = heap_min(c);

    if (next && next->due < t)
        t = next->due;
    if (t > c->now)
        c->now = t;
}

/* Real ms from this loop turn until the speed clock reaches `due`, which
 * is past its target. */
static uint64_t speed_wait(const irp_clock *c, int64_t due)
{
    uint64_t now_r = uv_now(c->loop);
    double q = ceil((double)(due - c->base_v) / c->speed);
    uint64_t r;

    if (q >= (double)WAKE_MAX)
        return WAKE_MAX;
    r = c->base_r + (uint64_t)q;
    /* ceil() of a rounded quotient may fall a ms short of speed_at(). */
    while (speed_at(c, r) < due)
        r++;
    return r > now_r ? r - now_r : 1;
}

/* ---- driving the loop --------------------------------------------------- */

/* The latest due time that may fire at the end of this turn; false when
 * nothing may. */
static bool fire_horizon(irp_clock *c, int64_t *horizon)
{
    const irp_timer *next = heap_min(c);

    if (!next || frozen(c))
        return false;
    switch (c->kind) {
    case KIND_REAL:
        *horizon = (int64_t)uv_now(c->loop);
        break;
    case KIND_SPEED:
        *horizon = speed_target(c);
        break;
    case KIND_MAX:
        *horizon = next->due;   /* the idle rule: jump to the next instant */
        break;
    default:
        return false;   /* no other kind; says so to -O3's flow analysis */
    }
    return next->due <= *horizon;
}

static void on_spin(uv_idle_t *h)
{
    (void)h;   /* being active is its whole job */
}

static void on_wake(uv_timer_t *h)
{
    irp_clock *c = container_of(h, irp_clock, wake);

    uv_idle_start(&c->spin, on_spin);   /* fire in this turn's check phase */
}

/* Arm the handles for the earliest timer.  Called after anything that can
 * change it: the heap's first timer, a hold, a pause, a batch fired. */
static void clock_rearm(irp_clock *c)
{
    int64_t horizon;
    const irp_timer *next;

    if (c->firing || c->closing)
        return;
    if (fire_horizon(c, &horizon)) {
        uv_timer_stop(&c->wake);
        uv_idle_start(&c->spin, on_spin);
        return;
    }
    uv_idle_stop(&c->spin);
    next = heap_min(c);
    if (!next || frozen(c) || c->kind == KIND_MAX) {
        uv_timer_stop(&c->wake);
        return;
    }
    if (c->kind == KIND_REAL)
        uv_timer_start(&c->wake, on_wake, (uint64_t)(next->due - (int64_t)uv_now(c->loop)), 0);
    else
        uv_timer_start(&c->wake, on_wake, speed_wait(c, next->due), 0);
}

/* Fire, in (due, seq) order, the timers due by the horizon that were
 * started before this batch (seq below limit). */
static void fire_batch(irp_clock *c, int64_t horizon, uint64_t limit)
{
    irp_timer *t;

    while (!c->closing && !frozen(c) && (t = heap_min(c)) != NULL
           && t->due <= horizon && t->seq < limit) {
        heap_remove(c, t);
        if (is_virtual(c))
            c->now = t->due;
        t->cb(t);
    }
}

/* Fire what is due.  A callback may hold, pause or close the clock,
 * which stops the batch at once.
 *
 * At max speed one turn of the loop goes on from instant to instant for
 * up to MAX_TURN_NS of real time: a turn per instant made an exercise of
 * 100,000 steps poll for I/O 100,000 times with nothing to read.  Nothing
 * but this clock moves the engine at max speed -- a question, a pause or
 * a sync to wait for holds or pauses the clock, which ends the turn -- so
 * the journal is the same either way; Ctrl-C, a key or an answer still
 * get a turn within a millisecond.  A timer that restarts itself with no
 * delay waits for the next batch, so it cannot keep the turn forever. */
#define MAX_TURN_NS ((uint64_t)1000000)

static void fire_due(irp_clock *c)
{
    int64_t horizon;
    uint64_t t0 = 0;

    if (!fire_horizon(c, &horizon)) {
        clock_rearm(c);
        return;
    }
    c->firing = true;
    do {
        fire_batch(c, horizon, c->next_seq);
        if (c->kind != KIND_MAX || c->closing)
            break;
        if (!t0)
            t0 = uv_hrtime();
        else if (uv_hrtime() - t0 >= MAX_TURN_NS)
            break;
    } while (fire_horizon(c, &horizon));
    c->firing = false;
    if (c->closing)
        return;   /* the memory lives until the close callbacks */
    if (c->kind == KIND_SPEED)
        speed_refresh(c);
    clock_rearm(c);
}

static void on_step(uv_check_t *h)
{
    irp_clock *c = container_of(h, irp_clock, step);

    if (uv_is_active((uv_handle_t *)&c->spin))
        fire_due(c);
}

/* ---- life cycle ---------------------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
    irp_clock *c = h->data;

    if (--c->open_handles == 0) {
        free(c->heap);
        free(c);
    }
}

static void clock_close_handles(irp_clock *c)
{
    uv_handle_t *h[] = { (uv_handle_t *)&c->step, (uv_handle_t *)&c->spin,
                         (uv_handle_t *)&c->wake };

    c->closing = true;
    if (c->open_handles == 0) {
        free(c->heap);
        free(c);
        return;
    }
    for (int i = 0; i < c->open_handles; i++) {
        h[i]->data = c;
        uv_close(h[i], on_closed);
    }
}

/* Init the handles in the order clock_close_handles() closes them.  On
 * unix none of these inits can fail, but if one ever did, the handles
 * made so far are closed and the memory freed once the loop runs. */
static int clock_init_handles(irp_clock *c)
{
    int rc = uv_check_init(c->loop, &c->step);

    if (rc == 0) {
        c->open_handles++;
        rc = uv_idle_init(c->loop, &c->spin);
    }
    if (rc == 0) {
        c->open_handles++;
        rc = uv_timer_init(c->loop, &c->wake);
    }
    if (rc == 0) {
        c->open_handles++;
        rc = uv_check_start(&c->step, on_step);
    }
    if (rc != 0) {
        clock_close_handles(c);
        return irp_err_from_errno(-rc);
    }
    uv_unref((uv_handle_t *)&c->step);
    return 0;
}

static int clock_new(uv_loop_t *loop, clock_kind kind, irp_clock **out)
{
    irp_clock *c;
    int rc;

    *out = NULL;
    if (!loop)
        return IRP_EINVAL;
    c = calloc(1, sizeof *c);
    if (!c)
        return IRP_ENOMEM;
    c->loop = loop;
    c->kind = kind;
    rc = clock_init_handles(c);
    if (rc == 0)
        *out = c;
    return rc;
}

int irp_clock_create_real(uv_loop_t *loop, irp_clock **out)
{
    return clock_new(loop, KIND_REAL, out);
}

int irp_clock_create_virtual(uv_loop_t *loop, int64_t start_wall_ms, double speed,
                             irp_clock **out)
{
    clock_kind kind = speed == IRP_CLOCK_SPEED_MAX ? KIND_MAX : KIND_SPEED;
    int rc;

    *out = NULL;
    if (!isfinite(speed) || speed < 0)
        return IRP_EINVAL;
    if (speed > IRP_CLOCK_SPEED_LIMIT)
        return IRP_ERANGE;
    rc = clock_new(loop, kind, out);
    if (rc != 0)
        return rc;
    (*out)->start_wall = start_wall_ms;
    (*out)->speed = speed;
    /* The loop's time may be as old as its last turn, or its init; a stale
     * base would hand the exercise a jump of (staleness x speed). */
    uv_update_time(loop);
    (*out)->base_r = uv_now(loop);
    return 0;
}

void irp_clock_close(irp_clock *c)
{
    if (!c || c->closing)
        return;
    /* Detach every timer so its owner may stop or free it later. */
    for (size_t i = 0; i < c->n; i++) {
        c->heap[i]->heap_pos = 0;
        c->heap[i]->clock = NULL;
    }
    c->n = 0;
    clock_close_handles(c);
}

/* ---- reading the time ---------------------------------------------------- */

bool irp_clock_is_virtual(const irp_clock *c)
{
    return is_virtual(c);
}

int64_t irp_clock_now_ms(irp_clock *c)
{
    switch (c->kind) {
    case KIND_REAL:
        return (int64_t)uv_now(c->loop);
    case KIND_SPEED:
        /* While a batch fires, now is the firing timer's due time. */
        if (!c->firing)
            speed_refresh(c);
        return c->now;
    case KIND_MAX:
        break;
    }
    return c->now;
}

int64_t irp_clock_wall_ms(irp_clock *c)
{
    struct timespec ts;

    if (is_virtual(c))
        return c->start_wall + irp_clock_now_ms(c);
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- holding and pausing ------------------------------------------------- */

void irp_clock_hold(irp_clock *c)
{
    c->holds++;
    clock_rearm(c);
}

void irp_clock_release(irp_clock *c)
{
    assert(c->holds > 0);
    if (c->holds == 0)
        return;
    c->holds--;
    clock_rearm(c);
}

void irp_clock_pause(irp_clock *c)
{
    /* Freeze the speed clock at the now its callers last saw (inside a
     * callback, the firing timer's due time), so a pause never moves it. */
    if (c->kind == KIND_SPEED && c->pauses == 0)
        c->base_v = irp_clock_now_ms(c);
    c->pauses++;
    clock_rearm(c);
}

void irp_clock_resume(irp_clock *c)
{
    assert(c->pauses > 0);
    if (c->pauses == 0)
        return;
    /* Count real time again from this turn, from where it stopped. */
    if (--c->pauses == 0 && c->kind == KIND_SPEED)
        c->base_r = uv_now(c->loop);
    clock_rearm(c);
}

/* ---- timers -------------------------------------------------------------- */

int irp_clock_reserve(irp_clock *c, size_t n)
{
    return heap_reserve(c, n);
}

int irp_timer_start(irp_clock *c, irp_timer *t, int64_t delay_ms, irp_timer_cb cb)
{
    int64_t now;
    int rc;

    irp_timer_stop(t);
    if (!c || !cb || c->closing)
        return IRP_EINVAL;
    if (delay_ms < 0)
        delay_ms = 0;
    now = irp_clock_now_ms(c);
    if (delay_ms > INT64_MAX - now)
        return IRP_ERANGE;
    rc = heap_reserve(c, c->n + 1);
    if (rc != 0)
        return rc;
    t->due = now + delay_ms;
    t->seq = c->next_seq++;
    t->cb = cb;
    t->clock = c;
    heap_insert(c, t);
    if (t->heap_pos == 1)
        clock_rearm(c);
    return 0;
}

void irp_timer_stop(irp_timer *t)
{
    irp_clock *c = t->clock;
    bool was_next = t->heap_pos == 1;

    if (t->heap_pos == 0)
        return;
    heap_remove(c, t);
    if (was_next)
        clock_rearm(c);
}

bool irp_timer_active(const irp_timer *t)
{
    return t->heap_pos != 0;
}

int64_t irp_timer_due(const irp_timer *t)
{
    return t->due;
}
