/* irp — child processes on the event loop (include/irp/proc.h).
 *
 * Life of a child:
 *   spawn   vfork and exec (posix_spawnp for a name not yet found on
 *           PATH), new process group, stdin /dev/null, stdout and stderr
 *           on two pipes whose read ends the loop watches;
 *   run     each read chunk is counted, kept (stdout head), passed to
 *           on_stdout, redacted and appended to the log with plain write();
 *   exit    SIGCHLD → waitid(WNOWAIT) notices the exit but leaves the
 *           zombie, so the pid (= the process group id) cannot be reused
 *           while irp_proc_kill may still signal the group;
 *   finish  exit seen AND both pipes at EOF: reap, close the log, on_exit
 *           once, close the pipe handles; the proc is freed when the last
 *           close callback runs.
 *
 * A grandchild that keeps stdout or stderr open keeps the child unfinished
 * after it exits; the caller's timeout kills the group (irp_proc_kill
 * keeps working until on_exit) and the pipes then reach EOF.
 *
 * Per-loop state (the SIGCHLD watcher, the children whose exit is not yet
 * seen, a shared read buffer) lives in a small registry keyed by the loop
 * pointer, so loop->data stays the caller's.  Everything else runs on the
 * loop's thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "irp/error.h"
#include "irp/proc.h"

#define container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* One read fills at most a default Linux pipe buffer. */
#define READ_CHUNK (64 * 1024)
/* SPEC §1.2: only secrets of 6 bytes or more are redacted. */
#define REDACT_MIN 6
#define REDACT_MARK "***"
#define HEAD_FIRST_ALLOC 4096
#define NO_MATCH SIZE_MAX

typedef struct proc_loop proc_loop;

typedef struct redactor {
    size_t count;
    size_t max_len;
    size_t *len;
    size_t *next;           /* scratch: next occurrence of each secret */
    const char **str;       /* copies: the caller's strings are borrowed */
    char *held[2];          /* max_len - 1 bytes each, for stdout and stderr */
} redactor;

typedef struct proc_stream {
    uv_pipe_t pipe;
    irp_proc *proc;
    char *held;             /* tail held back: maybe the start of a secret */
    size_t held_len;
    bool is_stdout;
    bool eof;
} proc_stream;

struct irp_proc {
    proc_loop *pl;
    irp_proc *prev, *next;  /* in pl->waiting until the exit is seen */
    pid_t pid;
    bool exited;
    bool reaped;            /* by someone else: nothing left to wait for */
    bool finished;
    bool stdout_to_log;
    bool stdout_stopped;    /* on_stdout asked to stop: call it no more */
    int open_pipes;         /* handles not yet closed; freed at 0 */
    int log_fd;
    EVP_MD_CTX *sha;        /* with a log; initialised at its first byte */
    bool sha_started;
    redactor *rd;           /* NULL without secrets */
    size_t keep;
    size_t head_cap;
    char *head;
    irp_proc_stdout_cb on_stdout;
    irp_proc_exit_cb on_exit;
    void *data;
    proc_stream out, err;
    irp_proc_result res;
    char empty_head[1];
};

struct proc_loop {
    proc_loop *next;        /* registry */
    uv_loop_t *loop;
    uv_signal_t sigchld;
    irp_proc *waiting;      /* children whose exit has not been seen */
    size_t live;            /* spawned, not finished */
    bool shutdown;
    bool closing;
    /* Read callbacks consume the buffer before returning and never nest,
     * so one buffer serves every child of the loop. */
    char *buf;
    size_t buf_cap;
    int devnull;            /* every child's stdin, above 0-2; -1: each opens its own */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static proc_loop *registry;

/* ---- errors -------------------------------------------------------- */

/* Running out of descriptors or processes is transient: the caller waits
 * for a child to end and tries again. */
static int proc_err(int e)
{
    switch (e) {
    case EMFILE: case ENFILE: case EAGAIN: return IRP_EBUSY;
    case ELOOP: return IRP_EACCES;   /* O_NOFOLLOW met a symlink */
    default: return irp_err_from_errno(e);
    }
}

/* Keep the first error: it is the cause, later ones are consequences. */
static void note_error(irp_proc *p, int err)
{
    if (p->res.log_error == 0)
        p->res.log_error = err;
}

/* ---- per-loop registry --------------------------------------------- */

static void on_sigchld(uv_signal_t *h, int signum);

static proc_loop *registry_find(uv_loop_t *loop)
{
    for (proc_loop *pl = registry; pl; pl = pl->next)
        if (pl->loop == loop)
            return pl;
    return NULL;
}

static void registry_remove(proc_loop *pl)
{
    pthread_mutex_lock(&registry_lock);
    for (proc_loop **pp = &registry; *pp; pp = &(*pp)->next) {
        if (*pp == pl) {
            *pp = pl->next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
}

static void on_loop_closed(uv_handle_t *h)
{
    proc_loop *pl = container_of(h, proc_loop, sigchld);
    if (pl->devnull >= 0)
        close(pl->devnull);
    free(pl->buf);
    free(pl);
}

/* /dev/null, opened once for the children of a loop (above 0-2: dup2 onto
 * itself would leave it close-on-exec); -1 if it cannot be. */
static int devnull_open(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fd > 2)
        return fd;
    int up = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    close(fd);
    return up;
}

/* The watcher starts before the loop's first spawn, so no exit can happen
 * unwatched.  It is unreferenced while no child is live: it must not keep
 * uv_run going on its own. */
static int loop_create(uv_loop_t *loop, proc_loop **out)
{
    proc_loop *pl = calloc(1, sizeof *pl);
    if (!pl)
        return IRP_ENOMEM;
    pl->loop = loop;
    pl->devnull = -1;
    int e = uv_signal_init(loop, &pl->sigchld);
    if (e) {
        free(pl);   /* a failed init leaves no handle to close */
        return proc_err(-e);
    }
    e = uv_signal_start(&pl->sigchld, on_sigchld, SIGCHLD);
    if (e) {
        uv_close((uv_handle_t *)&pl->sigchld, on_loop_closed);
        return proc_err(-e);
    }
    uv_unref((uv_handle_t *)&pl->sigchld);
    pl->devnull = devnull_open();
    pl->next = registry;
    registry = pl;
    *out = pl;
    return 0;
}

static int loop_get(uv_loop_t *loop, proc_loop **out)
{
    pthread_mutex_lock(&registry_lock);
    int err = 0;
    *out = registry_find(loop);
    if (!*out)
        err = loop_create(loop, out);
    pthread_mutex_unlock(&registry_lock);
    return err;
}

static void loop_maybe_close(proc_loop *pl)
{
    if (!pl->shutdown || pl->closing || pl->live > 0)
        return;
    pl->closing = true;
    registry_remove(pl);
    uv_close((uv_handle_t *)&pl->sigchld, on_loop_closed);
}

/* While a child is live the watcher holds the loop open: a child that
 * closed its pipes early is waited for by SIGCHLD alone. */
static void loop_child_started(proc_loop *pl)
{
    if (pl->live++ == 0)
        uv_ref((uv_handle_t *)&pl->sigchld);
}

static void loop_child_done(proc_loop *pl)
{
    if (--pl->live == 0)
        uv_unref((uv_handle_t *)&pl->sigchld);
}

static void waiting_add(proc_loop *pl, irp_proc *p)
{
    p->prev = NULL;
    p->next = pl->waiting;
    if (pl->waiting)
        pl->waiting->prev = p;
    pl->waiting = p;
}

static void waiting_remove(proc_loop *pl, irp_proc *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        pl->waiting = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

/* ---- redaction ------------------------------------------------------ */

/* Secrets shorter than REDACT_MIN are skipped.  One allocation holds the
 * copies, the scratch arrays and both streams' held tails. */
static int redactor_new(const char *const *redact, redactor **out)
{
    *out = NULL;
    size_t count = 0, chars = 0, max_len = 0;
    for (size_t i = 0; redact && redact[i]; i++) {
        size_t len = strlen(redact[i]);
        if (len < REDACT_MIN)
            continue;
        count++;
        chars += len;
        if (len > max_len)
            max_len = len;
    }
    if (count == 0)
        return 0;
    size_t size = sizeof(redactor) + count * (2 * sizeof(size_t) + sizeof(char *))
                  + chars + 2 * (max_len - 1);
    redactor *rd = malloc(size);
    if (!rd)
        return IRP_ENOMEM;
    rd->count = 0;
    rd->max_len = max_len;
    rd->len = (size_t *)(rd + 1);
    rd->next = rd->len + count;
    rd->str = (const char **)(rd->next + count);
    char *c = (char *)(rd->str + count);
    for (size_t i = 0; redact[i]; i++) {
        size_t len = strlen(redact[i]);
        if (len < REDACT_MIN)
            continue;
        memcpy(c, redact[i], len);
        rd->str[rd->count] = c;
        rd->len[rd->count++] = len;
        c += len;
    }
    rd->held[0] = c;
    rd->held[1] = c + max_len - 1;
    *out = rd;
    return 0;
}

/* First occurrence of secret i starting in r[from, limit), r being n bytes
 * long, or NO_MATCH. */
static size_t find_secret(const redactor *rd, size_t i, const char *r, size_t n,
                          size_t from, size_t limit)
{
    size_t len = rd->len[i];
    if (from >= limit || n < len || from > n - len)
        return NO_MATCH;
    /* An occurrence starting before limit ends by limit + len - 1. */
    size_t end = limit >= n - len + 1 ? n : limit + len - 1;
    const char *hit = memmem(r + from, end - from, rd->str[i], len);
    return hit ? (size_t)(hit - r) : NO_MATCH;
}

/* Grow the match [m, *end) over every occurrence that overlaps it, so two
 * secrets sharing bytes are hidden as one and neither leaks a piece. */
static void merge_overlaps(const redactor *rd, const char *r, size_t n, size_t m,
                           size_t *end)
{
    bool grew = true;
    while (grew) {
        grew = false;
        for (size_t i = 0; i < rd->count; i++) {
            size_t at = find_secret(rd, i, r, n, m, *end);
            while (at != NO_MATCH) {
                if (at + rd->len[i] > *end) {
                    *end = at + rd->len[i];
                    grew = true;
                }
                at = find_secret(rd, i, r, n, at + 1, *end);
            }
        }
    }
}

/* Length of the longest tail of r[0, n) that is a proper prefix of a
 * secret: it is held back until more data shows whether the secret
 * completes.  Usually 0, so stdout and stderr keep their arrival order. */
static size_t held_prefix(const redactor *rd, const char *r, size_t n)
{
    size_t best = 0;
    for (size_t i = 0; i < rd->count; i++) {
        const char *s = rd->str[i];
        size_t k = n < rd->len[i] - 1 ? n : rd->len[i] - 1;
        const char *c = r + n - k;
        while (k > best) {
            const char *hit = memchr(c, s[0], k);
            if (!hit || (size_t)(r + n - hit) <= best)
                break;
            if (memcmp(hit, s, (size_t)(r + n - hit)) == 0) {
                best = (size_t)(r + n - hit);
                break;
            }
            c = hit + 1;
            k = (size_t)(r + n - c);
        }
    }
    return best;
}

/* ---- the log -------------------------------------------------------- */

/* The digest starts at the first byte: most commands of a playbook write
 * nothing, and an empty log has a known hash (log_finish). */
static bool log_digest_start(irp_proc *p)
{
    if (p->sha_started)
        return true;
    if (EVP_DigestInit_ex(p->sha, EVP_sha256(), NULL) != 1) {
        note_error(p, IRP_ENOMEM);
        close(p->log_fd);
        p->log_fd = -1;
        return false;
    }
    p->sha_started = true;
    return true;
}

static void log_write(irp_proc *p, const char *b, size_t n)
{
    if (n == 0 || p->log_fd < 0 || !log_digest_start(p))
        return;
    while (n > 0 && p->log_fd >= 0) {
        ssize_t w = write(p->log_fd, b, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            /* A full disk stops the log; the child runs on, the caller
             * decides (SPEC §3: start nothing new). */
            note_error(p, proc_err(errno));
            close(p->log_fd);
            p->log_fd = -1;
            return;
        }
        EVP_DigestUpdate(p->sha, b, (size_t)w);
        p->res.log_bytes += (uint64_t)w;
        b += w;
        n -= (size_t)w;
    }
}

/* Open path with O_NOFOLLOW, and its folder too: a symlink planted for
 * the log or for the run's logs/ folder is refused (ELOOP), never written
 * through.  Folders further up are the caller's choice (--runs may well
 * lead through a symlink).  -1 with errno on failure. */
static int open_nofollow(const char *path, int flags)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return open(path, flags | O_NOFOLLOW | O_CLOEXEC, 0600);
    char dir[4096];
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= sizeof dir) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(dir, path, n);
    dir[n] = '\0';
    /* O_PATH|O_NOFOLLOW opens a symlink itself, so fstat can tell. */
    int dfd = open(dir, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    struct stat st;
    int fd = -1;
    if (fstat(dfd, &st) != 0)
        ;
    else if (S_ISLNK(st.st_mode))
        errno = ELOOP;
    else if (!S_ISDIR(st.st_mode))
        errno = ENOTDIR;
    else
        fd = openat(dfd, slash + 1, flags | O_NOFOLLOW | O_CLOEXEC, 0600);
    int e = errno;
    close(dfd);
    errno = e;
    return fd;
}

/* Takes o->log_fd, whatever happens. */
static int log_open(irp_proc *p, const irp_proc_opts *o)
{
    if (o->has_log_fd)
        p->log_fd = o->log_fd;
    if (!o->has_log_fd && !o->log_path)
        return 0;
    p->sha = EVP_MD_CTX_new();
    if (!p->sha)
        return IRP_ENOMEM;
    if (!o->has_log_fd)
        p->log_fd = open_nofollow(o->log_path, O_WRONLY | O_CREAT | O_APPEND);
    return p->log_fd < 0 ? proc_err(errno) : 0;
}

static void log_finish(irp_proc *p)
{
    if (p->log_fd >= 0 && close(p->log_fd) != 0 && errno != EINTR)
        note_error(p, proc_err(errno));
    p->log_fd = -1;
    if (!p->sha)
        return;
    static const char empty[] =
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!p->sha_started) {
        memcpy(p->res.log_sha256, empty, sizeof empty);
    } else if (EVP_DigestFinal_ex(p->sha, md, &len) == 1 && len == 32) {
        static const char hex[] = "0123456789abcdef";
        for (unsigned int i = 0; i < len; i++) {
            p->res.log_sha256[2 * i] = hex[md[i] >> 4];
            p->res.log_sha256[2 * i + 1] = hex[md[i] & 15];
        }
        p->res.log_sha256[64] = '\0';
    }
    EVP_MD_CTX_free(p->sha);
    p->sha = NULL;
}

/* Write r[0, n) with every secret replaced by REDACT_MARK; return how many
 * tail bytes were not written because they may start a secret. */
static size_t log_redacted(irp_proc *p, const char *r, size_t n)
{
    redactor *rd = p->rd;
    for (size_t i = 0; i < rd->count; i++)
        rd->next[i] = find_secret(rd, i, r, n, 0, n);
    size_t done = 0;
    for (;;) {
        size_t m = NO_MATCH, end = 0;
        for (size_t i = 0; i < rd->count; i++) {
            size_t at = rd->next[i];
            if (at < m || (at == m && at != NO_MATCH && at + rd->len[i] > end)) {
                m = at;
                end = at + rd->len[i];
            }
        }
        if (m == NO_MATCH)
            break;
        merge_overlaps(rd, r, n, m, &end);
        log_write(p, r + done, m - done);
        log_write(p, REDACT_MARK, sizeof REDACT_MARK - 1);
        done = end;
        for (size_t i = 0; i < rd->count; i++)
            if (rd->next[i] < end)
                rd->next[i] = find_secret(rd, i, r, n, end, n);
    }
    size_t hold = held_prefix(rd, r + done, n - done);
    log_write(p, r + done, n - done - hold);
    return hold;
}

/* b lies in the loop buffer with max_len - 1 free bytes before it, where
 * the held tail is put back so a secret split across reads is seen whole. */
static void log_stream(irp_proc *p, proc_stream *s, char *b, size_t n)
{
    if (p->log_fd < 0)
        return;
    if (!p->rd) {
        log_write(p, b, n);
        return;
    }
    char *r = b - s->held_len;
    memcpy(r, s->held, s->held_len);
    size_t hold = log_redacted(p, r, s->held_len + n);
    memcpy(s->held, r + s->held_len + n - hold, hold);
    s->held_len = hold;
}

/* At EOF the held tail is written as it is: it holds no whole secret. */
static void log_stream_end(irp_proc *p, proc_stream *s)
{
    if (s->held_len > 0)
        log_write(p, s->held, s->held_len);
    s->held_len = 0;
}

/* ---- reading -------------------------------------------------------- */

static bool head_reserve(irp_proc *p, size_t need)
{
    if (need + 1 <= p->head_cap)
        return true;
    size_t cap = p->head_cap ? p->head_cap : HEAD_FIRST_ALLOC;
    while (cap < need + 1)
        cap *= 2;
    if (cap > p->keep + 1)
        cap = p->keep + 1;
    char *h = realloc(p->head, cap);
    if (!h)
        return false;
    p->head = h;
    p->head_cap = cap;
    return true;
}

static void keep_head(irp_proc *p, const char *b, size_t n)
{
    size_t have = p->res.stdout_head_len;
    if (have >= p->keep)
        return;
    size_t take = n < p->keep - have ? n : p->keep - have;
    if (!head_reserve(p, have + take)) {
        note_error(p, IRP_ENOMEM);
        p->keep = have;
        return;
    }
    memcpy(p->head + have, b, take);
    p->res.stdout_head_len = have + take;
}

static void pass_stdout(irp_proc *p, const char *b, size_t n)
{
    if (!p->on_stdout || p->stdout_stopped)
        return;
    int rc = p->on_stdout(b, n, p->data);
    if (rc == 0)
        return;
    p->stdout_stopped = true;
    note_error(p, rc);
    kill(-p->pid, SIGKILL);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    irp_proc *p = ((proc_stream *)h->data)->proc;
    proc_loop *pl = p->pl;
    size_t reserve = p->rd ? p->rd->max_len - 1 : 0;
    if (pl->buf_cap < reserve + READ_CHUNK) {
        free(pl->buf);
        pl->buf = malloc(reserve + READ_CHUNK);
        pl->buf_cap = pl->buf ? reserve + READ_CHUNK : 0;
    }
    *buf = pl->buf ? uv_buf_init(pl->buf + reserve, READ_CHUNK) : uv_buf_init(NULL, 0);
}

static void maybe_finish(irp_proc *p);

static void stream_ended(irp_proc *p, proc_stream *s)
{
    s->eof = true;
    log_stream_end(p, s);
    maybe_finish(p);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    proc_stream *s = st->data;
    irp_proc *p = s->proc;
    if (n == 0)
        return;
    if (n < 0) {
        /* Anything but EOF (ENOBUFS) means the output cannot be captured:
         * stop the child rather than let it block on a full pipe. */
        if (n != UV_EOF) {
            note_error(p, n == UV_ENOBUFS ? IRP_ENOMEM : proc_err((int)-n));
            kill(-p->pid, SIGKILL);
        }
        uv_read_stop(st);
        stream_ended(p, s);
        return;
    }
    if (s->is_stdout) {
        p->res.stdout_bytes += (uint64_t)n;
        keep_head(p, buf->base, (size_t)n);
        pass_stdout(p, buf->base, (size_t)n);
        if (!p->stdout_to_log)
            return;
    }
    log_stream(p, s, buf->base, (size_t)n);
}

/* ---- exit and finish ------------------------------------------------ */

/* Notice an exit without reaping: the zombie keeps the pid, and with it
 * the process group id, from being reused before on_exit. */
static bool poll_exit(irp_proc *p)
{
    siginfo_t si;
    for (;;) {
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0)
            break;
        if (errno == EINTR)
            continue;
        /* ECHILD: something else in the process reaped it; status lost. */
        p->reaped = true;
        p->res.exit_status = -1;
        return true;
    }
    if (si.si_pid == 0)
        return false;
    if (si.si_code == CLD_EXITED)
        p->res.exit_status = si.si_status;
    else
        p->res.term_signal = si.si_status;
    return true;
}

/* Exits are collected first and finished after, so an on_exit that
 * spawns or kills does not disturb the walk of the waiting list. */
static void on_sigchld(uv_signal_t *h, int signum)
{
    proc_loop *pl = container_of(h, proc_loop, sigchld);
    irp_proc *ready = NULL;
    for (irp_proc *p = pl->waiting, *next; p; p = next) {
        next = p->next;
        if (!poll_exit(p))
            continue;
        p->exited = true;
        waiting_remove(pl, p);
        p->next = ready;
        ready = p;
    }
    while (ready) {
        irp_proc *p = ready;
        ready = p->next;
        p->next = NULL;
        maybe_finish(p);
    }
}

static void proc_free(irp_proc *p)
{
    EVP_MD_CTX_free(p->sha);
    free(p->head);
    free(p->rd);
    free(p);
}

static void on_pipe_closed(uv_handle_t *h)
{
    irp_proc *p = ((proc_stream *)h->data)->proc;
    if (--p->open_pipes == 0)
        proc_free(p);
}

static void reap(irp_proc *p)
{
    int st;
    while (!p->reaped && waitpid(p->pid, &st, 0) < 0 && errno == EINTR)
        ;
    p->reaped = true;
}

static void result_finish(irp_proc *p)
{
    if (p->keep == 0 && !p->head)
        return;   /* stdout_head stays NULL: nothing was asked for */
    if (p->head) {
        p->head[p->res.stdout_head_len] = '\0';
        p->res.stdout_head = p->head;
    } else {
        p->res.stdout_head = p->empty_head;
    }
}

static void maybe_finish(irp_proc *p)
{
    if (p->finished || !p->exited || !p->out.eof || !p->err.eof)
        return;
    p->finished = true;
    reap(p);
    log_finish(p);
    result_finish(p);
    proc_loop *pl = p->pl;
    loop_child_done(pl);
    /* Closing the pipes first gives their descriptors back before on_exit,
     * which may start the next child: out of descriptors, that child is
     * waiting for exactly these.  The proc itself is freed only in the
     * close callbacks, after on_exit. */
    uv_close((uv_handle_t *)&p->out.pipe, on_pipe_closed);
    uv_close((uv_handle_t *)&p->err.pipe, on_pipe_closed);
    p->on_exit(p, &p->res, p->data);
    loop_maybe_close(pl);
}

/* ---- spawning ------------------------------------------------------- */

/* Signals whose disposition a child resets to the default before its
 * exec: the classic ones, whatever irp does with them now or later
 * (SIGPIPE ignored, SIGCHLD, SIGINT, SIGTERM and SIGHUP caught...), and
 * the real-time ones that were not at their default when the first child
 * was started (irp sets none; a parent may have ignored some).  Asking
 * for every signal at every spawn would double the child's system calls
 * while irp waits for its exec.  SIGKILL and SIGSTOP cannot be changed;
 * the C library's internal signals are its own.  Built once. */
static sigset_t child_sigdef;
static int child_sigmax;
static posix_spawnattr_t child_attr;
static pthread_once_t child_once = PTHREAD_ONCE_INIT;

static bool sig_needs_reset(int sig)
{
    if (sig == SIGKILL || sig == SIGSTOP)
        return false;
    if (sig < SIGRTMIN)
        return sig < 32;
    struct sigaction sa;
    return sigaction(sig, NULL, &sa) == 0 && sa.sa_handler != SIG_DFL;
}

/* For posix_spawnp, the same, plus its own process group and an empty
 * signal mask, whatever irp blocks. */
static void child_once_init(void)
{
    sigset_t none;
    sigemptyset(&none);
    sigemptyset(&child_sigdef);
    child_sigmax = SIGRTMAX;
    for (int sig = 1; sig <= child_sigmax; sig++)
        if (sig_needs_reset(sig))
            sigaddset(&child_sigdef, sig);
    posix_spawnattr_init(&child_attr);
    posix_spawnattr_setflags(&child_attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK
                                          | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&child_attr, 0);
    posix_spawnattr_setsigmask(&child_attr, &none);
    posix_spawnattr_setsigdefault(&child_attr, &child_sigdef);
}

/* Where a command named without '/' lives, found once per name: at
 * every spawn posix_spawnp walks PATH with one failing execve per
 * directory before the one that holds it (nine for `true` on a long
 * PATH), where ninja's `sh -c true` runs a shell builtin.  Only absolute
 * PATHs are cached -- a relative entry depends on the child's cwd -- and
 * a name not found is not: posix_spawnp then reports it as before.  A
 * cached file that disappears is looked up again. */
#define PATH_CACHE 64

static struct path_entry {
    char *name, *path;
} path_cache[PATH_CACHE];
static size_t path_cached;

/* Every entry absolute (an empty one means the cwd). */
static bool absolute_path_only(const char *path)
{
    for (const char *d = path;; d++) {
        if (*d != '/')
            return false;
        d += strcspn(d, ":");
        if (!*d)
            return true;
    }
}

static const char *find_on_path(const char *name)
{
    for (size_t i = 0; i < path_cached; i++)
        if (strcmp(path_cache[i].name, name) == 0)
            return path_cache[i].path;
    const char *env = getenv("PATH");
    if (!env || !*env || !absolute_path_only(env) || path_cached == PATH_CACHE)
        return NULL;
    for (const char *d = env; *d;) {
        size_t n = strcspn(d, ":");
        char *full = NULL;
        struct stat st;
        if (asprintf(&full, "%.*s/%s", (int)n, d, name) < 0)
            return NULL;
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode) && access(full, X_OK) == 0) {
            char *copy = strdup(name);
            if (!copy) {
                free(full);
                return NULL;
            }
            path_cache[path_cached++] = (struct path_entry){ copy, full };
            return full;
        }
        free(full);
        d += n;
        if (*d == ':')
            d++;
    }
    return NULL;
}

static void forget_path(const char *name)
{
    for (size_t i = 0; i < path_cached; i++)
        if (strcmp(path_cache[i].name, name) == 0) {
            free(path_cache[i].name);
            free(path_cache[i].path);
            path_cache[i] = path_cache[--path_cached];
            return;
        }
}

/* What the vforked child needs, prepared by the parent: between vfork
 * and exec the child shares irp's memory and may only make system calls.
 * It reports an error in err, which the parent reads once it resumes. */
typedef struct child_args {
    const char *path;
    char *const *argv, *const *envp;
    const char *cwd;
    int devnull, out_w, err_w;
    volatile int err;
} child_args;

/* Handlers first: the child runs with every signal blocked and must not
 * run one of irp's handlers on irp's memory once it unblocks them.
 * SIG_IGN would survive the exec.  Then the descriptors: /dev/null, the
 * two pipes, nothing else. */
static _Noreturn void child_exec(child_args *a)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig <= child_sigmax; sig++)
        if (sigismember(&child_sigdef, sig) == 1)
            sigaction(sig, &dfl, NULL);
    int in = a->devnull >= 0 ? a->devnull : open("/dev/null", O_RDONLY);
    if (setpgid(0, 0) != 0 || in < 0)
        goto fail;
    /* An `in` of 1 or 2 is replaced next; one above is closed below. */
    if ((in != 0 && dup2(in, 0) < 0) || dup2(a->out_w, 1) < 0 || dup2(a->err_w, 2) < 0)
        goto fail;
    /* Whatever irp itself inherited or a library opened without
     * O_CLOEXEC, a step starts with 0, 1 and 2 only. */
    if (close_range(3, ~0U, 0) != 0) {
        struct rlimit rl;   /* a kernel before 5.9 */
        if (errno != ENOSYS || getrlimit(RLIMIT_NOFILE, &rl) != 0)
            goto fail;
        for (rlim_t i = 3; i < rl.rlim_cur && i < INT_MAX; i++)
            close((int)i);
    }
    if (a->cwd && chdir(a->cwd) != 0)
        goto fail;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(a->path, a->argv, a->envp);
fail:
    a->err = errno;
    _exit(127);
}

/* vfork, not posix_spawn: glibc's posix_spawn maps a fresh stack for
 * every child and unmaps it after, and the unmap interrupts every CPU
 * where irp's libuv threads ran to flush its TLB -- on a virtual machine
 * the largest cost of a spawn after the exec itself.  The parent's
 * signals stay blocked until the child has exec'd or failed.  Under
 * valgrind vfork is a fork: the error cannot travel back, and the child
 * exits 127 instead. */
static int spawn_vfork(child_args *a, pid_t *pid)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    a->err = 0;
    pid_t child = vfork();
    if (child == 0)
        child_exec(a);
    int e = child < 0 ? errno : a->err;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (child > 0 && e != 0) {
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    if (e == 0)
        *pid = child;
    return e;
}

static int spawn_posix(irp_proc *p, const irp_proc_opts *o, char *const *envp, int out_w,
                       int err_w)
{
    posix_spawn_file_actions_t fa;
    int e = posix_spawn_file_actions_init(&fa);
    if (e)
        return e;
    e = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (!e)
        e = posix_spawn_file_actions_adddup2(&fa, out_w, 1);
    if (!e)
        e = posix_spawn_file_actions_adddup2(&fa, err_w, 2);
    if (!e)
        e = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    if (!e && o->cwd)
        e = posix_spawn_file_actions_addchdir_np(&fa, o->cwd);
    if (!e)
        e = posix_spawnp(&p->pid, o->argv[0], &fa, &child_attr, (char *const *)o->argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    return e;
}

/* A command with '/', or found on PATH before, is exec'd by path from a
 * vforked child.  Any other name goes to posix_spawnp, which walks irp's
 * PATH (like execvp) in the child and hands back the exec's errno, so a
 * missing command is ENOENT here with no child left behind. */
static int start_child(irp_proc *p, const irp_proc_opts *o, int out_w, int err_w)
{
    pthread_once(&child_once, child_once_init);
    char *const *envp = (char *const *)(o->envp ? o->envp : (const char *const *)environ);
    bool named = !strchr(o->argv[0], '/');
    const char *path = named ? find_on_path(o->argv[0]) : o->argv[0];
    if (path) {
        child_args a = { .path = path, .argv = (char *const *)o->argv, .envp = envp,
                         .cwd = o->cwd, .devnull = p->pl->devnull, .out_w = out_w,
                         .err_w = err_w };
        int e = spawn_vfork(&a, &p->pid);
        if (e != ENOENT || !named)
            return e ? proc_err(e) : 0;
        forget_path(o->argv[0]);     /* moved since: look again */
    }
    int e = spawn_posix(p, o, envp, out_w, err_w);
    return e ? proc_err(e) : 0;
}

/* Failure of the loop to take a pipe: the output could not be captured,
 * so the child is stopped and reported with the error. */
static void stream_attach(irp_proc *p, proc_stream *s, int fd, bool is_stdout)
{
    s->proc = p;
    s->is_stdout = is_stdout;
    uv_pipe_init(p->pl->loop, &s->pipe, 0);   /* cannot fail on Unix */
    s->pipe.data = s;
    p->open_pipes++;
    int e = uv_pipe_open(&s->pipe, fd);
    if (e)
        close(fd);
    else
        e = uv_read_start((uv_stream_t *)&s->pipe, on_alloc, on_read);
    if (e) {
        note_error(p, proc_err(-e));
        kill(-p->pid, SIGKILL);
        s->eof = true;
    }
}

static int proc_new(proc_loop *pl, const irp_proc_opts *o, irp_proc **out)
{
    irp_proc *p = calloc(1, sizeof *p);
    if (!p)
        return IRP_ENOMEM;
    p->pl = pl;
    p->log_fd = -1;
    p->keep = o->stdout_keep;
    p->stdout_to_log = o->stdout_to_log;
    p->on_stdout = o->on_stdout;
    p->on_exit = o->on_exit;
    p->data = o->data;
    int err = redactor_new(o->redact, &p->rd);
    if (err) {
        free(p);
        return err;
    }
    if (p->rd) {
        p->out.held = p->rd->held[0];
        p->err.held = p->rd->held[1];
    }
    *out = p;
    return 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* A pipe's write end taken from 0-2 (irp started with its own closed)
 * would be overwritten in the child before its dup2: move it up. */
static int above_stdio(int *fd)
{
    if (*fd > 2)
        return 0;
    int up = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (up < 0)
        return -1;
    close(*fd);
    *fd = up;
    return 0;
}

/* Everything before the loop takes the pipes; on failure nothing is left
 * open and no child runs. */
static int proc_start(irp_proc *p, const irp_proc_opts *o, int rd_fds[2])
{
    int out[2] = { -1, -1 }, err[2] = { -1, -1 };
    int rc = log_open(p, o);
    if (!rc && (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0
                || above_stdio(&out[1]) != 0 || above_stdio(&err[1]) != 0))
        rc = proc_err(errno);
    if (!rc)
        rc = start_child(p, o, out[1], err[1]);
    close_fd(&out[1]);
    close_fd(&err[1]);
    if (rc) {
        close_fd(&out[0]);
        close_fd(&err[0]);
        close_fd(&p->log_fd);
        return rc;
    }
    rd_fds[0] = out[0];
    rd_fds[1] = err[0];
    return 0;
}

/* A failure before the proc holds the log descriptor closes it. */
static int refuse(const irp_proc_opts *o, int rc)
{
    if (o && o->has_log_fd && o->log_fd >= 0)
        close(o->log_fd);
    return rc;
}

int irp_proc_spawn(uv_loop_t *loop, const irp_proc_opts *opts, irp_proc **out)
{
    if (!loop || !opts || !opts->argv || !opts->argv[0] || !opts->on_exit || !out)
        return refuse(opts, IRP_EINVAL);
    proc_loop *pl;
    int rc = loop_get(loop, &pl);
    if (rc)
        return refuse(opts, rc);
    irp_proc *p;
    rc = proc_new(pl, opts, &p);
    if (rc)
        return refuse(opts, rc);
    int fds[2];
    rc = proc_start(p, opts, fds);
    if (rc) {
        proc_free(p);
        return rc;
    }
    loop_child_started(pl);
    waiting_add(pl, p);
    stream_attach(p, &p->out, fds[0], true);
    stream_attach(p, &p->err, fds[1], false);
    *out = p;
    return 0;
}

pid_t irp_proc_pid(const irp_proc *p)
{
    return p->pid;
}

int irp_proc_kill(irp_proc *p, int sig)
{
    if (p->finished)
        return 0;
    if (kill(-p->pid, sig) == 0 || errno == ESRCH)
        return 0;
    return proc_err(errno);
}

size_t irp_proc_live(uv_loop_t *loop)
{
    pthread_mutex_lock(&registry_lock);
    proc_loop *pl = registry_find(loop);
    size_t n = pl ? pl->live : 0;
    pthread_mutex_unlock(&registry_lock);
    return n;
}

void irp_proc_shutdown(uv_loop_t *loop)
{
    pthread_mutex_lock(&registry_lock);
    proc_loop *pl = registry_find(loop);
    pthread_mutex_unlock(&registry_lock);
    if (!pl)
        return;
    pl->shutdown = true;
    loop_maybe_close(pl);
}
