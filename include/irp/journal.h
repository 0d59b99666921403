/* irp — the journal: an append-only, hash-chained JSON Lines file.
 *
 * Every line is one compact JSON object written with jansson, UTF-8 as is
 * (no \u escapes for non-ASCII).  The journal adds `seq` (from 1) and
 * `prev` (SHA-256 hex of the previous line's bytes without its newline;
 * 64 zeros for the first) to each event it appends; the caller supplies
 * everything else (`ts`, `wall`, `event`, ...).  The head is the SHA-256
 * of the last line.
 *
 * Key order of a line is fixed: `seq` first, then the caller's keys in the
 * order the caller inserted them, then `prev` last:
 *
 *     {"seq":7,"ts":"...","wall":"...","event":"step.started",...,"prev":"9f2c..."}
 *
 * so a person reading the file sees what happened before the hash.
 *
 * Concurrency: every append, from the runner or from `irp note` / `irp
 * answer` in another process, holds an exclusive flock() on the file,
 * re-reads the tail if another writer added lines since this handle last
 * looked, writes one whole line with one write() (retrying short writes,
 * truncating back on failure), and unlocks.  The chain stays whole.
 * flock() belongs to the open file, so two handles in one process exclude
 * each other too; the descriptor is close-on-exec.
 *
 * Durability: irp_journal_append() does not fsync.  irp_journal_sync()
 * makes every line appended so far durable.  irp_journal_sync_async()
 * fsyncs on libuv's thread pool and calls back once every line up to
 * `seq` is on disk; lines appended while an fsync runs are covered by
 * the next one, queued at the end of the loop's turn beside the one in
 * flight (up to three; the fsyncs themselves one at a time, results taken
 * in the order the rounds started), so
 * events close together share one fsync.  The first sync of
 * a journal made by irp_journal_create() also fsyncs its directory, so
 * the new file's name survives a crash.  A failed fsync is sticky: the
 * kernel may have dropped the dirty pages, so no later sync on this
 * handle reports success (PostgreSQL's "fsyncgate" lesson).
 *
 * All functions run on one thread (the loop's, when sync_async is used).
 */
#ifndef IRP_JOURNAL_H
#define IRP_JOURNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define IRP_SHA256_HEX 65    /* 64 hex digits and a NUL */

/* Longest line, without its newline, that is written or read. */
#define IRP_JOURNAL_MAX_LINE ((size_t)16 << 20)

typedef struct irp_journal irp_journal;
struct irp_event;   /* irp/event.h */

/* Create a new journal file (mode 0600).  IRP_EEXISTS if the path
 * exists.  The file is made under a temporary name beside it and takes
 * `path` with its first line, so no other process opens it empty; a
 * journal closed before any line leaves no file.  An append that finds
 * the name taken by then fails with IRP_EEXISTS.  Caller closes it with
 * irp_journal_close(). */
int irp_journal_create(const char *path, irp_journal **out);

/* What opening an existing journal found. */
typedef struct irp_journal_open_info {
    uint64_t lines;          /* whole lines in the chain */
    bool dropped_partial;    /* a last line without newline was cut off */
    size_t dropped_bytes;
} irp_journal_open_info;

/* Open an existing journal for appending (resume, note, answer): read it
 * under the lock, verify the chain, and with `repair` truncate a last line
 * cut off mid-write (reported in *info, which may be NULL).  Without
 * `repair` such a line is IRP_ECORRUPT ("line N: cut off mid-write ...").
 * Any other damage is IRP_ECORRUPT, a line over IRP_JOURNAL_MAX_LINE is
 * IRP_ELIMIT, each with a message in err (may be NULL) naming the line.
 * Nothing counts as durable until the handle's first sync. */
int irp_journal_open(const char *path, bool repair, irp_journal **out,
                     irp_journal_open_info *info, char *err, size_t errlen);

/* Release the journal; NULL is fine.  Safe while a sync_async is pending:
 * the handle then lives until that fsync finishes, and on the loop thread
 * its waiters get their callbacks (0 for lines it covered, IRP_ECANCELED
 * for the rest) before the file is closed and the memory freed.  So keep
 * running the loop until it has no more work before uv_loop_close(). */
void irp_journal_close(irp_journal *j);

/* Append one event, a JSON object the caller still owns (the journal
 * keeps no reference): the line written is `ev` with "seq" and "prev"
 * added (see the key order above), and *seq (may be NULL) is set to its
 * number.
 *   IRP_EINVAL    ev is not an object, has a "seq" or "prev" key, or holds
 *                 a string that is not UTF-8
 *   IRP_ELIMIT    the line would exceed IRP_JOURNAL_MAX_LINE
 *   IRP_ECORRUPT  lines another writer added do not continue the chain,
 *                 or the file shrank under this handle
 *   IRP_ENOSPC / IRP_EIO  the line could not be written whole (the file is
 *                 truncated back; the chain is intact)
 * A last line without newline found under the lock was left by a writer
 * that died inside write(), before anyone was told of the line; it is cut
 * off and the new line takes its place. */
int irp_journal_append(irp_journal *j, json_t *ev, uint64_t *seq);
/* The same for an event that may be fields (irp/event.h): the line holds
 * them in their order, and the tap is handed ev itself. */
int irp_journal_append_event(irp_journal *j, struct irp_event *ev, uint64_t *seq);

/* fsync now; every line appended so far is durable when it returns 0. */
int irp_journal_sync(irp_journal *j);

typedef void (*irp_journal_sync_cb)(void *arg, int status);
/* Call cb(arg, 0) once every line up to `seq` is durable (on a later loop
 * turn, never inside this call, if it already is), or cb(arg, IRP_E*) if
 * fsync failed.  At most one fsync runs at a time, on the loop's thread
 * pool; callbacks that complete together run in seq order (ties in the
 * order asked).  IRP_EINVAL when seq > irp_journal_seq(j), cb is NULL, or
 * the journal was used with another loop before. */
int irp_journal_sync_async(irp_journal *j, uv_loop_t *loop, uint64_t seq,
                           irp_journal_sync_cb cb, void *arg);

/* Batch appends.  Lines then go to a buffer and are written together,
 * under one lock, when 256 KiB are pending, after the first has waited
 * (a timer on `loop`), and at irp_journal_flush, sync, sync_async (an
 * action waiting for its line writes the batch first), is_durable with
 * durability off, refresh and close.  How long a line may wait:
 *   IRP_BATCH_TURN  until the loop next waits (a timer of 0): a run's,
 *                   durable or not;
 *   IRP_BATCH_LAZY  with durability off, 20 ms, and the batch is hashed
 *                   and written on a thread the handle starts for it: a
 *                   simulation's, whose lines are many and whose actions
 *                   are not real.  With durability on, as TURN.
 * A process that writes to the journal meanwhile (`irp note`, `irp
 * answer`) is not held up: its lines come first, and the batch is
 * chained after them (so the seq an append returned may grow).
 * A lazy batch's lines carry their prev only once its thread has
 * chained them; head, seq, flush, sync, refresh and close wait for it.
 * It writes only while the file ends where it left it: lines another
 * process wrote meanwhile stop it, and the calling thread chains the
 * waiting batches after them at its next hand-over or wait.
 * A batch that cannot be written fails the next append (and flush and
 * sync) with its error.  Turning durability on or off flushes.  Close
 * the handle before the loop's last run, which then frees it.
 * IRP_EINVAL for a second call or another mode. */
typedef enum { IRP_BATCH_TURN, IRP_BATCH_LAZY } irp_batch_mode;
int irp_journal_set_batch(irp_journal *j, uv_loop_t *loop, irp_batch_mode mode);
/* Write the pending batch now.  0 when nothing is pending. */
int irp_journal_flush(irp_journal *j);

/* Whether every line up to `seq` is durable now, so the caller may act
 * at once instead of waiting for a sync_async round: true when an fsync
 * already covered it, or when durability is off (each line then counts as
 * durable once written, and a batch pending is written first, but for a
 * lazy one).  false after an fsync failed: sync_async reports
 * that error. */
bool irp_journal_is_durable(irp_journal *j, uint64_t seq);

/* Called with each line this handle appends, from inside the append
 * (batched too), and with each line another process appended that this
 * handle catches up with, in journal order: for its own lines `line` is
 * the event as given to append (without seq and prev; fields stay
 * fields), for the others' the whole line parsed.  Borrowed for the
 * call (json_incref irp_event_json(line) to keep it).  The lock may be held during the call, so fn must not touch the
 * journal.  A non-zero return is remembered and reported by
 * irp_journal_tap_error() (the journal itself carries on), and the tap
 * is not called again.  So is IRP_EBUSY when another process's lines
 * land before a batch the tap has already seen (the tap no longer has
 * the file's order), and a batch's error when it could not be written:
 * read the journal back instead.  fn NULL removes the tap. */
typedef int (*irp_journal_tap_fn)(void *ctx, struct irp_event *line);
void irp_journal_set_tap(irp_journal *j, irp_journal_tap_fn fn, void *ctx);
int irp_journal_tap_error(const irp_journal *j);

/* Events other processes append to a live run's journal (`irp answer`):
 * lines whose `event` equals `event` are kept as this handle catches up
 * with the file (at every append, and at irp_journal_refresh), and handed
 * over by irp_journal_refresh -- never from inside an append, where the
 * lock is held.  One event name per handle; the name is copied. */
int irp_journal_watch(irp_journal *j, const char *event);
typedef void (*irp_journal_event_fn)(void *ctx, const json_t *ev);
/* Catch up with lines others appended (under the lock), then call fn for
 * each watched event kept since the last call, in journal order. */
int irp_journal_refresh(irp_journal *j, irp_journal_event_fn fn, void *ctx);

/* Turn durability off (benchmarks measuring what fsync costs; a
 * simulation, whose actions are not real): syncs then succeed without
 * calling fsync and count every line as durable.  Turned back on, the
 * next sync is a real fsync of every line. */
void irp_journal_set_fsync(irp_journal *j, bool on);

/* SHA-256 hex of the last line, or 64 zeros when empty; borrowed.  With
 * a writer thread (irp_journal_set_batch), once it has written every
 * line appended. */
const char *irp_journal_head(irp_journal *j);
/* seq of the last line this handle wrote or has seen (likewise). */
uint64_t irp_journal_seq(irp_journal *j);
uint64_t irp_journal_durable_seq(const irp_journal *j);

/* ---- reading (resume, verify, status, report) ---------------------- */

typedef struct irp_journal_line {
    uint64_t lineno;         /* 1-based line number in the file */
    const char *text;        /* the line without its newline; borrowed */
    size_t len;
    json_t *ev;              /* parsed; borrowed for the callback */
    char hash[IRP_SHA256_HEX];
} irp_journal_line;

/* Calls fn (may be NULL: only verify) for each whole line in order,
 * checking the chain (`seq` consecutive from 1, `prev` equal to the
 * previous line's hash, valid JSON object).  Streams: holds one line in
 * memory at a time, at most IRP_JOURNAL_MAX_LINE (a longer one is
 * IRP_ELIMIT).  Takes no lock.  A last line without a newline is ignored
 * (reported in *partial, which may be NULL).  Stops at the first damaged
 * line: returns IRP_ECORRUPT with err = "line N: what is wrong".  A
 * non-zero return from fn stops the read and is returned. */
typedef int (*irp_journal_line_fn)(void *ctx, const irp_journal_line *line);
int irp_journal_read(const char *path, irp_journal_line_fn fn, void *ctx, bool *partial,
                     char *err, size_t errlen);

/* SHA-256 of buf, the 32 bytes; IRP_ENOMEM (OpenSSL out of memory). */
#define IRP_SHA256_LEN 32
int irp_sha256(const void *buf, size_t len, unsigned char out[IRP_SHA256_LEN]);

/* SHA-256 of buf as 64 lowercase hex digits.  OpenSSL fails here only when
 * out of memory; out is then "" so it matches no hash. */
void irp_sha256_hex(const void *buf, size_t len, char out[IRP_SHA256_HEX]);

/* ---- for tests and benchmarks ---------------------------------------- */

/* How many times this handle has called fsync on the file. */
uint64_t irp_journal_fsync_count(const irp_journal *j);
/* Make the next fsync on this handle fail with `err` (an IRP_E* code),
 * as a disk error would. */
void irp_journal_inject_fsync_error(irp_journal *j, int err);

#endif
