/* irp — the journal (see include/irp/journal.h for the contract).
 *
 * Writing follows Redis's aof.c: one record per write(), short and
 * interrupted writes retried, a record that could not be written whole
 * truncated away, fsync batched off the loop thread.  Reading streams the
 * file through a bounded line buffer, so a journal of any size costs one
 * line of memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "irp/error.h"
#include "irp/event.h"
#include "irp/journal.h"
#include "irp/jsonutil.h"
#include "thread.h"

#define SHA256_LEN IRP_SHA256_LEN
#define READ_CHUNK ((size_t)64 << 10)

/* ---- hashing --------------------------------------------------------- */

/* EVP_sha256() makes OpenSSL look the algorithm up again at every digest
 * -- a third of hashing a journal line; it is fetched once instead.  And
 * EVP_Digest allocates and frees a context per call, as much work again
 * for a line of 300 bytes: each thread keeps one and reuses it. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static pthread_key_t sha256_key;
static bool sha256_key_ok;

static void free_ctx(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static void fetch_sha256(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    sha256_key_ok = pthread_key_create(&sha256_key, free_ctx) == 0;
}

static EVP_MD_CTX *thread_ctx(void)
{
    EVP_MD_CTX *ctx = pthread_getspecific(sha256_key);

    if (!ctx && (ctx = EVP_MD_CTX_new()) != NULL && pthread_setspecific(sha256_key, ctx) != 0) {
        EVP_MD_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

int irp_sha256(const void *buf, size_t len, unsigned char out[IRP_SHA256_LEN])
{
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx;

    pthread_once(&sha256_once, fetch_sha256);
    /* With the default provider, SHA-256 fails only when out of memory. */
    if (!sha256_md || !sha256_key_ok || !(ctx = thread_ctx()))
        return IRP_ENOMEM;
    if (EVP_DigestInit_ex2(ctx, sha256_md, NULL) != 1 || EVP_DigestUpdate(ctx, buf, len) != 1 ||
        EVP_DigestFinal_ex(ctx, out, &mdlen) != 1 || mdlen != SHA256_LEN)
        return IRP_ENOMEM;
    return 0;
}

static int sha256_hex(const void *buf, size_t len, char out[IRP_SHA256_HEX])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[SHA256_LEN];

    out[0] = '\0';
    if (irp_sha256(buf, len, md) < 0)
        return IRP_ENOMEM;
    for (unsigned int i = 0; i < SHA256_LEN; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[2 * SHA256_LEN] = '\0';
    return 0;
}

void irp_sha256_hex(const void *buf, size_t len, char out[IRP_SHA256_HEX])
{
    (void)sha256_hex(buf, len, out);
}

/* ---- messages -------------------------------------------------------- */

static int line_error(char *err, size_t errlen, int rc, uint64_t lineno, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* err = "line N: <fmt>"; returns rc so callers can `return line_error(...)`. */
static int line_error(char *err, size_t errlen, int rc, uint64_t lineno, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!err || errlen == 0)
        return rc;
    n = snprintf(err, errlen, "line %" PRIu64 ": ", lineno);
    if (n < 0 || (size_t)n >= errlen)
        return rc;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return rc;
}

static void sys_error(char *err, size_t errlen, int errnum)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", strerror(errnum));
}

/* ---- bounded line reader --------------------------------------------- */

/* Reads with pread() from an explicit offset, so it neither depends on nor
 * moves the descriptor's position (the write side uses O_APPEND). */
typedef struct line_reader {
    int fd;
    off_t off;       /* file offset of buf[0] */
    char *buf;
    size_t cap;
    size_t start;    /* first byte not yet returned */
    size_t end;      /* bytes held */
    size_t scan;     /* bytes after start known to hold no newline */
    bool eof;
} line_reader;

static void reader_init(line_reader *r, int fd, off_t off)
{
    memset(r, 0, sizeof *r);
    r->fd = fd;
    r->off = off;
}

static void reader_release(line_reader *r)
{
    free(r->buf);
    r->buf = NULL;
}

static int reader_grow(line_reader *r)
{
    size_t cap = r->cap ? r->cap * 2 : READ_CHUNK;
    char *buf;

    /* A whole longest line and its newline fit; nothing more is needed. */
    if (cap > IRP_JOURNAL_MAX_LINE + 1)
        cap = IRP_JOURNAL_MAX_LINE + 1;
    buf = realloc(r->buf, cap);
    if (!buf)
        return IRP_ENOMEM;
    r->buf = buf;
    r->cap = cap;
    return 0;
}

/* Keep the unfinished line, make room, read more.  IRP_ELIMIT once the
 * bytes still waiting for a newline are longer than any line may be. */
static int reader_fill(line_reader *r)
{
    size_t pending = r->end - r->start;
    ssize_t n;
    int rc;

    if (pending > IRP_JOURNAL_MAX_LINE)
        return IRP_ELIMIT;
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, pending);
        r->off += (off_t)r->start;
        r->start = 0;
        r->end = pending;
    }
    if (r->end == r->cap && (rc = reader_grow(r)) < 0)
        return rc;
    do
        n = pread(r->fd, r->buf + r->end, r->cap - r->end, r->off + (off_t)r->end);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return irp_err_from_errno(errno);
    if (n == 0)
        r->eof = true;
    r->end += (size_t)n;
    return 0;
}

/* 1 and the next line without its newline (valid until the next call);
 * 0 at the end of the file, with *tail = the length of a last line that
 * has no newline; or a negative IRP_E*. */
static int reader_next(line_reader *r, const char **text, size_t *len, size_t *tail)
{
    for (;;) {
        size_t avail = r->end - r->start - r->scan;
        char *nl = avail ? memchr(r->buf + r->start + r->scan, '\n', avail) : NULL;
        int rc;

        if (nl) {
            *text = r->buf + r->start;
            *len = (size_t)(nl - *text);
            r->start += *len + 1;
            r->scan = 0;
            return 1;
        }
        r->scan = r->end - r->start;
        if (r->eof) {
            *tail = r->end - r->start;
            return 0;
        }
        if ((rc = reader_fill(r)) < 0)
            return rc;
    }
}

/* ---- the chain -------------------------------------------------------- */

typedef struct chain {
    uint64_t n;                  /* lines checked; also the last one's seq */
    char head[IRP_SHA256_HEX];   /* hash of line n; 64 zeros when n == 0 */
} chain;

static void chain_init(chain *c)
{
    c->n = 0;
    memset(c->head, '0', IRP_SHA256_HEX - 1);
    c->head[IRP_SHA256_HEX - 1] = '\0';
}

static int check_seq(const chain *c, json_t *ev, char *err, size_t errlen)
{
    uint64_t want = c->n + 1;
    json_t *seq = json_object_get(ev, "seq");
    json_int_t got;

    if (!json_is_integer(seq))
        return line_error(err, errlen, IRP_ECORRUPT, want, "seq is missing or not an integer");
    got = json_integer_value(seq);
    if (got < 0 || (uint64_t)got != want)
        return line_error(err, errlen, IRP_ECORRUPT, want,
                          "seq is %" JSON_INTEGER_FORMAT ", expected %" PRIu64, got, want);
    return 0;
}

static int check_prev(const chain *c, json_t *ev, char *err, size_t errlen)
{
    uint64_t lineno = c->n + 1;
    json_t *prev = json_object_get(ev, "prev");

    if (!json_is_string(prev))
        return line_error(err, errlen, IRP_ECORRUPT, lineno, "prev is missing or not a string");
    if (json_string_length(prev) == IRP_SHA256_HEX - 1 &&
        memcmp(json_string_value(prev), c->head, IRP_SHA256_HEX - 1) == 0)
        return 0;
    if (c->n == 0)
        return line_error(err, errlen, IRP_ECORRUPT, lineno,
                          "prev is not 64 zeros, as the first line's must be");
    return line_error(err, errlen, IRP_ECORRUPT, lineno,
                      "prev does not match the hash of line %" PRIu64, c->n);
}

/* Check that `text` is the line after c's last and take it into c.  The
 * parsed object goes to *out (caller decrefs) when out is not NULL. */
static int chain_next(chain *c, const char *text, size_t len, json_t **out,
                      char *err, size_t errlen)
{
    uint64_t lineno = c->n + 1;
    char hash[IRP_SHA256_HEX];
    json_error_t jerr;
    json_t *ev;
    int rc;

    /* JSON_ALLOW_NUL: the writer escapes NUL inside strings as \u0000, so
     * the reader must take it back.  Duplicate keys would make a line mean
     * two things; refuse them. */
    ev = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!ev) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return IRP_ENOMEM;
        return line_error(err, errlen, IRP_ECORRUPT, lineno, "not valid JSON: %s", jerr.text);
    }
    rc = json_is_object(ev) ? 0
                            : line_error(err, errlen, IRP_ECORRUPT, lineno, "not a JSON object");
    if (rc == 0)
        rc = check_seq(c, ev, err, errlen);
    if (rc == 0)
        rc = check_prev(c, ev, err, errlen);
    if (rc == 0)
        rc = sha256_hex(text, len, hash);
    if (rc < 0 || !out)
        json_decref(ev);
    if (rc < 0)
        return rc;
    c->n = lineno;
    memcpy(c->head, hash, sizeof hash);
    if (out)
        *out = ev;
    return 0;
}

/* Read whole lines to the end of the file, each continuing chain c, and
 * hand each to fn (may be NULL).  *end advances past every line that
 * chained; *tail is the length of a last line without newline. */
static int walk(line_reader *r, chain *c, off_t *end, size_t *tail,
                irp_journal_line_fn fn, void *ctx, char *err, size_t errlen)
{
    irp_journal_line line;
    int rc;

    *tail = 0;
    while ((rc = reader_next(r, &line.text, &line.len, tail)) > 0) {
        rc = chain_next(c, line.text, line.len, &line.ev, err, errlen);
        if (rc < 0)
            return rc;
        *end += (off_t)line.len + 1;
        line.lineno = c->n;
        memcpy(line.hash, c->head, sizeof line.hash);
        rc = fn ? fn(ctx, &line) : 0;
        json_decref(line.ev);
        if (rc != 0)
            return rc;
    }
    if (rc == IRP_ELIMIT)
        line_error(err, errlen, rc, c->n + 1, "longer than %zu MiB", IRP_JOURNAL_MAX_LINE >> 20);
    return rc;
}

/* ---- the handle -------------------------------------------------------- */

/* What an fsync round does: nothing (already durable, or a sticky error),
 * a real fsync, or — durability turned off — only count lines durable. */
enum sync_mode { SYNC_NONE, SYNC_FSYNC, SYNC_PRETEND };

typedef struct sync_waiter {
    struct sync_waiter *next;
    uint64_t seq;
    irp_journal_sync_cb cb;
    void *arg;
} sync_waiter;

/* One fsync round on the thread pool: the pool thread reads fd, dir and
 * the fields set before the work was queued, and writes status, read
 * after it is done. */
typedef struct sync_round {
    uv_work_t work;
    struct irp_journal *j;
    enum sync_mode mode;
    bool dir;
    bool done;
    unsigned gen;             /* j->fsync_gen when it started */
    int inject;
    uint64_t target;
    int status;
} sync_round;

/* Rounds at once.  A line appended while a round runs may miss the
 * filesystem's commit that round waits for; a round of its own, started
 * at once, joins the next commit as soon as the filesystem starts it,
 * instead of after the running round has come back through the loop.
 * With two steps running side by side, most starts wait for one commit
 * instead of the rest of one and then another. */
#define SYNC_ROUNDS 3

struct irp_journal {
    int fd;                  /* O_RDWR | O_APPEND | O_CLOEXEC */
    char *dir;               /* the file's directory; never changes */
    bool dir_pending;        /* created here: fsync dir with the first fsync */
    char *tmp_path;          /* created here, no line written yet: the file's */
    char *path;              /* temporary name, and the name it gets (publish) */
    chain ch;                /* the file's lines as far as this handle knows */
    off_t size;              /* end of line ch.n: the file's size if no one else wrote */
    bool fsync_on;
    uint64_t durable;
    int sync_err;            /* first fsync failure; sticky */
    pthread_mutex_t sync_mu; /* one fsync at a time (do_sync), and: */
    int fsync_failed;        /* a failure any fsync saw; under sync_mu */
    unsigned fsync_gen;      /* counts set_fsync(true) after false */
    int inject_err;          /* tests: next fsync fails with this */
    uint64_t fsync_count;

    /* sync_async, all on the loop thread but for the rounds' pool work.
     * Rounds are a ring in the order started, and their results are taken
     * in that order: a round that failed voids every later one, which may
     * have "succeeded" only because the failure was reported to it. */
    uv_loop_t *loop;
    sync_round rounds[SYNC_ROUNDS];
    unsigned round_first, rounds_busy;
    uv_timer_t syncer;       /* starts a round alongside at the turn's end */
    unsigned handles_open;   /* flusher and syncer, until their close */
    bool syncer_open;
    sync_waiter *waiters;    /* sorted by seq, ties in the order asked */
    bool dispatching;        /* inside callbacks: close() must not free */
    char *watch;             /* irp_journal_watch: event name, or NULL */
    json_t *foreign;         /* watched events others wrote, not yet handed over */
    irp_journal_tap_fn tap;  /* irp_journal_set_tap */
    void *tap_ctx;
    int tap_err;             /* the tap's first non-zero return */
    irp_json_buf line;       /* the line being formatted; reused */

    /* irp_journal_set_batch: lines appended but not yet written, as one
     * buffer of text with where each line begins (to chain them again if
     * another process wrote in between), and the chain as it was before
     * the first. */
    bool batch;
    bool lazy;               /* IRP_BATCH_LAZY */
    uv_timer_t flusher;      /* writes the batch 0 or BATCH_MS after its first line */
    bool flusher_open;
    size_t *pend;            /* offsets in pbuf */
    size_t n_pend, cap_pend;
    char *pbuf;
    size_t pbuf_len, pbuf_cap;
    chain base;
    off_t base_size;
    int batch_err;           /* a failed flush; sticky */
    bool closing;            /* close() was called; free when idle */

    /* A lazy batch (a simulation's) with durability off: the pending
     * lines are chained, hashed and written on a thread of their own
     * (jwriter below), and the lines in
     * pbuf carry a placeholder for their prev.  While batches are with
     * it, ch.n counts the lines formatted and ch.head is stale: whatever
     * reads the chain or the file first waits for it (drain). */
    bool unhashed;           /* the pending lines' prev is not filled in */
    bool handed;             /* batches went to the writer since it drained */
    struct jwriter *w;       /* the thread, once started; or NULL */
};

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static irp_journal *journal_new(const char *path)
{
    irp_journal *j = calloc(1, sizeof *j);

    if (!j)
        return NULL;
    j->fd = -1;
    j->fsync_on = true;
    chain_init(&j->ch);
    j->dir = dir_of(path);
    if (!j->dir || pthread_mutex_init(&j->sync_mu, NULL) != 0) {
        free(j->dir);
        free(j);
        return NULL;
    }
    return j;
}

static void writer_stop(irp_journal *j);

static void journal_free(irp_journal *j)
{
    writer_stop(j);
    /* Waiters exist only while an fsync round is running or dispatching,
     * and close() defers to the end of those; nothing is left here. */
    if (j->fd >= 0)
        close(j->fd);
    /* Created and never written: no journal, not an empty one. */
    if (j->tmp_path)
        (void)unlink(j->tmp_path);
    free(j->tmp_path);
    free(j->path);
    free(j->dir);
    pthread_mutex_destroy(&j->sync_mu);
    free(j->watch);
    json_decref(j->foreign);
    free(j->line.p);
    free(j->pend);
    free(j->pbuf);
    free(j);
}

/* ---- file primitives --------------------------------------------------- */

static int lock_file(int fd, int op)
{
    int rc;

    do
        rc = flock(fd, op);
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? irp_err_from_errno(errno) : 0;
}

static int truncate_to(int fd, off_t size)
{
    int rc;

    do
        rc = ftruncate(fd, size);
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? irp_err_from_errno(errno) : 0;
}

/* The header promises ENOSPC or EIO for a line that could not be written. */
static int write_error(int errnum)
{
    return irp_err_from_errno(errnum) == IRP_ENOSPC ? IRP_ENOSPC : IRP_EIO;
}

/* One buffer, one write(); a regular file may still take it in pieces
 * (a full disk, a signal, RLIMIT_FSIZE), so keep going until done. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return write_error(errno);
        if (n == 0)
            return IRP_EIO;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* fdatasync, as Redis's aof.c uses on Linux: it flushes the file size with
 * the data (needed to read the data back) and skips only timestamps; an
 * append changes the size, so it is exactly as safe as fsync here. */
static int sync_fd(int fd)
{
    int rc;

    do
#ifdef __linux__
        rc = fdatasync(fd);
#else
        rc = fsync(fd);
#endif
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? irp_err_from_errno(errno) : 0;
}

/* A new file's name is durable only once its directory is synced. */
static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return irp_err_from_errno(errno);
    do
        rc = fsync(fd);
    while (rc < 0 && errno == EINTR);
    rc = rc < 0 ? irp_err_from_errno(errno) : 0;
    close(fd);
    return rc;
}

/* The fsync itself, on the loop thread or a pool thread; it reads only
 * what cannot change while it runs.  One at a time: Linux reports a
 * writeback error to one fdatasync of an open file, so of two at once the
 * later could get it and the earlier "succeed" on pages that were lost;
 * one after the other, each sees what failed before it returned.  And
 * after any failure, none succeeds (fsync_failed). */
static int do_sync(irp_journal *j, bool dir, int inject)
{
    int rc;

    pthread_mutex_lock(&j->sync_mu);
    rc = j->fsync_failed;
    if (rc == 0) {
        rc = inject ? inject : sync_fd(j->fd);
        if (rc == 0 && dir)
            rc = sync_dir(j->dir);
        if (rc < 0)
            j->fsync_failed = rc;
    }
    pthread_mutex_unlock(&j->sync_mu);
    return rc;
}

/* ---- create, open, close ---------------------------------------------- */

/* A new journal is written under a temporary name in its directory and
 * gets its own with its first line (publish): another process that opens
 * it -- `irp note` the moment a run's directory appears -- never finds it
 * empty, with no run.started to follow.  A crash before the first line
 * leaves only the temporary name behind. */
static int create_unnamed(irp_journal *j, const char *path)
{
    const char *base = strrchr(path, '/');
    struct stat st;

    base = base ? base + 1 : path;
    if (lstat(path, &st) == 0)
        return IRP_EEXISTS;
    if (errno != ENOENT)
        return irp_err_from_errno(errno);
    size_t n = strlen(j->dir) + strlen(base) + 10;
    if (!(j->path = strdup(path)) || !(j->tmp_path = malloc(n)))
        return IRP_ENOMEM;
    snprintf(j->tmp_path, n, "%s/.%s.XXXXXX", j->dir, base);
    j->fd = mkostemp(j->tmp_path, O_APPEND | O_CLOEXEC);     /* mode 0600 */
    if (j->fd < 0) {
        int rc = irp_err_from_errno(errno);
        free(j->tmp_path);
        j->tmp_path = NULL;
        return rc;
    }
    return 0;
}

/* Give the file its name, now that it has lines: link() fails if the name
 * was taken meanwhile, as O_EXCL would have.  The directory's first sync
 * (dir_pending) makes the name durable; it comes after this, since every
 * sync writes the pending lines first.  On the thread that wrote them. */
static int publish(irp_journal *j)
{
    if (!j->tmp_path)
        return 0;
    if (link(j->tmp_path, j->path) < 0)
        return irp_err_from_errno(errno);
    (void)unlink(j->tmp_path);
    free(j->tmp_path);
    j->tmp_path = NULL;
    return 0;
}

int irp_journal_create(const char *path, irp_journal **out)
{
    irp_journal *j;
    int rc;

    if (!out)
        return IRP_EINVAL;
    *out = NULL;
    if (!path)
        return IRP_EINVAL;
    if (!(j = journal_new(path)))
        return IRP_ENOMEM;
    if ((rc = create_unnamed(j, path)) < 0) {
        journal_free(j);
        return rc;
    }
    j->dir_pending = true;
    *out = j;
    return 0;
}

/* Verify the whole file into j; with the lock held. */
static int load(irp_journal *j, bool repair, irp_journal_open_info *info,
                char *err, size_t errlen)
{
    line_reader r;
    size_t tail;
    int rc;

    reader_init(&r, j->fd, 0);
    rc = walk(&r, &j->ch, &j->size, &tail, NULL, NULL, err, errlen);
    reader_release(&r);
    if (rc < 0)
        return rc;
    if (tail > 0 && !repair)
        return line_error(err, errlen, IRP_ECORRUPT, j->ch.n + 1,
                          "cut off mid-write (%zu bytes without a newline at the end)", tail);
    if (tail > 0 && (rc = truncate_to(j->fd, j->size)) < 0) {
        line_error(err, errlen, rc, j->ch.n + 1, "cannot cut off the partial line: %s",
                   irp_strerror(rc));
        return rc;
    }
    if (info) {
        info->lines = j->ch.n;
        info->dropped_partial = tail > 0;
        info->dropped_bytes = tail;
    }
    return 0;
}

int irp_journal_open(const char *path, bool repair, irp_journal **out,
                     irp_journal_open_info *info, char *err, size_t errlen)
{
    irp_journal *j;
    int rc;

    if (info)
        memset(info, 0, sizeof *info);
    if (err && errlen)
        err[0] = '\0';
    if (!out)
        return IRP_EINVAL;
    *out = NULL;
    if (!path)
        return IRP_EINVAL;
    if (!(j = journal_new(path)))
        return IRP_ENOMEM;
    j->fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (j->fd < 0) {
        rc = irp_err_from_errno(errno);
        sys_error(err, errlen, errno);
        journal_free(j);
        return rc;
    }
    /* Under the lock, a last line without newline cannot be a write in
     * progress, only one that died; and no line appears while we read. */
    rc = lock_file(j->fd, LOCK_EX);
    if (rc < 0)
        sys_error(err, errlen, errno);
    if (rc == 0) {
        rc = load(j, repair, info, err, errlen);
        (void)lock_file(j->fd, LOCK_UN);
    }
    if (rc < 0) {
        journal_free(j);
        return rc;
    }
    *out = j;
    return 0;
}

/* The last of the handles' closes and the rounds in flight frees it. */
static void handle_closed(uv_handle_t *h)
{
    irp_journal *j = h->data;

    if (--j->handles_open == 0 && !j->rounds_busy && !j->dispatching)
        journal_free(j);
}

void irp_journal_close(irp_journal *j)
{
    if (!j || j->closing)
        return;
    (void)irp_journal_flush(j);
    /* The pool thread still uses fd, or callbacks are running, or the
     * timers are closing: the last of those frees the handle. */
    if (j->flusher_open || j->syncer_open) {
        j->closing = true;
        if (j->flusher_open)
            uv_close((uv_handle_t *)&j->flusher, handle_closed);
        if (j->syncer_open)
            uv_close((uv_handle_t *)&j->syncer, handle_closed);
        j->flusher_open = j->syncer_open = false;
        return;
    }
    if (j->rounds_busy || j->dispatching) {
        j->closing = true;
        return;
    }
    journal_free(j);
}

/* ---- append ------------------------------------------------------------ */

/* A tap that failed, or lost the journal's order, is told nothing more. */
static void tap(irp_journal *j, irp_event *line)
{
    int rc = j->tap && !j->tap_err ? j->tap(j->tap_ctx, line) : 0;

    if (rc != 0 && !j->tap_err)
        j->tap_err = rc;
}

static int on_foreign(void *ctx, const irp_journal_line *line)
{
    irp_journal *j = ctx;
    const char *name = json_string_value(json_object_get(line->ev, "event"));

    if (j->watch && name && strcmp(name, j->watch) == 0)
        json_array_append(j->foreign, line->ev);
    /* A batch's lines went to the tap as they were appended; another
     * writer's line found when the batch is written comes before them in
     * the file but after them at the tap. */
    if (j->n_pend && j->tap && !j->tap_err)
        j->tap_err = IRP_EBUSY;
    irp_event ev = IRP_EVENT_OF(line->ev);
    tap(j, &ev);
    return 0;
}

/* Another writer may have appended since this handle last looked: take
 * its lines into the chain.  With the lock held. */
static int catch_up(irp_journal *j)
{
    struct stat st;
    line_reader r;
    size_t tail;
    int rc;

    if (fstat(j->fd, &st) < 0)
        return irp_err_from_errno(errno);
    if (st.st_size == j->size)
        return 0;
    if (st.st_size < j->size)
        return IRP_ECORRUPT;    /* someone cut lines this handle has seen */
    reader_init(&r, j->fd, j->size);
    rc = walk(&r, &j->ch, &j->size, &tail, j->watch || j->tap ? on_foreign : NULL, j, NULL, 0);
    reader_release(&r);
    /* Under the lock, a line without newline is from a writer that died
     * inside write(); it never reported the line, so nobody relies on it. */
    if (rc == 0 && tail > 0)
        rc = truncate_to(j->fd, j->size);
    return rc;
}

static int check_event(const irp_event *e)
{
    json_t *ev = e->json;
    if (!ev && e->f)
        return 0;   /* the caller's own keys, none of them seq or prev */
    if (!json_is_object(ev))
        return IRP_EINVAL;
    if (json_object_get(ev, "seq") || json_object_get(ev, "prev"))
        return IRP_EINVAL;
    return 0;
}

/* The next line for ev in j->line: seq first, the caller's keys in their
 * order, prev last, and its '\n' so it goes out in one write(); *len
 * excludes the newline.  Written around ev's own members: a second object
 * holding seq, prev and ev's members cost more than the members' text.
 * ev's keys were checked when they went in (or deliberately not): a
 * string that is not UTF-8 is refused here, as json_dumpb refuses it. */
static int format_line(irp_journal *j, const irp_event *ev, size_t *len)
{
    irp_json_buf *b = &j->line;
    char digits[24], *d = digits + sizeof digits;
    uint64_t seq = j->ch.n + 1;
    int rc;

    do
        *--d = (char)('0' + seq % 10);
    while ((seq /= 10) != 0);
    size_t nd = (size_t)(digits + sizeof digits - d);
    b->len = 0;
    if (irp_json_buf_put(b, "{\"seq\":", 7) || irp_json_buf_put(b, d, nd))
        return IRP_ENOMEM;
    size_t before = b->len;
    if ((rc = irp_json_buf_put(b, ",", 1)) || (rc = irp_event_dump_members(ev, b)))
        return rc;
    if (b->len == before + 1)
        b->len = before;           /* no members: no comma */
    /* ,"prev":"<64 hex>"} (75 bytes) and the newline */
    if (b->len + 75 > IRP_JOURNAL_MAX_LINE)
        return IRP_ELIMIT;
    if (irp_json_buf_put(b, ",\"prev\":\"", 9) || irp_json_buf_put(b, j->ch.head, 64) ||
        irp_json_buf_put(b, "\"}\n", 3))
        return IRP_ENOMEM;
    *len = b->len - 1;
    return 0;
}

/* One whole line or none (Redis flushAppendOnlyFile): a line cut short
 * would break the chain for every later writer, so cut it off again.  If
 * even that fails, the next catch_up finds it without its newline. */
static int write_line(irp_journal *j, const char *buf, size_t len)
{
    int rc = write_all(j->fd, buf, len);

    /* A line the file got but not its name is cut off too: the caller is
     * told it failed, and a later append must not find it. */
    if (rc == 0)
        rc = publish(j);
    if (rc < 0)
        (void)truncate_to(j->fd, j->size);
    return rc;
}

static int append_locked(irp_journal *j, irp_event *ev)
{
    char hash[IRP_SHA256_HEX];
    size_t len;
    int rc;

    if ((rc = format_line(j, ev, &len)) < 0)
        return rc;
    rc = sha256_hex(j->line.p, len, hash);
    if (rc == 0)
        rc = write_line(j, j->line.p, len + 1);
    if (rc == 0) {
        j->ch.n++;
        memcpy(j->ch.head, hash, sizeof hash);
        j->size += (off_t)len + 1;
        tap(j, ev);
    }
    return rc;
}

static int append_pending(irp_journal *j, irp_event *ev);

int irp_journal_append(irp_journal *j, json_t *ev, uint64_t *seq)
{
    irp_event e = IRP_EVENT_OF(ev);
    return irp_journal_append_event(j, &e, seq);
}

int irp_journal_append_event(irp_journal *j, irp_event *ev, uint64_t *seq)
{
    int rc;

    if (!j || j->closing || check_event(ev) < 0)
        return IRP_EINVAL;
    if (j->batch) {
        rc = append_pending(j, ev);
        if (rc == 0 && seq)
            *seq = j->ch.n;
        return rc;
    }
    if ((rc = lock_file(j->fd, LOCK_EX)) < 0)
        return rc;
    rc = catch_up(j);
    if (rc == 0)
        rc = append_locked(j, ev);
    /* An unlock that fails leaves the lock to close(); nothing to undo. */
    (void)lock_file(j->fd, LOCK_UN);
    if (rc == 0 && seq)
        *seq = j->ch.n;
    return rc;
}

/* ---- batches ---------------------------------------------------------- */

/* Lines are written when this much is pending, or when the first has
 * waited this long (ms), whichever comes first.  The timer fires whether
 * the loop spins (a simulation at full speed) or waits (for an answer),
 * so another process sees a line at most this late. */
#define BATCH_BYTES ((size_t)256 * 1024)
#define BATCH_MS 20
/* A batch for the writer thread is bigger: each hand-over may wake it,
 * and a wake-up cost some 50 us on a busy virtual machine. */
#define WRITER_BATCH_BYTES ((size_t)1024 * 1024)

static int pbuf_add(irp_journal *j, const char *text, size_t len)
{
    if (j->pbuf_len + len > j->pbuf_cap) {
        size_t cap = j->pbuf_cap ? j->pbuf_cap : 64 * 1024;
        while (cap < j->pbuf_len + len)
            cap *= 2;
        char *b = realloc(j->pbuf, cap);
        if (!b)
            return IRP_ENOMEM;
        j->pbuf = b;
        j->pbuf_cap = cap;
    }
    memcpy(j->pbuf + j->pbuf_len, text, len);
    j->pbuf_len += len;
    return 0;
}

/* Add the line in j->line (len bytes before its newline) to the pending
 * text as the chain's next: hashed here, or by the writer thread. */
static int pend_text(irp_journal *j, size_t len)
{
    char hash[IRP_SHA256_HEX];
    int rc = j->unhashed ? 0 : sha256_hex(j->line.p, len, hash);

    if (rc == 0)
        rc = pbuf_add(j, j->line.p, len + 1);
    if (rc < 0)
        return rc;
    j->ch.n++;
    if (!j->unhashed)
        memcpy(j->ch.head, hash, sizeof hash);
    j->size += (off_t)len + 1;
    return 0;
}

/* Format ev as the next line of the chain as this handle knows it, into
 * the pending text. */
static int pend_line(irp_journal *j, const irp_event *ev)
{
    size_t len;
    int rc = format_line(j, ev, &len);

    return rc < 0 ? rc : pend_text(j, len);
}

/* The pending line text[0..len) (with its newline) as the next line of
 * the chain: its members as they were, a new seq and prev.  A line is
 * {"seq":N<members>,"prev":"<64 hex>"}\n, as format_line made it. */
enum { LINE_HEAD = 7, LINE_TAIL = 76 };   /* {"seq":  and  ,"prev":"…"}\n */

static int rechain_line(irp_journal *j, const char *text, size_t len)
{
    char digits[24], *d = digits + sizeof digits;
    uint64_t seq = j->ch.n + 1;
    size_t at = LINE_HEAD;

    while (at < len && text[at] >= '0' && text[at] <= '9')
        at++;
    if (len < at + LINE_TAIL)
        return IRP_EINTERNAL;
    do
        *--d = (char)('0' + seq % 10);
    while ((seq /= 10) != 0);
    size_t nd = (size_t)(digits + sizeof digits - d), members = len - LINE_TAIL - at;
    if (LINE_HEAD + nd + members + LINE_TAIL - 1 > IRP_JOURNAL_MAX_LINE)
        return IRP_ELIMIT;
    irp_json_buf *b = &j->line;
    b->len = 0;
    if (irp_json_buf_put(b, text, LINE_HEAD) || irp_json_buf_put(b, d, nd) ||
        irp_json_buf_put(b, text + at, members) || irp_json_buf_put(b, ",\"prev\":\"", 9) ||
        irp_json_buf_put(b, j->ch.head, 64) || irp_json_buf_put(b, "\"}\n", 3))
        return IRP_ENOMEM;
    return pend_text(j, b->len - 1);
}

/* With the lock held: take in what others wrote since the batch began,
 * then write the batch after it, formatted again if there was any (or
 * if `rechain`: its lines were never chained).  On return j->size is
 * where the batch begins in the file. */
static int flush_locked(irp_journal *j, bool rechain)
{
    int rc;

    j->ch = j->base;
    j->size = j->base_size;
    if ((rc = catch_up(j)) < 0)
        return rc;
    if (rechain || j->ch.n != j->base.n) {
        off_t at = j->size;
        char *old = j->pbuf;
        size_t old_len = j->pbuf_len;

        j->pbuf = NULL;
        j->pbuf_len = j->pbuf_cap = 0;
        for (size_t i = 0; i < j->n_pend && rc == 0; i++) {
            size_t start = j->pend[i], end = i + 1 < j->n_pend ? j->pend[i + 1] : old_len;
            j->pend[i] = j->pbuf_len;
            rc = rechain_line(j, old + start, end - start);
        }
        free(old);
        j->size = at;
        if (rc < 0)
            return rc;
    }
    return write_line(j, j->pbuf, j->pbuf_len);
}

/* A batch that could not be written: the tap saw lines the file does not
 * have, and every later append fails. */
static void batch_failed(irp_journal *j, int rc)
{
    if (!j->batch_err)
        j->batch_err = rc;
    if (!j->tap_err)
        j->tap_err = rc;
}

/* Write the pending lines on this thread, chained after whatever is in
 * the file by now. */
static int write_pending(irp_journal *j, bool rechain)
{
    chain after = j->ch;
    off_t after_size = j->size;
    int rc = lock_file(j->fd, LOCK_EX);

    if (rc == 0) {
        rc = flush_locked(j, rechain);
        (void)lock_file(j->fd, LOCK_UN);
    }
    if (rc == 0) {
        if (!rechain && j->ch.n == j->base.n) {     /* nobody else wrote */
            j->ch = after;
            j->size = after_size;
        } else {
            j->size += (off_t)j->pbuf_len;
        }
    } else {
        batch_failed(j, rc);
    }
    j->n_pend = 0;
    j->pbuf_len = 0;
    return rc;
}

/* ---- the writer thread ------------------------------------------------ */

/* A simulation at full speed makes lines as fast as it can format them;
 * hashing and writing them is a fifth of its thread's time.  With
 * durability off, a batch is handed to a thread of the journal's own,
 * which fills in each line's prev, hashes it and writes the batch, while
 * the loop's thread goes on formatting the next.
 *
 * The thread writes only while the file ends where it left it.  When
 * another process has written in between (`irp note`), it stops, and the
 * loop's thread takes the batches back and chains them after those lines
 * itself (take_back): the tap, the watched events and every chain rule
 * stay on one thread, as without the writer. */
typedef struct wbatch {
    struct wbatch *next;
    char *text;               /* lines as format_line made them, prev unset */
    size_t len, cap;
    size_t *at;               /* where each line begins */
    size_t n, cap_at;
    uint64_t first;           /* the seq the first line was formatted with */
} wbatch;

/* Batches queued at most: the loop's thread waits for the writer beyond
 * that, rather than hold every line of a run in memory. */
#define WRITER_QUEUED 4

struct jwriter {
    irp_journal *j;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work;      /* a batch queued, or stopping: for the thread */
    pthread_cond_t done;      /* a batch done, or stalled: for the loop's thread */
    wbatch *queue, **tail;    /* oldest first; the head is the one in hand */
    size_t queued;
    wbatch *spare;
    bool busy;                /* the head is being written */
    bool stop;
    int stall;                /* IRP_EBUSY: another writer came in between;
                                 else a write failed: nothing more is written */
    chain ch;                 /* the file as the thread left it: while busy, */
    off_t size;               /* the thread's; else under mu */
};

/* Fill in each line's prev and hash it, from c on.  A line ends with
 * ,"prev":"<64 hex>"}\n; its hash covers all but the newline. */
static int chain_batch(chain *c, wbatch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        size_t end = i + 1 < b->n ? b->at[i + 1] : b->len;
        char *line = b->text + b->at[i];
        size_t len = end - b->at[i] - 1;

        memcpy(line + len - 66, c->head, 64);
        if (sha256_hex(line, len, c->head) < 0)
            return IRP_ENOMEM;
        c->n++;
    }
    return 0;
}

/* One batch into the file, on the writer's thread: hashed before the
 * lock is taken, written only if nobody else wrote since the last. */
static int write_batch(struct jwriter *w, wbatch *b)
{
    int fd = w->j->fd;
    chain c = w->ch;
    struct stat st;
    int rc;

    if (b->first != c.n + 1)
        return IRP_EBUSY;
    if ((rc = chain_batch(&c, b)) < 0 || (rc = lock_file(fd, LOCK_EX)) < 0)
        return rc;
    if (fstat(fd, &st) < 0)
        rc = irp_err_from_errno(errno);
    else if (st.st_size != w->size)
        rc = IRP_EBUSY;
    else if ((rc = write_all(fd, b->text, b->len)) < 0 || (rc = publish(w->j)) < 0)
        (void)truncate_to(fd, w->size);
    (void)lock_file(fd, LOCK_UN);
    if (rc == 0) {
        /* The run syncs the journal when it ends: writeback started
         * batch by batch leaves that sync little to wait for. */
        (void)sync_file_range(fd, w->size, (off_t)b->len, SYNC_FILE_RANGE_WRITE);
        w->ch = c;
        w->size += (off_t)b->len;
    }
    return rc;
}

static void *writer_main(void *arg)
{
    struct jwriter *w = arg;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        while ((!w->queue || w->stall) && !w->stop)
            pthread_cond_wait(&w->work, &w->mu);
        if (w->stop)
            break;
        wbatch *b = w->queue;
        w->busy = true;
        pthread_mutex_unlock(&w->mu);
        int rc = write_batch(w, b);
        pthread_mutex_lock(&w->mu);
        w->busy = false;
        if (rc < 0) {
            w->stall = rc;
        } else {
            if (!(w->queue = b->next))
                w->tail = &w->queue;
            w->queued--;
            b->n = b->len = 0;
            b->next = w->spare;
            w->spare = b;
        }
        pthread_cond_signal(&w->done);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void wbatch_free(wbatch *b)
{
    while (b) {
        wbatch *next = b->next;
        free(b->text);
        free(b->at);
        free(b);
        b = next;
    }
}

/* The writer, started the first time a batch could use it; false when
 * it cannot be (lines are then hashed and written on the loop's thread). */
static bool writer_ready(irp_journal *j)
{
    if (j->w)
        return true;
    struct jwriter *w = calloc(1, sizeof *w);
    if (!w)
        return false;
    w->j = j;
    w->tail = &w->queue;
    w->ch = j->ch;
    w->size = j->size;
    bool mu = pthread_mutex_init(&w->mu, NULL) == 0;
    bool work = mu && pthread_cond_init(&w->work, NULL) == 0;
    bool done = work && pthread_cond_init(&w->done, NULL) == 0;
    if (done && irp_thread_start(&w->thread, writer_main, w)) {
        j->w = w;
        return true;
    }
    if (done)
        pthread_cond_destroy(&w->done);
    if (work)
        pthread_cond_destroy(&w->work);
    if (mu)
        pthread_mutex_destroy(&w->mu);
    free(w);
    return false;
}

/* Stop the thread; it is idle (drained) or stalled by then. */
static void writer_stop(irp_journal *j)
{
    struct jwriter *w = j->w;

    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    wbatch_free(w->queue);
    wbatch_free(w->spare);
    pthread_cond_destroy(&w->done);
    pthread_cond_destroy(&w->work);
    pthread_mutex_destroy(&w->mu);
    free(w);
    j->w = NULL;
}

/* Swap the pending lines with b's (empty) buffers. */
static void swap_pending(irp_journal *j, wbatch *b)
{
    wbatch t = *b;

    b->text = j->pbuf, b->len = j->pbuf_len, b->cap = j->pbuf_cap;
    b->at = j->pend, b->n = j->n_pend, b->cap_at = j->cap_pend;
    j->pbuf = t.text, j->pbuf_len = t.len, j->pbuf_cap = t.cap;
    j->pend = t.at, j->n_pend = t.n, j->cap_pend = t.cap_at;
}

/* The writer stopped: another process wrote in between, or a write
 * failed.  Take every batch back and, in the first case, chain and write
 * them here after the other lines (which the tap and the watch see as
 * any other writer's lines).  With nothing pending on this thread. */
static void take_back(irp_journal *j)
{
    struct jwriter *w = j->w;

    pthread_mutex_lock(&w->mu);
    while (w->busy)
        pthread_cond_wait(&w->done, &w->mu);
    wbatch *list = w->queue;
    int rc = w->stall;
    w->queue = NULL;
    w->tail = &w->queue;
    w->queued = 0;
    w->stall = 0;
    j->ch = w->ch;
    j->size = w->size;
    pthread_mutex_unlock(&w->mu);

    j->unhashed = false;
    wbatch *last = list;
    for (wbatch *b = list; b; b = b->next) {
        last = b;
        if (rc == IRP_EBUSY || rc == 0) {
            swap_pending(j, b);
            j->base = j->ch;
            j->base_size = j->size;
            rc = write_pending(j, true);
            swap_pending(j, b);
        }
        b->n = b->len = 0;
    }
    if (rc < 0)
        batch_failed(j, rc);

    pthread_mutex_lock(&w->mu);
    w->ch = j->ch;
    w->size = j->size;
    if (last) {
        last->next = w->spare;
        w->spare = list;
    }
    j->handed = false;
    pthread_mutex_unlock(&w->mu);
}

/* Hand the pending lines to the writer.  It may stall; the batches are
 * then taken back at once, or the queue would fill and wait for ever. */
static void hand_over(irp_journal *j)
{
    struct jwriter *w = j->w;

    pthread_mutex_lock(&w->mu);
    wbatch *b = w->spare;
    if (b)
        w->spare = b->next;
    pthread_mutex_unlock(&w->mu);
    if (!b && !(b = calloc(1, sizeof *b))) {
        batch_failed(j, IRP_ENOMEM);
        j->n_pend = j->pbuf_len = 0;
        return;
    }
    b->first = j->base.n + 1;
    b->next = NULL;
    swap_pending(j, b);
    j->unhashed = false;

    pthread_mutex_lock(&w->mu);
    if (!j->handed) {
        /* Idle until now: lines may have been written here meanwhile. */
        w->ch = j->base;
        w->size = j->base_size;
        j->handed = true;
    }
    *w->tail = b;
    w->tail = &b->next;
    w->queued++;
    pthread_cond_signal(&w->work);
    while (w->queued > WRITER_QUEUED && !w->stall)
        pthread_cond_wait(&w->done, &w->mu);
    bool stalled = w->stall != 0;
    pthread_mutex_unlock(&w->mu);
    if (stalled)
        take_back(j);
}

/* Wait for the writer to write every line appended (handing over those
 * pending first): the chain is then the file's again. */
static void drain(irp_journal *j)
{
    struct jwriter *w = j->w;

    if (j->unhashed && j->n_pend)
        hand_over(j);
    if (!w || !j->handed)
        return;
    pthread_mutex_lock(&w->mu);
    while ((w->queue || w->busy) && !w->stall)
        pthread_cond_wait(&w->done, &w->mu);
    bool stalled = w->stall != 0;
    if (!stalled) {
        j->ch = w->ch;
        j->size = w->size;
        j->handed = false;
    }
    pthread_mutex_unlock(&w->mu);
    if (stalled)
        take_back(j);
}

/* Write what is pending: hand it to the writer, or (durable) write it. */
static int flush_pending(irp_journal *j)
{
    if (j->flusher_open)
        uv_timer_stop(&j->flusher);
    if (!j->n_pend)
        return j->batch_err;
    if (!j->unhashed)
        return write_pending(j, false);
    hand_over(j);
    return j->batch_err;
}

static void on_flusher(uv_timer_t *h)
{
    (void)flush_pending(h->data);   /* a failure is sticky: the next append says so */
}

static int append_pending(irp_journal *j, irp_event *ev)
{
    int rc;

    if (j->batch_err)
        return j->batch_err;
    if (j->n_pend == j->cap_pend) {
        size_t cap = j->cap_pend ? j->cap_pend * 2 : 256;
        size_t *p = realloc(j->pend, cap * sizeof *p);
        if (!p)
            return IRP_ENOMEM;
        j->pend = p;
        j->cap_pend = cap;
    }
    if (j->n_pend == 0) {
        j->base = j->ch;
        j->base_size = j->size;
        bool lazy = j->lazy && !j->fsync_on;
        j->unhashed = lazy && writer_ready(j);
        /* Else a line waits for the loop's next turn at most (a timer of
         * 0 runs before the loop next waits): whatever comes of the event
         * it records, a kill cannot lose it any more than one just before
         * it was appended. */
        if (j->flusher_open && !j->closing)
            uv_timer_start(&j->flusher, on_flusher, lazy ? BATCH_MS : 0, 0);
    }
    size_t at = j->pbuf_len;
    rc = pend_line(j, ev);
    if (rc == 0) {
        j->pend[j->n_pend++] = at;
        /* In the file's order unless another writer comes in between,
         * which on_foreign tells the tap when the batch is written. */
        tap(j, ev);
    }
    if (rc == 0 && j->pbuf_len >= (j->unhashed ? WRITER_BATCH_BYTES : BATCH_BYTES))
        rc = flush_pending(j);
    return rc;
}

int irp_journal_flush(irp_journal *j)
{
    if (!j)
        return IRP_EINVAL;
    int rc = flush_pending(j);
    drain(j);
    return rc ? rc : j->batch_err;
}

int irp_journal_set_batch(irp_journal *j, uv_loop_t *loop, irp_batch_mode mode)
{
    int rc;

    if (!j || !loop || j->batch || (j->loop && j->loop != loop) ||
        (mode != IRP_BATCH_TURN && mode != IRP_BATCH_LAZY))
        return IRP_EINVAL;
    j->lazy = mode == IRP_BATCH_LAZY;
    j->loop = loop;
    if ((rc = uv_timer_init(loop, &j->flusher)) < 0)
        return irp_err_from_errno(-rc);
    j->flusher.data = j;
    j->flusher_open = true;
    j->handles_open++;
    uv_unref((uv_handle_t *)&j->flusher);
    j->batch = true;
    return 0;
}

/* ---- sync ------------------------------------------------------------- */

static enum sync_mode sync_mode_for(const irp_journal *j, uint64_t target)
{
    if (j->sync_err || target <= j->durable)
        return SYNC_NONE;
    return j->fsync_on ? SYNC_FSYNC : SYNC_PRETEND;
}

static int take_inject(irp_journal *j)
{
    int err = j->inject_err;

    j->inject_err = 0;
    return err;
}

/* Record how a round ended.  A failed fsync is sticky: after one, Linux
 * may have dropped the dirty pages and a retry could "succeed" falsely. */
static int sync_done(irp_journal *j, uint64_t target, bool dir, int rc)
{
    if (rc < 0) {
        if (!j->sync_err)
            j->sync_err = rc;
        return rc;
    }
    if (j->sync_err)
        return j->sync_err;
    if (dir)
        j->dir_pending = false;
    if (target > j->durable)
        j->durable = target;
    return 0;
}

int irp_journal_sync(irp_journal *j)
{
    uint64_t target;
    bool dir;
    int rc;

    if (!j)
        return IRP_EINVAL;
    if ((rc = irp_journal_flush(j)) < 0)
        return rc;
    target = j->ch.n;
    switch (sync_mode_for(j, target)) {
    case SYNC_NONE:
        return j->sync_err;
    case SYNC_PRETEND:
        return sync_done(j, target, false, 0);
    case SYNC_FSYNC:
        break;
    }
    dir = j->dir_pending;
    rc = do_sync(j, dir, take_inject(j));
    j->fsync_count++;
    return sync_done(j, target, dir, rc);
}

bool irp_journal_is_durable(irp_journal *j, uint64_t seq)
{
    if (!j || j->sync_err || seq > j->ch.n)
        return false;
    if (seq <= j->durable)
        return true;
    if (j->fsync_on)
        return false;
    /* Written is as durable as it gets: a line still in the batch is
     * written now, before the caller acts on it.  (A lazy batch's go to
     * its writer thread: a simulation's actions are not real.) */
    if (j->n_pend && !j->unhashed && flush_pending(j) < 0)
        return false;
    j->durable = j->ch.n;      /* SYNC_PRETEND without the trip through the pool */
    return true;
}

void irp_journal_set_tap(irp_journal *j, irp_journal_tap_fn fn, void *ctx)
{
    j->tap = fn;
    j->tap_ctx = ctx;
}

int irp_journal_tap_error(const irp_journal *j)
{
    return j->tap_err;
}

/* ---- sync_async: one round at a time on the thread pool --------------- */

static void sync_after_cb(uv_work_t *req, int status);

static void sync_work_cb(uv_work_t *req)
{
    sync_round *r = req->data;

    r->status = r->mode == SYNC_FSYNC ? do_sync(r->j, r->dir, r->inject) : 0;
}

/* A round that only counted lines durable while fsync was off, started
 * before it was turned back on: it makes nothing durable now. */
static bool round_stale(const irp_journal *j, const sync_round *r)
{
    return r->mode == SYNC_PRETEND && r->gen != j->fsync_gen;
}

/* The highest line a round in flight covers, or 0. */
static uint64_t rounds_target(const irp_journal *j)
{
    uint64_t t = 0;

    for (unsigned i = 0; i < j->rounds_busy; i++) {
        const sync_round *r = &j->rounds[(j->round_first + i) % SYNC_ROUNDS];
        if (r->target > t && !round_stale(j, r))
            t = r->target;
    }
    return t;
}

/* A round covers every line appended so far.  With nothing to fsync it is
 * an empty trip through the pool, which is what makes a request for an
 * already durable seq complete on a later loop turn and not inside the
 * call, with no uv handle to close. */
static int start_work(irp_journal *j)
{
    sync_round *r = &j->rounds[(j->round_first + j->rounds_busy) % SYNC_ROUNDS];
    int rc;

    /* The round covers written lines only: a batch still pending goes
     * out first.  A batch that cannot be written fails every sync. */
    if (j->n_pend)
        (void)flush_pending(j);
    if (j->batch_err && !j->sync_err)
        j->sync_err = j->batch_err;
    r->j = j;
    r->done = false;
    r->gen = j->fsync_gen;
    r->target = j->ch.n;
    r->mode = sync_mode_for(j, r->target);
    r->dir = r->mode == SYNC_FSYNC && j->dir_pending;
    r->inject = r->mode == SYNC_FSYNC ? take_inject(j) : 0;
    r->status = 0;
    r->work.data = r;
    rc = uv_queue_work(j->loop, &r->work, sync_work_cb, sync_after_cb);
    if (rc < 0) {
        j->inject_err = r->inject;
        return irp_err_from_errno(-rc);
    }
    j->rounds_busy++;
    return 0;
}

/* Whether a waiter needs a round that is not running: one for a line no
 * round in flight covers, or (none running) any. */
static bool round_needed(const irp_journal *j)
{
    if (!j->waiters)
        return false;
    if (!j->rounds_busy)
        return true;
    if (j->rounds_busy == SYNC_ROUNDS)
        return false;
    uint64_t last = 0;
    for (const sync_waiter *w = j->waiters; w; w = w->next)
        last = w->seq;            /* sorted: the last is the highest */
    return last > rounds_target(j);
}

static void insert_waiter(irp_journal *j, sync_waiter *w)
{
    sync_waiter **p = &j->waiters;

    while (*p && (*p)->seq <= w->seq)
        p = &(*p)->next;
    w->next = *p;
    *p = w;
}

/* Detach the waiters whose lines are durable (all of them with `all`). */
static sync_waiter *take_waiters(irp_journal *j, bool all)
{
    sync_waiter *head = j->waiters, **p = &j->waiters;

    while (*p && (all || (*p)->seq <= j->durable))
        p = &(*p)->next;
    if (p == &j->waiters)
        return NULL;              /* none: the list stays whole */
    j->waiters = *p;
    *p = NULL;
    return head;
}

/* Each waiter gets 0 if its line is durable, else err.  A detached list,
 * so callbacks may ask for more syncs or close the journal meanwhile. */
static void fire(irp_journal *j, sync_waiter *list, int err)
{
    while (list) {
        sync_waiter *w = list;

        list = w->next;
        w->cb(w->arg, w->seq <= j->durable ? 0 : err);
        free(w);
    }
}

static void on_syncer(uv_timer_t *h)
{
    irp_journal *j = h->data;

    /* A failure to start is left to the dispatch of a round in flight;
     * with none, the waiters fail now. */
    if (!j->closing && round_needed(j)) {
        int rc = start_work(j);
        if (rc < 0 && !j->rounds_busy)
            fire(j, take_waiters(j, true), rc);
    }
}

/* A waiter for a line no round in flight covers: a round for it, and for
 * every line appended in the rest of this turn, before the loop waits
 * (a timer of 0).  Without a timer, the next dispatch starts it. */
static void arm_syncer(irp_journal *j)
{
    if (!j->syncer_open) {
        if (uv_timer_init(j->loop, &j->syncer) < 0)
            return;
        j->syncer.data = j;
        uv_unref((uv_handle_t *)&j->syncer);
        j->syncer_open = true;
        j->handles_open++;
    }
    if (!uv_is_active((uv_handle_t *)&j->syncer))
        uv_timer_start(&j->syncer, on_syncer, 0, 0);
}

/* The last of the handles' closes and the rounds in flight frees it. */
static void finish_close(irp_journal *j)
{
    fire(j, take_waiters(j, true), IRP_ECANCELED);
    j->dispatching = false;
    if (!j->handles_open && !j->rounds_busy)
        journal_free(j);
}

static void dispatch(irp_journal *j)
{
    j->dispatching = true;
    fire(j, take_waiters(j, j->sync_err != 0), j->sync_err);
    /* Waiters left (or added by callbacks) may need a new round. */
    while (!j->closing && round_needed(j)) {
        int rc = start_work(j);
        if (rc < 0 && !j->rounds_busy)
            fire(j, take_waiters(j, true), rc);
        if (rc < 0)
            break;
    }
    if (j->closing)
        finish_close(j);
    else
        j->dispatching = false;
}

static void sync_after_cb(uv_work_t *req, int status)
{
    sync_round *r = req->data;
    irp_journal *j = r->j;

    /* status is UV_ECANCELED only after uv_cancel(), which irp never calls. */
    if (status < 0)
        r->status = irp_err_from_errno(-status);
    r->done = true;
    /* Results in the order the rounds started (see rounds). */
    while (j->rounds_busy && j->rounds[j->round_first].done) {
        sync_round *first = &j->rounds[j->round_first];
        if (first->mode == SYNC_FSYNC)
            j->fsync_count++;
        if (first->mode != SYNC_NONE && !round_stale(j, first))
            (void)sync_done(j, first->target, first->dir, first->status);
        j->round_first = (j->round_first + 1) % SYNC_ROUNDS;
        j->rounds_busy--;
    }
    dispatch(j);
}

int irp_journal_sync_async(irp_journal *j, uv_loop_t *loop, uint64_t seq,
                           irp_journal_sync_cb cb, void *arg)
{
    sync_waiter *w;
    int rc;

    if (!j || !loop || !cb || seq > j->ch.n)
        return IRP_EINVAL;
    if (j->closing)
        return IRP_ECANCELED;
    if (j->loop && j->loop != loop)
        return IRP_EINVAL;
    if ((rc = irp_journal_flush(j)) < 0)
        return rc;
    if (!(w = malloc(sizeof *w)))
        return IRP_ENOMEM;
    *w = (sync_waiter){ .seq = seq, .cb = cb, .arg = arg };
    j->loop = loop;
    insert_waiter(j, w);
    /* The dispatch we are inside picks it up; else a round in flight
     * covers it, or one starts: now when none runs, else at the turn's end. */
    if (j->dispatching || !round_needed(j))
        return 0;
    if (j->rounds_busy) {
        arm_syncer(j);
        return 0;
    }
    if ((rc = start_work(j)) < 0) {
        j->waiters = NULL;      /* w was the only one: no round was running */
        free(w);
    }
    return rc;
}

/* ---- reading ----------------------------------------------------------- */

int irp_journal_read(const char *path, irp_journal_line_fn fn, void *ctx, bool *partial,
                     char *err, size_t errlen)
{
    line_reader r;
    chain c;
    off_t end = 0;
    size_t tail = 0;
    int fd, rc;

    if (partial)
        *partial = false;
    if (err && errlen)
        err[0] = '\0';
    if (!path)
        return IRP_EINVAL;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        rc = irp_err_from_errno(errno);
        sys_error(err, errlen, errno);
        return rc;
    }
    reader_init(&r, fd, 0);
    chain_init(&c);
    rc = walk(&r, &c, &end, &tail, fn, ctx, err, errlen);
    reader_release(&r);
    close(fd);
    if (rc == 0 && partial)
        *partial = tail > 0;
    return rc;
}

/* ---- accessors --------------------------------------------------------- */

int irp_journal_watch(irp_journal *j, const char *event)
{
    free(j->watch);
    j->watch = strdup(event);
    if (!j->foreign)
        j->foreign = json_array();
    return j->watch && j->foreign ? 0 : IRP_ENOMEM;
}

int irp_journal_refresh(irp_journal *j, irp_journal_event_fn fn, void *ctx)
{
    int rc = irp_journal_flush(j);
    if (rc < 0)
        return rc;
    rc = lock_file(j->fd, LOCK_EX);
    if (rc < 0)
        return rc;
    rc = catch_up(j);
    (void)lock_file(j->fd, LOCK_UN);
    if (!j->foreign || !json_array_size(j->foreign))
        return rc;
    json_t *list = j->foreign;
    j->foreign = json_array();
    size_t i;
    json_t *ev;
    json_array_foreach(list, i, ev)
        fn(ctx, ev);
    json_decref(list);
    return rc;
}

void irp_journal_set_fsync(irp_journal *j, bool on)
{
    /* Lines counted durable while fsync was off are not on disk: back on,
     * the next sync covers them all. */
    if (on && !j->fsync_on && !j->sync_err) {
        j->durable = 0;
        j->fsync_gen++;
    }
    /* Lines pending go out now: from here they wait a turn of the loop
     * at most, not BATCH_MS. */
    if (on != j->fsync_on && j->batch)
        (void)irp_journal_flush(j);    /* a failure stays in batch_err */
    j->fsync_on = on;
}

const char *irp_journal_head(irp_journal *j)
{
    drain(j);
    return j->ch.head;
}

uint64_t irp_journal_seq(irp_journal *j)
{
    drain(j);
    return j->ch.n;
}

uint64_t irp_journal_durable_seq(const irp_journal *j)
{
    return j->durable;
}

uint64_t irp_journal_fsync_count(const irp_journal *j)
{
    return j->fsync_count;
}

void irp_journal_inject_fsync_error(irp_journal *j, int err)
{
    j->inject_err = err;
}
