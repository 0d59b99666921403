/* The `evidence` executor: files copied, and commands' stdout captured,
 * into the run's evidence/ folder, hashed (SHA-256) on the way (SPEC §1.1).
 *
 * Nothing here follows a symbolic link or writes outside the run's
 * evidence/: every folder below the run directory is opened with
 * O_NOFOLLOW|O_DIRECTORY, every file with openat() relative to it.
 *
 * A copy is written under a temporary name (".irp-partial.<pid>.<n>") and
 * renamed to its own name -- never replacing anything -- only once it is
 * complete, read-only (0400) and fsynced; a copy that fails or is stopped
 * is removed.  So a name in evidence/ is always a whole copy, and a retry
 * never trips over half of one.  A retry does find the whole copies an
 * earlier attempt of the same instance made (the items before the one
 * that failed): those are kept as they are -- evidence is never altered
 * or replaced -- re-hashed, and journaled again with `kept: true`, since
 * a crash may have come between the copy's rename and its first
 * evidence.collected (irp resume then re-runs the instance).
 *
 * File work (opening, copying, fsync) runs on libuv's thread pool, in
 * slices of at most SLICE_BYTES or SLICE_MS: the loop, and the journal's
 * fsyncs that share the pool, never wait long behind a large copy, and a
 * timeout stops a copy within one slice.  Memory is one BUF_SIZE buffer
 * per running step.  A command's stdout arrives on the loop (proc.h) and
 * is written and hashed there; its fsync goes to the pool too.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "irp/error.h"
#include "irp/exec.h"
#include "irp/jsonutil.h"
#include "irp/proc.h"
#include "irp/timeutil.h"
#include "strvec.h"

#define BUF_SIZE (1024 * 1024)
#define SLICE_BYTES (64u * 1024 * 1024)
#define SLICE_MS 100
#define POLL_MS 50

/* Work done on the thread pool, one request at a time per job. */
typedef enum {
    OP_OPEN,      /* the destination folder, the source, the temporary copy */
    OP_COPY,      /* one slice of a file copy; the last one also seals */
    OP_SEAL,      /* a command's capture: fchmod, fsync, rename, fsync the folder */
    OP_DISCARD,   /* remove what a failed item left */
    OP_LOGHASH,   /* SHA-256 of the whole step log (several commands wrote it) */
} ev_op;

typedef struct ev_item {
    char *name;                /* the copy's file name: one plain component */
    char *src;                 /* absolute source path; NULL for a command */
    strvec argv;               /* the command */
    json_t *source;            /* as journaled: {"path": P} or {"argv": [...]} */
} ev_item;

typedef struct ev_job {
    irp_job *job;              /* NULL once released */
    ev_item *items;
    size_t n_items, cur;
    /* Copied from the job at prepare, so the worker never reads the job. */
    char *run_dir, *log_path, *dir_rel, *into, *index;
    int attempt;
    char *cwd;                 /* rendered step cwd, or NULL */
    strvec env;                /* the step's env and IRP_* for commands */

    uv_work_t work;
    ev_op op;
    bool busy;                 /* a work request is queued or running */
    bool released;             /* release came while busy or a child lived */
    atomic_bool stop;          /* cancel(): stop at the next chance */

    /* The current item; the worker's while busy. */
    int dir_fd, src_fd, out_fd;
    char tmp[64];
    bool tmp_made, renamed, skipped, done, stopped, src_poll, ends_in_hole;
    EVP_MD_CTX *md;
    unsigned char *buf;
    uint64_t size;
    struct stat before, after;
    int err;                   /* errno of the failure, or 0 */
    const char *err_what;      /* what failed; NULL: opening or reading the source */
    char sha256[65];

    irp_proc *proc;
    int procs;                 /* commands run: after two, hash the whole log */
    char log_sha256[65];
} ev_job;

static atomic_uint temp_seq;

/* ---- prepare ----------------------------------------------------------- */

/* Text into an object, with `<key>_b64` beside it when it is not UTF-8
 * (SPEC §3). */
static void put_text(json_t *obj, const char *key, const char *s)
{
    size_t len = strlen(s);
    json_object_set_new(obj, key, irp_json_text(s, len));
    if (!irp_utf8_valid(s, len)) {
        char k[64];
        snprintf(k, sizeof k, "%s_b64", key);
        json_object_set_new(obj, k, irp_json_b64(s, len));
    }
}

/* A file name in evidence/: one component that climbs nowhere (the same
 * rule validate applies to `name` and `into`). */
static bool plain_name(const char *s, size_t len)
{
    if (len == 0 || len > 255 || strlen(s) != len || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '/' || (unsigned char)s[i] < 0x20)
            return false;
    return true;
}

static int render_value_text(const irp_str *s, const irp_scope *scope, char **text, size_t *len,
                             bool *secret, char *err, size_t errlen)
{
    irp_value *v = NULL;
    int rc = irp_render_str(s, scope, &v, err, errlen);
    if (rc)
        return rc;
    *secret = irp_value_is_secret(v);
    rc = irp_value_render(v, text, len);
    irp_value_unref(v);
    return rc;
}

/* The source's absolute path: a relative one is taken from the step's
 * cwd, else from the folder irp was started in. */
static char *absolute(const char *path, const char *cwd)
{
    if (path[0] == '/')
        return strdup(path);
    char *here = NULL, *out = NULL;
    if (!cwd || cwd[0] != '/') {
        here = getcwd(NULL, 0);
        if (!here)
            return NULL;
    }
    int n;
    if (!cwd)
        n = asprintf(&out, "%s/%s", here, path);
    else if (cwd[0] == '/')
        n = asprintf(&out, "%s/%s", cwd, path);
    else
        n = asprintf(&out, "%s/%s/%s", here, cwd, path);
    free(here);
    return n < 0 ? NULL : out;
}

static int prepare_path(ev_job *ej, size_t i, const irp_evidence_item *def, json_t *shown,
                        char *err, size_t errlen)
{
    ev_item *it = &ej->items[i];
    char *text = NULL;
    size_t len = 0;
    bool secret = false;
    int rc = render_value_text(&def->path, ej->job->scope, &text, &len, &secret, err, errlen);
    if (rc)
        return rc;
    if (secret || strlen(text) != len) {
        snprintf(err, errlen, "collect item %zu: %s", i + 1,
                 secret ? "the path derives from a secret, and evidence paths are journaled"
                        : "the path holds a NUL byte");
        free(text);
        return IRP_EINVAL;
    }
    const char *slash = strrchr(text, '/');
    const char *base = slash ? slash + 1 : text;
    if (!plain_name(base, strlen(base))) {
        snprintf(err, errlen, "collect item %zu: path '%s' names no plain file to copy "
                 "(its last component is '%s')", i + 1, text, base);
        free(text);
        return IRP_EINVAL;
    }
    it->name = strdup(base);
    it->src = absolute(text, ej->cwd);
    free(text);
    if (!it->name || !it->src)
        return IRP_ENOMEM;
    it->source = json_object();
    put_text(it->source, "path", it->src);
    json_array_append_new(shown, json_deep_copy(it->source));
    return 0;
}

/* argv as for run steps: an element that is exactly one template giving a
 * list becomes one argument per item. */
static int add_arg(ev_item *it, json_t *argv, const irp_value *v)
{
    char *text = NULL;
    size_t len = 0;
    int rc = irp_value_render(v, &text, &len);
    if (rc)
        return rc;
    bool secret = irp_value_is_secret(v);
    json_array_append_new(argv, secret ? json_string("***") : irp_json_text(text, len));
    return strvec_push_owned(&it->argv, text);
}

static int prepare_run(ev_job *ej, size_t i, const irp_evidence_item *def, json_t *shown,
                       char *err, size_t errlen)
{
    ev_item *it = &ej->items[i];
    json_t *argv = json_array();
    it->source = json_object();
    json_object_set_new(it->source, "argv", argv);
    for (size_t k = 0; k < def->argc; k++) {
        irp_value *v = NULL;
        int rc = irp_render_str(&def->argv[k], ej->job->scope, &v, err, errlen);
        if (rc)
            return rc;
        if (irp_value_type_of(v) == IRP_VALUE_LIST) {
            for (size_t j = 0; j < irp_value_list_len(v) && !rc; j++)
                rc = add_arg(it, argv, irp_value_list_at(v, j));
        } else {
            rc = add_arg(it, argv, v);
        }
        irp_value_unref(v);
        if (rc)
            return rc;
    }
    if (it->argv.n == 0) {
        snprintf(err, errlen, "collect item %zu: the command rendered to nothing", i + 1);
        return IRP_EINVAL;
    }
    const char *name = def->name ? def->name : "";
    if (!plain_name(name, strlen(name))) {
        snprintf(err, errlen, "collect item %zu: name '%s' must be a plain file name "
                 "(no '/', not '..')", i + 1, name);
        return IRP_EINVAL;
    }
    it->name = strdup(name);
    if (!it->name)
        return IRP_ENOMEM;
    json_t *s = json_deep_copy(it->source);
    put_text(s, "name", it->name);
    json_array_append_new(shown, s);
    return 0;
}

static int push_envf(strvec *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int push_envf(strvec *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    return n < 0 ? IRP_ENOMEM : strvec_push_owned(v, s);
}

/* Commands get what run steps get (SPEC §1.1), but no $IRP_OUTPUT: an
 * evidence step has no outputs. */
static int prepare_env(ev_job *ej, json_t *action, char *err, size_t errlen)
{
    irp_job *job = ej->job;
    const irp_step *st = job->step;
    json_t *shown = st->n_env ? json_object() : NULL;
    if (shown)
        json_object_set_new(action, "env", shown);
    for (size_t i = 0; i < st->n_env; i++) {
        char *text = NULL;
        bool secret = false;
        int rc = irp_render_text(&st->env[i].value, job->scope, &text, &secret, err, errlen);
        if (rc)
            return rc;
        json_object_set_new(shown, st->env[i].key,
                            secret ? json_string("***") : irp_json_text(text, strlen(text)));
        rc = push_envf(&ej->env, "%s=%s", st->env[i].key, text);
        free(text);
        if (rc)
            return rc;
    }
    char *item = NULL;
    irp_value *v = NULL;
    static const char *const item_ref[] = { "item" };
    char ignored[64];
    if (st->has_for_each &&
        job->scope->lookup(job->scope->ctx, item_ref, 1, &v, ignored, sizeof ignored) == 0) {
        if (irp_value_render(v, &item, NULL) != 0)
            item = NULL;
        irp_value_unref(v);
    }
    int rc = push_envf(&ej->env, "IRP_ITEM=%s", item ? item : "");
    free(item);
    rc = rc ? rc : push_envf(&ej->env, "IRP_RUN_ID=%s", job->run_id);
    rc = rc ? rc : push_envf(&ej->env, "IRP_RUN_DIR=%s", job->run_dir);
    rc = rc ? rc : push_envf(&ej->env, "IRP_STEP_ID=%s", st->id);
    rc = rc ? rc : push_envf(&ej->env, "IRP_INSTANCE=%s", job->instance);
    rc = rc ? rc : push_envf(&ej->env, "IRP_INDEX=%zu", job->index);
    rc = rc ? rc : push_envf(&ej->env, "IRP_ATTEMPT=%d", job->attempt);
    return rc;
}

static int prepare_dest(ev_job *ej, json_t *action, char *err, size_t errlen)
{
    irp_job *job = ej->job;
    const char *into = job->step->act.evidence->into;
    if (!into)
        into = job->step->id;
    if (!plain_name(into, strlen(into))) {
        snprintf(err, errlen, "into '%s' must be a plain folder name under the run's evidence/",
                 into);
        return IRP_EINVAL;
    }
    ej->into = strdup(into);
    if (job->has_index && asprintf(&ej->index, "%zu", job->index) < 0)
        ej->index = NULL;
    int n = ej->index ? asprintf(&ej->dir_rel, "evidence/%s/%s", into, ej->index)
                      : asprintf(&ej->dir_rel, "evidence/%s", into);
    if (n < 0)
        ej->dir_rel = NULL;
    if (!ej->into || (job->has_index && !ej->index) || !ej->dir_rel)
        return IRP_ENOMEM;
    put_text(action, "into", ej->dir_rel);
    /* Two items saved under one name: the second could never be written. */
    for (size_t i = 0; i < ej->n_items; i++)
        for (size_t k = 0; k < i; k++)
            if (strcmp(ej->items[i].name, ej->items[k].name) == 0) {
                snprintf(err, errlen, "collect items %zu and %zu are both saved as '%s'",
                         k + 1, i + 1, ej->items[i].name);
                return IRP_EINVAL;
            }
    return 0;
}

static int ev_prepare(irp_job *job, json_t **action, char *err, size_t errlen)
{
    const irp_evidence_action *ev = job->step->act.evidence;
    ev_job *ej = calloc(1, sizeof *ej);
    if (!ej)
        return IRP_ENOMEM;
    job->priv = ej;
    ej->job = job;
    ej->dir_fd = ej->src_fd = ej->out_fd = -1;
    ej->attempt = job->attempt;
    ej->run_dir = strdup(job->run_dir);
    ej->log_path = strdup(job->log_path);
    ej->items = calloc(ev->n_items ? ev->n_items : 1, sizeof *ej->items);
    if (!ej->run_dir || !ej->log_path || !ej->items)
        return IRP_ENOMEM;
    json_t *a = json_object(), *collect = json_array();
    *action = a;
    json_object_set_new(a, "collect", collect);
    if (job->step->rare->cwd.s) {
        int rc = irp_render_text(&job->step->rare->cwd, job->scope, &ej->cwd, NULL, err, errlen);
        if (rc)
            return rc;
        json_object_set_new(a, "cwd", irp_json_text(ej->cwd, strlen(ej->cwd)));
    }
    for (size_t i = 0; i < ev->n_items; i++) {
        const irp_evidence_item *def = &ev->items[i];
        ej->n_items = i + 1;
        int rc = def->path.s ? prepare_path(ej, i, def, collect, err, errlen)
                             : prepare_run(ej, i, def, collect, err, errlen);
        if (rc)
            return rc;
    }
    int rc = prepare_dest(ej, a, err, errlen);
    return rc ? rc : prepare_env(ej, a, err, errlen);
}

/* ---- the worker (thread pool) -------------------------------------------- */

static void fail(ev_job *ej, int errnum, const char *what)
{
    ej->err = errnum ? errnum : EIO;
    ej->err_what = what;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* evidence/<into>[/<index>] below the run directory, each folder made
 * 0700 when missing and opened without following a link. */
static void open_dest_dir(ev_job *ej)
{
    int fd = open(ej->run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        fail(ej, errno, "cannot open the run directory");
        return;
    }
    const char *comps[] = { "evidence", ej->into, ej->index };
    for (size_t i = 0; i < 3 && comps[i]; i++) {
        bool made = mkdirat(fd, comps[i], 0700) == 0;
        if (!made && errno != EEXIST) {
            fail(ej, errno, "cannot create the evidence folder");
            close(fd);
            return;
        }
        int next = openat(fd, comps[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            /* O_DIRECTORY answers ENOTDIR for a link: say what it is. */
            int e = errno;
            struct stat st;
            if (fstatat(fd, comps[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                e = ELOOP;
            fail(ej, e, "cannot open the evidence folder");
            close(fd);
            return;
        }
        /* A new folder: exactly 0700 whatever the umask, and its entry
         * durable in the parent. */
        if (made && (fchmod(next, 0700) != 0 || fsync(fd) != 0)) {
            fail(ej, errno, "cannot create the evidence folder");
            close(next);
            close(fd);
            return;
        }
        close(fd);
        fd = next;
    }
    ej->dir_fd = fd;
}

static bool hash_fd(ev_job *ej, int fd, char out_hex[65], uint64_t *size);

static void op_open(ev_job *ej, const ev_item *it)
{
    if (ej->dir_fd < 0) {
        open_dest_dir(ej);
        if (ej->err)
            return;
    }
    struct stat st;
    if (fstatat(ej->dir_fd, it->name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        /* A whole copy (read-only, so sealed) made by an earlier attempt. */
        if (ej->attempt > 1 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0400) {
            ej->skipped = true;
            int fd = openat(ej->dir_fd, it->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
            if (fd < 0 || !hash_fd(ej, fd, ej->sha256, &ej->size))
                fail(ej, fd < 0 ? errno : EIO, "cannot read the earlier copy");
            if (fd >= 0)
                close(fd);
        } else {
            fail(ej, EEXIST, "cannot save the copy");
        }
        return;
    }
    if (errno != ENOENT) {
        fail(ej, errno, "cannot save the copy");
        return;
    }
    if (it->src) {
        /* O_NONBLOCK: opening a FIFO must not wait for a writer (a
         * timeout could not stop that); reads then poll. */
        ej->src_fd = open(it->src, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (ej->src_fd < 0 || fstat(ej->src_fd, &ej->before) != 0) {
            fail(ej, errno, NULL);
            return;
        }
        if (S_ISDIR(ej->before.st_mode)) {
            fail(ej, EISDIR, NULL);
            return;
        }
        ej->src_poll = !S_ISREG(ej->before.st_mode) && !S_ISBLK(ej->before.st_mode);
    }
    for (int tries = 0; tries < 100; tries++) {
        snprintf(ej->tmp, sizeof ej->tmp, ".irp-partial.%ld.%u", (long)getpid(),
                 atomic_fetch_add(&temp_seq, 1));
        ej->out_fd = openat(ej->dir_fd, ej->tmp,
                            O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (ej->out_fd >= 0 || errno != EEXIST)
            break;
    }
    if (ej->out_fd < 0) {
        fail(ej, errno, "cannot create the copy");
        return;
    }
    ej->tmp_made = true;
    if (!ej->md)
        ej->md = EVP_MD_CTX_new();
    if (!ej->md || EVP_DigestInit_ex(ej->md, EVP_sha256(), NULL) != 1)
        fail(ej, ENOMEM, "cannot hash");
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        if (n == 0)
            return EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static bool all_zero(const unsigned char *b, size_t n)
{
    return n > 0 && b[0] == 0 && memcmp(b, b + 1, n - 1) == 0;
}

/* Whole-buffer runs of zeros become holes, as `cp` does: a sparse disk
 * image stays sparse, and the copy's bytes are the same. */
static int write_copy(ev_job *ej, const unsigned char *b, size_t n)
{
    if (n == BUF_SIZE && all_zero(b, n)) {
        ej->ends_in_hole = true;
        return lseek(ej->out_fd, (off_t)n, SEEK_CUR) < 0 ? errno : 0;
    }
    ej->ends_in_hole = false;
    return write_all(ej->out_fd, b, n);
}

static void hex(const unsigned char *md, unsigned len, char out[65])
{
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < len && i < 32; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[2 * (len < 32 ? len : 32)] = '\0';
}

/* Read-only, on disk, under its own name (never replacing one), the name
 * on disk: only then may evidence.collected announce it. */
static void seal(ev_job *ej, const ev_item *it)
{
    if (fchmod(ej->out_fd, 0400) != 0 || fsync(ej->out_fd) != 0) {
        fail(ej, errno, "cannot write the copy");
        return;
    }
    int rc = close(ej->out_fd);
    ej->out_fd = -1;
    if (rc != 0) {
        fail(ej, errno, "cannot write the copy");
        return;
    }
    rc = renameat2(ej->dir_fd, ej->tmp, ej->dir_fd, it->name, RENAME_NOREPLACE);
    if (rc != 0 && (errno == EINVAL || errno == ENOSYS)) {
        /* A file system without RENAME_NOREPLACE: a link refuses to
         * replace too. */
        rc = linkat(ej->dir_fd, ej->tmp, ej->dir_fd, it->name, 0);
        if (rc == 0)
            unlinkat(ej->dir_fd, ej->tmp, 0);
    }
    if (rc != 0) {
        fail(ej, errno, "cannot save the copy");
        return;
    }
    ej->tmp_made = false;
    ej->renamed = true;
    if (fsync(ej->dir_fd) != 0) {
        fail(ej, errno, "cannot save the copy");
        return;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (EVP_DigestFinal_ex(ej->md, md, &len) != 1) {
        fail(ej, ENOMEM, "cannot hash");
        return;
    }
    hex(md, len, ej->sha256);
    ej->done = true;
}

/* One slice: until EOF, SLICE_BYTES or SLICE_MS. */
static void op_copy(ev_job *ej, const ev_item *it)
{
    if (!ej->buf)
        ej->buf = malloc(BUF_SIZE);
    if (!ej->buf) {
        fail(ej, ENOMEM, "cannot copy");
        return;
    }
    int64_t t0 = mono_ms();
    uint64_t slice = 0;
    while (!atomic_load(&ej->stop)) {
        if (ej->src_poll) {
            struct pollfd p = { .fd = ej->src_fd, .events = POLLIN };
            int r = poll(&p, 1, POLL_MS);
            if (r < 0 && errno != EINTR) {
                fail(ej, errno, NULL);
                return;
            }
            if (r <= 0) {
                if (mono_ms() - t0 >= SLICE_MS)
                    return;
                continue;
            }
        }
        ssize_t n = read(ej->src_fd, ej->buf, BUF_SIZE);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0) {
            fail(ej, errno, NULL);
            return;
        }
        if (n == 0) {
            if (ej->ends_in_hole && ftruncate(ej->out_fd, (off_t)ej->size) != 0) {
                fail(ej, errno, "cannot write the copy");
                return;
            }
            if (fstat(ej->src_fd, &ej->after) != 0) {
                fail(ej, errno, NULL);
                return;
            }
            seal(ej, it);
            return;
        }
        if (EVP_DigestUpdate(ej->md, ej->buf, (size_t)n) != 1) {
            fail(ej, ENOMEM, "cannot hash");
            return;
        }
        int rc = write_copy(ej, ej->buf, (size_t)n);
        if (rc) {
            fail(ej, rc, "cannot write the copy");
            return;
        }
        ej->size += (uint64_t)n;
        slice += (uint64_t)n;
        if (slice >= SLICE_BYTES || mono_ms() - t0 >= SLICE_MS)
            return;
    }
    ej->stopped = true;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Nothing of a failed item stays: no partial file, no copy that
 * evidence.collected never announced. */
static void discard(ev_job *ej, const ev_item *it)
{
    close_fd(&ej->src_fd);
    close_fd(&ej->out_fd);
    if (ej->tmp_made && ej->dir_fd >= 0)
        unlinkat(ej->dir_fd, ej->tmp, 0);
    if (ej->renamed && ej->dir_fd >= 0 && it)
        unlinkat(ej->dir_fd, it->name, 0);
    ej->tmp_made = ej->renamed = false;
}

/* SHA-256 of a whole file, in the job's one buffer; on the pool. */
static bool hash_fd(ev_job *ej, int fd, char out_hex[65], uint64_t *size)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = fd >= 0 && md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
              (ej->buf || (ej->buf = malloc(BUF_SIZE)));
    ssize_t n = 0;
    uint64_t total = 0;
    while (ok && (n = read(fd, ej->buf, BUF_SIZE)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        ok = n > 0 && EVP_DigestUpdate(md, ej->buf, (size_t)n) == 1;
        total += n > 0 ? (uint64_t)n : 0;
    }
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    ok = ok && EVP_DigestFinal_ex(md, out, &len) == 1;
    if (ok)
        hex(out, len, out_hex);
    if (size)
        *size = total;
    EVP_MD_CTX_free(md);
    return ok;
}

static void op_loghash(ev_job *ej)
{
    int fd = open(ej->log_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    hash_fd(ej, fd, ej->log_sha256, NULL);
    if (fd >= 0)
        close(fd);
}

static void work_cb(uv_work_t *w)
{
    ev_job *ej = w->data;
    const ev_item *it = ej->cur < ej->n_items ? &ej->items[ej->cur] : NULL;
    switch (ej->op) {
    case OP_OPEN: op_open(ej, it); break;
    case OP_COPY: op_copy(ej, it); break;
    case OP_SEAL: seal(ej, it); break;
    case OP_DISCARD: discard(ej, it); break;
    case OP_LOGHASH: op_loghash(ej); break;
    }
}

/* ---- the loop's side ------------------------------------------------------ */

static void ej_free(ev_job *ej)
{
    discard(ej, NULL);
    close_fd(&ej->dir_fd);
    for (size_t i = 0; i < ej->n_items; i++) {
        free(ej->items[i].name);
        free(ej->items[i].src);
        strvec_release(&ej->items[i].argv);
        json_decref(ej->items[i].source);
    }
    free(ej->items);
    free(ej->run_dir);
    free(ej->log_path);
    free(ej->dir_rel);
    free(ej->into);
    free(ej->index);
    free(ej->cwd);
    strvec_release(&ej->env);
    EVP_MD_CTX_free(ej->md);
    free(ej->buf);
    free(ej);
}

static void after_work(uv_work_t *w, int status);

static void queue(ev_job *ej, ev_op op)
{
    ej->op = op;
    ej->busy = true;
    ej->work.data = ej;
    /* uv_queue_work fails only without a work callback. */
    if (uv_queue_work(ej->job->loop, &ej->work, work_cb, after_work) != 0) {
        work_cb(&ej->work);
        after_work(&ej->work, 0);
    }
}

static void finish(ev_job *ej, irp_job_outcome outcome)
{
    irp_job *job = ej->job;
    job->outcome = outcome;
    if (ej->procs > 1 && ej->op != OP_LOGHASH) {
        queue(ej, OP_LOGHASH);
        return;
    }
    snprintf(job->log_sha256, sizeof job->log_sha256, "%s", ej->log_sha256);
    /* The engine releases the job from inside: ej is gone after this. */
    irp_job_finish(job);
}

static const char *errtext(int errnum)
{
    return errnum == ELOOP ? "is a symbolic link (not followed)" : strerror(errnum);
}

/* The first failing item fails the attempt: say which and why, then
 * remove what it left. */
static void fail_item(ev_job *ej)
{
    irp_job *job = ej->job;
    const ev_item *it = &ej->items[ej->cur];
    if (ej->stopped || (!ej->err && atomic_load(&ej->stop)))
        snprintf(job->error, sizeof job->error, "%s: stopped", it->name);
    else if (ej->err && ej->err_what)
        snprintf(job->error, sizeof job->error, "%s: %s in %s: %s", it->name, ej->err_what,
                 ej->dir_rel, errtext(ej->err));
    else if (ej->err)
        snprintf(job->error, sizeof job->error, "%s: %s", it->name, errtext(ej->err));
    /* The copy (not the source) could not be written: the run's own
     * record fails, so the run starts nothing new and exits 4 (SPEC §3). */
    if (ej->err_what && (ej->err == ENOSPC || ej->err == EDQUOT || ej->err == EIO ||
                         ej->err == EROFS || ej->err == EFBIG))
        job->storage_error = irp_err_from_errno(ej->err);
    queue(ej, OP_DISCARD);
}

static void next_item(ev_job *ej);

static json_t *stat_json(const struct stat *st)
{
    char t[IRP_TIME_BUFSZ];
    irp_time_format((int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000, t);
    return json_pack("{s:I, s:s}", "size", (json_int_t)st->st_size, "mtime", t);
}

static void collected(ev_job *ej)
{
    irp_job *job = ej->job;
    const ev_item *it = &ej->items[ej->cur];
    json_t *ev = json_object();
    put_text(ev, "item", it->name);
    json_object_set_new(ev, "source", json_deep_copy(it->source));
    char *rel = NULL;
    if (asprintf(&rel, "%s/%s", ej->dir_rel, it->name) < 0) {
        json_decref(ev);
        snprintf(job->error, sizeof job->error, "%s: %s", it->name, irp_strerror(IRP_ENOMEM));
        finish(ej, IRP_JOB_FAILED);
        return;
    }
    put_text(ev, "path", rel);
    free(rel);
    json_object_set_new(ev, "size", json_integer((json_int_t)ej->size));
    json_object_set_new(ev, "sha256", json_string(ej->sha256));
    if (ej->skipped)
        json_object_set_new(ev, "kept", json_true());
    if (it->src && !ej->skipped) {
        char t[IRP_TIME_BUFSZ];
        irp_time_format((int64_t)ej->before.st_mtim.tv_sec * 1000 +
                        ej->before.st_mtim.tv_nsec / 1000000, t);
        json_object_set_new(ev, "mtime", json_string(t));
    }
    put_text(ev, "collector", job->operator_name ? job->operator_name : "");
    if (it->src && !ej->skipped && (ej->before.st_size != ej->after.st_size ||
                    ej->before.st_mtim.tv_sec != ej->after.st_mtim.tv_sec ||
                    ej->before.st_mtim.tv_nsec != ej->after.st_mtim.tv_nsec)) {
        json_object_set_new(ev, "warning", json_string("source changed during the copy"));
        json_object_set_new(ev, "before", stat_json(&ej->before));
        json_object_set_new(ev, "after", stat_json(&ej->after));
    }
    int rc = job->emit(job, "evidence.collected", ev);
    if (rc) {
        snprintf(job->error, sizeof job->error, "journal: %s", irp_strerror(rc));
        finish(ej, IRP_JOB_FAILED);
        return;
    }
    ej->cur++;
    next_item(ej);
}

static void reset_item(ev_job *ej)
{
    close_fd(&ej->src_fd);
    close_fd(&ej->out_fd);
    ej->tmp_made = ej->renamed = ej->skipped = ej->done = ej->stopped = false;
    ej->src_poll = ej->ends_in_hole = false;
    ej->size = 0;
    ej->err = 0;
    ej->err_what = NULL;
    memset(&ej->before, 0, sizeof ej->before);
    memset(&ej->after, 0, sizeof ej->after);
}

static void next_item(ev_job *ej)
{
    reset_item(ej);
    if (ej->cur == ej->n_items) {
        finish(ej, IRP_JOB_SUCCEEDED);
        return;
    }
    if (atomic_load(&ej->stop)) {
        snprintf(ej->job->error, sizeof ej->job->error, "%s: stopped", ej->items[ej->cur].name);
        finish(ej, IRP_JOB_FAILED);
        return;
    }
    queue(ej, OP_OPEN);
}

static int capture(const char *buf, size_t len, void *data)
{
    ev_job *ej = data;
    if (ej->released || ej->out_fd < 0)
        return IRP_ECANCELED;
    int rc = write_all(ej->out_fd, buf, len);
    if (rc) {
        fail(ej, rc, "cannot write the copy");
        return irp_err_from_errno(rc);
    }
    if (EVP_DigestUpdate(ej->md, buf, len) != 1) {
        fail(ej, ENOMEM, "cannot hash");
        return IRP_ENOMEM;
    }
    ej->size += len;
    return 0;
}

static void captured(irp_proc *p, const irp_proc_result *res, void *data)
{
    (void)p;
    ev_job *ej = data;
    ej->proc = NULL;
    if (ej->released) {
        ej_free(ej);
        return;
    }
    irp_job *job = ej->job;
    const ev_item *it = &ej->items[ej->cur];
    if (ej->procs == 1)
        snprintf(ej->log_sha256, sizeof ej->log_sha256, "%s", res->log_sha256);
    if (!res->term_signal && res->exit_status == 0 && !res->log_error && !ej->err) {
        queue(ej, OP_SEAL);
        return;
    }
    job->exit_code = res->term_signal ? -1 : res->exit_status;
    job->term_signal = res->term_signal;
    if (ej->err)
        ;   /* fail_item says it */
    else if (res->log_error)
        snprintf(job->error, sizeof job->error, "%s: log: %s", it->name,
                 irp_strerror(res->log_error));
    else if (res->term_signal)
        snprintf(job->error, sizeof job->error, "%s: %s killed by signal %d", it->name,
                 it->argv.v[0], res->term_signal);
    else
        snprintf(job->error, sizeof job->error, "%s: %s exited with status %d", it->name,
                 it->argv.v[0], res->exit_status);
    if (!ej->err) {
        /* The message above stands; only the partial copy goes. */
        queue(ej, OP_DISCARD);
        return;
    }
    fail_item(ej);
}

static void spawn_item(ev_job *ej)
{
    irp_job *job = ej->job;
    ev_item *it = &ej->items[ej->cur];
    strvec envp = STRVEC_INIT;
    int rc = 0;
    for (const char *const *e = job->base_env; e && *e && !rc; e++)
        rc = strvec_push(&envp, *e);
    for (size_t i = 0; i < ej->env.n && !rc; i++)
        rc = strvec_push(&envp, ej->env.v[i]);
    if (!rc) {
        irp_proc_opts o = {
            .argv = (const char *const *)it->argv.v, .envp = (const char *const *)envp.v,
            .cwd = ej->cwd, .log_path = job->log_path, .redact = job->redact,
            .stdout_to_log = false, .on_stdout = capture, .on_exit = captured, .data = ej,
        };
        rc = irp_proc_spawn(job->loop, &o, &ej->proc);
    }
    strvec_release(&envp);
    if (rc == 0) {
        ej->procs++;
        if (job->on_spawn)
            job->on_spawn(job, irp_proc_pid(ej->proc));
        return;
    }
    job->exit_code = rc == IRP_ENOENT ? 127 : -1;
    snprintf(job->error, sizeof job->error, "%s: cannot start %s: %s", it->name, it->argv.v[0],
             rc == IRP_ENOENT ? "command not found"
             : rc == IRP_EBUSY ? "out of file descriptors or processes" : irp_strerror(rc));
    queue(ej, OP_DISCARD);
}

static void after_work(uv_work_t *w, int status)
{
    (void)status;
    ev_job *ej = w->data;
    ej->busy = false;
    if (ej->released) {
        ej_free(ej);
        return;
    }
    const ev_item *it = &ej->items[ej->cur < ej->n_items ? ej->cur : 0];
    switch (ej->op) {
    case OP_OPEN:
        if (ej->err)
            fail_item(ej);
        else if (ej->skipped)
            collected(ej);
        else if (it->src)
            queue(ej, OP_COPY);
        else
            spawn_item(ej);
        break;
    case OP_COPY:
        if (ej->err || ej->stopped)
            fail_item(ej);
        else if (ej->done)
            collected(ej);
        else if (atomic_load(&ej->stop)) {
            ej->stopped = true;
            fail_item(ej);
        } else
            queue(ej, OP_COPY);
        break;
    case OP_SEAL:
        if (ej->err)
            fail_item(ej);
        else
            collected(ej);
        break;
    case OP_DISCARD:
        finish(ej, IRP_JOB_FAILED);
        break;
    case OP_LOGHASH:
        finish(ej, ej->job->outcome);
        break;
    }
}

static int ev_start(irp_job *job)
{
    ev_job *ej = job->priv;
    ej->cur = 0;
    next_item(ej);
    return 0;
}

/* A timeout or Ctrl-C: the copy loop stops within a slice; a command's
 * process group gets the signal. */
static void ev_cancel(irp_job *job, int sig)
{
    ev_job *ej = job->priv;
    if (!ej)
        return;
    atomic_store(&ej->stop, true);
    if (ej->proc)
        irp_proc_kill(ej->proc, sig);
}

/* Work under way, or a child not yet finished, keeps ej alive: whichever
 * ends it frees it. */
static void ev_release(irp_job *job)
{
    ev_job *ej = job->priv;
    job->priv = NULL;
    if (!ej)
        return;
    ej->job = NULL;
    if (ej->busy || ej->proc) {
        ej->released = true;
        atomic_store(&ej->stop, true);
        if (ej->proc)
            irp_proc_kill(ej->proc, SIGKILL);
        return;
    }
    ej_free(ej);
}

const irp_executor irp_exec_evidence = {
    IRP_ACT_EVIDENCE, true, ev_prepare, ev_start, ev_cancel, ev_release,
};
