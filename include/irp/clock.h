/* irp — the clock: "now" and timers, real or virtual, behind one interface.
 *
 * The engine asks only this module what time it is and to be called back
 * later, so `run` (real time) and `simulate` (virtual time) share every
 * line of the engine.  A clock has two timelines:
 *
 *   now   irp_clock_now_ms(): milliseconds on a monotonic timeline, for
 *         durations, timeouts and timers.  Its origin means nothing; only
 *         differences do.  It never goes backwards.
 *   wall  irp_clock_wall_ms(): UTC milliseconds since 1970 (timeutil.h),
 *         for the `ts` of records and nothing else.
 *
 * Kinds:
 *
 *   real     now is libuv's loop time (uv_now: CLOCK_MONOTONIC, read once
 *            per loop turn); wall is CLOCK_REALTIME.  One uv_timer_t is
 *            armed for the earliest pending irp_timer.
 *   virtual  now starts at 0 and is moved by the clock; wall is the
 *            scenario start plus now, exactly.  Two speeds:
 *     speed X  X virtual seconds per real second: now follows the loop's
 *            monotonic time since the clock was made, minus the time spent
 *            paused, times X -- except that it never passes a timer that
 *            is due and has not fired yet, so every timer fires with now
 *            equal to its due time, exactly.
 *     max      now jumps from timer to timer.  The rule ("the idle rule"):
 *            at the end of a loop turn (a uv_check handle, after the poll
 *            for I/O), if the clock is neither held nor paused and a timer
 *            is pending, now moves to the earliest due time and the timers
 *            due at that instant fire in start order -- those started
 *            before this firing began; one started by a callback for the
 *            same instant fires in the next turn, at the same instant.  A
 *            uv_idle handle is active exactly while that condition holds,
 *            so the poll does not block and real I/O (a signal, a key, a
 *            finished fsync) is serviced between any two instants: one
 *            instant per loop turn, each costing one non-blocking poll.
 *            While the clock is held or paused no timer fires, now does
 *            not move and the clock keeps no handle active: the loop
 *            blocks on the real work it waits for (or uv_run() returns,
 *            if there is none -- a hold nobody will release).
 *
 * On every kind, timers due together fire in start order, and a timer
 * started by a callback while a batch fires waits for the next loop turn,
 * so a timer that restarts itself with no delay cannot starve the loop.
 *
 * Why max is deterministic: the engine holds the clock for every piece of
 * real work it waits on (a journal fsync, an open prompt), so a real
 * completion is always seen at the virtual instant the work began, however
 * long it took.  Time moves only when nothing is held, and then to a point
 * fixed by the timers alone; timers at one instant fire in start order,
 * and start order follows from the callbacks that ran before.  The same
 * inputs therefore give the same sequence of (now, callback), whatever the
 * machine's speed.
 *
 * Timer callbacks run only from the loop, never from inside
 * irp_timer_start() or any other call here, and may start or stop any
 * timer of the clock, themselves included, and close the clock.
 *
 * Everything here runs on the loop's thread.  The clock borrows the loop,
 * which must outlive it.
 */
#ifndef IRP_CLOCK_H
#define IRP_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct irp_clock irp_clock;
typedef struct irp_timer irp_timer;

typedef void (*irp_timer_cb)(irp_timer *t);

/* A timer lives inside the struct that owns it (get back with
 * container_of, or set `data`).  An all-zero irp_timer is a valid,
 * inactive timer, so a calloc'd owner needs no init call.  Only `data` is
 * the owner's to write; the rest belongs to the clock while the timer is
 * active.  The owner must stop an active timer before freeing it. */
struct irp_timer {
    int64_t due;          /* on the clock's `now` timeline */
    uint64_t seq;         /* start order: breaks ties between equal dues */
    size_t heap_pos;      /* 1 + index in the clock's heap; 0: inactive */
    irp_clock *clock;     /* set while active */
    irp_timer_cb cb;
    void *data;           /* the owner's; never touched by the clock */
};

/* Speed of a virtual clock that jumps from event to event (`--speed max`). */
#define IRP_CLOCK_SPEED_MAX 0.0
/* Highest virtual speed accepted, in virtual seconds per real second. */
#define IRP_CLOCK_SPEED_LIMIT 1e6
/* Most timers active at once on one clock (the heap is a bounded buffer). */
#define IRP_CLOCK_MAX_TIMERS ((size_t)1 << 24)

/* Make a real clock on `loop`.  IRP_ENOMEM, or a libuv failure converted.
 * Caller closes it with irp_clock_close(). */
int irp_clock_create_real(uv_loop_t *loop, irp_clock **out);

/* Make a virtual clock on `loop` whose now is 0 and whose wall time is
 * `start_wall_ms` (UTC ms).  `speed` is IRP_CLOCK_SPEED_MAX or a finite
 * number of virtual seconds per real second in (0, IRP_CLOCK_SPEED_LIMIT]
 * (IRP_EINVAL, IRP_ERANGE otherwise).  A speed clock starts counting real
 * time now (it updates the loop's time once, so a loop made long ago does
 * not give it a head start).  Caller closes it with irp_clock_close(). */
int irp_clock_create_virtual(uv_loop_t *loop, int64_t start_wall_ms, double speed,
                             irp_clock **out);

/* Close the clock; NULL is fine.  Every active timer becomes inactive
 * without firing (irp_timer_stop on it stays a no-op), so owners may be
 * freed in any order afterwards.  The memory is freed by the close
 * callbacks of the clock's uv handles: run the loop before
 * uv_loop_close().  Safe from inside a timer callback; `c` must not be
 * used after this call. */
void irp_clock_close(irp_clock *c);

bool irp_clock_is_virtual(const irp_clock *c);

/* Now on the monotonic (real) or virtual timeline, in ms; see above.
 * Inside a timer callback of a virtual clock, exactly the timer's due
 * time.  Not const: a speed clock caches what it last returned so that
 * now never goes backwards. */
int64_t irp_clock_now_ms(irp_clock *c);

/* UTC ms for records: CLOCK_REALTIME on a real clock, the scenario start
 * plus now on a virtual one. */
int64_t irp_clock_wall_ms(irp_clock *c);

/* Hold a max-speed clock while waiting for something real (a journal
 * fsync, an open prompt): no timer fires and now does not move until every
 * hold is released.  Counted: each hold needs one release.  On a real or
 * speed-X clock a hold is counted and has no other effect (time there runs
 * on regardless), so the engine may hold whatever the mode. */
void irp_clock_hold(irp_clock *c);
void irp_clock_release(irp_clock *c);

/* Pause a virtual clock (the facilitator's key): now freezes at the value
 * it had and no timer fires until every pause is resumed; on resume
 * virtual time continues from there, so pending timers shift by the real
 * time spent paused.  Counted like hold.  No effect on a real clock. */
void irp_clock_pause(irp_clock *c);
void irp_clock_resume(irp_clock *c);

/* Make room for `n` active timers, so that starting that many cannot fail.
 * IRP_ENOMEM, IRP_ELIMIT above IRP_CLOCK_MAX_TIMERS. */
int irp_clock_reserve(irp_clock *c, size_t n);

/* Arm `t` to call `cb` once, `delay_ms` after now (a negative delay is 0:
 * due at once, e.g. a deadline that passed while irp was not running).
 * An active timer is stopped first, so starting it again moves it (and
 * it then counts as started last among equal dues).  `t->data` is kept.
 * Returns 0; IRP_EINVAL for a NULL clock or callback or a closed clock;
 * IRP_ERANGE when now + delay_ms overflows; IRP_ENOMEM or
 * IRP_ELIMIT when the heap must grow and cannot.  The heap never shrinks,
 * so that happens only when more timers are active than ever before on
 * this clock and than irp_clock_reserve() made room for (restarting an
 * active timer never does).  On error `t` is inactive. */
int irp_timer_start(irp_clock *c, irp_timer *t, int64_t delay_ms, irp_timer_cb cb);

/* Disarm `t`; a no-op when it is inactive (fired, stopped, never started,
 * or its clock was closed). */
void irp_timer_stop(irp_timer *t);

/* True from irp_timer_start() until it fires (false inside its own
 * callback, unless restarted there), is stopped, or its clock is closed. */
bool irp_timer_active(const irp_timer *t);

/* Due time of an active timer on its clock's `now` timeline. */
int64_t irp_timer_due(const irp_timer *t);

#endif
