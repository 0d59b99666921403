/* The `run` executor: a command, argv or `/bin/sh -c`, as a child process
 * in its own process group (proc.h), logged and with outputs read back
 * from $IRP_OUTPUT. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "irp/error.h"
#include "irp/exec.h"
#include "irp/jsonutil.h"
#include "irp/proc.h"
#include "irp/template.h"
#include "strvec.h"

#define STDOUT_KEEP (64 * 1024)
#define OUTPUT_MAX (64 * 1024)

typedef struct run_job {
    strvec argv;                 /* one block: the pointers, then the texts
                                    (argv_finish); not strvec-owned */
    bool argv_not_utf8;          /* some argument is not UTF-8: add argv_b64 */
    strvec env;                  /* the step's env, then IRP_* (push_irp_env) */
    bool irp_env;
    char *cwd;
    char *output_path;           /* in the run_job's allocation */
    irp_proc *proc;
} run_job;

/* The arguments as they are rendered: each NUL-terminated, back to back,
 * in a buffer on the stack while they fit.  argv_finish() lays them out
 * in one allocation, so an attempt costs one for its whole argv. */
#define ARGBUF_SMALL 512

typedef struct argbuf {
    char *p;
    size_t len, cap, n;
    char small[ARGBUF_SMALL];
} argbuf;

static void argbuf_init(argbuf *b)
{
    b->p = b->small;
    b->len = b->n = 0;
    b->cap = sizeof b->small;
}

static void argbuf_release(argbuf *b)
{
    if (b->p != b->small)
        free(b->p);
    argbuf_init(b);
}

/* One argument: s up to its first NUL, as a C string would end it. */
static int argbuf_add(argbuf *b, const char *s, size_t len)
{
    const char *nul = memchr(s, '\0', len);
    if (nul)
        len = (size_t)(nul - s);
    if (len + 1 > b->cap - b->len) {
        size_t cap = b->cap;
        while (len + 1 > cap - b->len) {
            if (cap > SIZE_MAX / 2)
                return IRP_ENOMEM;
            cap *= 2;
        }
        char *p = b->p == b->small ? malloc(cap) : realloc(b->p, cap);
        if (!p)
            return IRP_ENOMEM;
        if (b->p == b->small)
            memcpy(p, b->small, b->len);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, len);
    b->p[b->len + len] = '\0';
    b->len += len + 1;
    b->n++;
    return 0;
}

/* r->argv from b: the NULL-terminated pointers and the texts they point
 * to, in one block that run_release frees. */
static int argv_finish(run_job *r, argbuf *b)
{
    size_t head = (b->n + 1) * sizeof(char *);
    char **v = malloc(head + b->len);
    if (!v)
        return IRP_ENOMEM;
    char *text = (char *)v + head;
    memcpy(text, b->p, b->len);
    for (size_t i = 0; i < b->n; i++) {
        v[i] = text;
        text += strlen(text) + 1;
    }
    v[b->n] = NULL;
    r->argv = (strvec){ v, b->n, b->n + 1 };
    return 0;
}

/* Render one playbook string to a value: the text itself when it holds no
 * template. */
int irp_render_str(const irp_str *s, const irp_scope *scope, irp_value **out,
                   char *err, size_t errlen)
{
    if (!s->tpl) {
        *out = irp_value_new_string(s->s, s->len);
        return *out ? 0 : IRP_ENOMEM;
    }
    irp_expr_error e = { 0 };
    int rc = irp_template_render(s->tpl, scope, out, &e);
    if (rc)
        snprintf(err, errlen, "%s", e.msg[0] ? e.msg : irp_strerror(rc));
    return rc;
}

/* Render to text (lists and maps as JSON), straight from the template:
 * no value is built only to be written out. */
int irp_render_text(const irp_str *s, const irp_scope *scope, char **out, bool *secret,
                    char *err, size_t errlen)
{
    if (!s->tpl) {
        if (secret)
            *secret = false;
        *out = malloc((size_t)s->len + 1);
        if (!*out)
            return IRP_ENOMEM;
        memcpy(*out, s->s, s->len);
        (*out)[s->len] = '\0';
        return 0;
    }
    irp_expr_error e = { 0 };
    int rc = irp_template_render_text(s->tpl, scope, out, NULL, secret, &e);
    if (rc)
        snprintf(err, errlen, "%s", e.msg[0] ? e.msg : irp_strerror(rc));
    return rc;
}

/* Whether s[0..len) is UTF-8 without NUL, as irp_utf8_valid() says, with
 * plain ASCII -- nearly every argument -- told in one quick pass. */
static bool text_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len; i++)
        if (u[i] - 1u >= 0x7Fu)   /* 0 or >= 0x80 */
            return irp_utf8_valid(s, len);
    return true;
}

/* The journal's text of an argument or variable: checked once here, so
 * jansson need not check it again. */
static json_t *shown_text(const char *s, size_t len, bool valid)
{
    return valid ? json_stringn_nocheck(s, len) : irp_json_text(s, len);
}

/* One argument: text[0..len), journaled whole; argv gets it up to a NUL. */
static int add_arg_text(run_job *r, argbuf *b, json_t *shown, const char *text, size_t len,
                        bool secret)
{
    bool valid = secret || text_valid(text, len);
    r->argv_not_utf8 |= !valid;
    json_array_append_new(shown, secret ? json_string("***") : shown_text(text, len, valid));
    return argbuf_add(b, text, len);
}

static int add_arg(run_job *r, argbuf *b, json_t *shown, const irp_value *v)
{
    char num[IRP_NUMBER_BUFSZ], *owned;
    size_t len;
    const char *text = irp_value_text(v, num, &len, &owned);
    if (!text)
        return IRP_ENOMEM;
    int rc = add_arg_text(r, b, shown, text, len, irp_value_is_secret(v));
    free(owned);
    return rc;
}

/* An element of the argv form that is not one expression: its text is
 * the argument, whatever it holds. */
static int add_text_arg(irp_job *job, run_job *r, argbuf *b, json_t *shown, const irp_str *s,
                        char *err, size_t errlen)
{
    if (!s->tpl)
        return add_arg_text(r, b, shown, s->s, s->len, false);
    char *text = NULL;
    size_t len;
    bool secret = false;
    irp_expr_error e = { 0 };
    int rc = irp_template_render_text(s->tpl, job->scope, &text, &len, &secret, &e);
    if (rc) {
        snprintf(err, errlen, "%s", e.msg[0] ? e.msg : irp_strerror(rc));
        return rc;
    }
    rc = add_arg_text(r, b, shown, text, len, secret);
    free(text);
    return rc;
}

/* The raw bytes of every argument, when some are not UTF-8 (SPEC §3). */
static void add_argv_b64(irp_job *job, run_job *r, json_t *action)
{
    json_t *b64 = json_array();
    json_t *shown = json_object_get(action, "argv");
    for (size_t i = 0; i < r->argv.n; i++) {
        const char *s = json_string_value(json_array_get(shown, i));
        bool secret = s && strcmp(s, "***") == 0 && strcmp(r->argv.v[i], "***") != 0;
        json_array_append_new(b64, secret ? json_string("***")
                                          : irp_json_b64(r->argv.v[i], strlen(r->argv.v[i])));
    }
    json_object_set_new(action, "argv_b64", b64);
}

/* argv form: an element that is exactly one template giving a list
 * becomes one argument per item. */
static int render_argv(irp_job *job, run_job *r, argbuf *b, json_t *shown, char *err,
                       size_t errlen)
{
    const irp_run_action *run = job->step->act.run;
    for (size_t i = 0; i < run->argc; i++) {
        if (!run->argv[i].tpl || !irp_template_is_single_expr(run->argv[i].tpl)) {
            int rc = add_text_arg(job, r, b, shown, &run->argv[i], err, errlen);
            if (rc)
                return rc;
            continue;
        }
        irp_value *v = NULL;
        int rc = irp_render_str(&run->argv[i], job->scope, &v, err, errlen);
        if (rc)
            return rc;
        if (irp_value_type_of(v) == IRP_VALUE_LIST) {
            for (size_t k = 0; k < irp_value_list_len(v) && !rc; k++)
                rc = add_arg(r, b, shown, irp_value_list_at(v, k));
        } else {
            rc = add_arg(r, b, shown, v);
        }
        irp_value_unref(v);
        if (rc)
            return rc;
    }
    if (b->n == 0) {
        snprintf(err, errlen, "the command rendered to nothing");
        return IRP_EINVAL;
    }
    return 0;
}

/* Shell form: every ${{ }} reaches the script as "${IRP_V<n>}", so no
 * value can become shell syntax. */
static int render_shell(irp_job *job, run_job *r, argbuf *b, json_t *shown, char *err,
                        size_t errlen)
{
    const irp_str *script = &job->step->act.run->script;
    int rc = argbuf_add(b, "/bin/sh", 7);
    if (!rc)
        rc = argbuf_add(b, "-c", 2);
    if (rc)
        return rc;
    /* Journaled as executed (docs/journal.md). */
    json_array_append_new(shown, json_string("/bin/sh"));
    json_array_append_new(shown, json_string("-c"));
    if (!script->tpl) {
        json_array_append_new(shown, irp_json_text(script->s, script->len));
        return argbuf_add(b, script->s, script->len);
    }
    irp_shell_script sh = { 0 };
    irp_expr_error e = { 0 };
    rc = irp_template_shell_script(script->tpl, job->scope, &sh, &e);
    if (rc) {
        snprintf(err, errlen, "%s", e.msg[0] ? e.msg : irp_strerror(rc));
        return rc;
    }
    json_array_append_new(shown, irp_json_text(sh.text, sh.len));
    rc = argbuf_add(b, sh.text, sh.len);
    for (size_t i = 0; i < sh.nvalues && !rc; i++)
        rc = strvec_push(&r->env, sh.env[i]);
    irp_shell_script_release(&sh);
    return rc;
}

/* KEY=value, built without printf: every spawn sets eight of them. */
static int push_env(strvec *v, const char *key, const char *value)
{
    size_t k = strlen(key), n = strlen(value);
    char *s = malloc(k + n + 2);
    if (!s)
        return IRP_ENOMEM;
    memcpy(s, key, k);
    s[k] = '=';
    memcpy(s + k + 1, value, n + 1);
    return strvec_push_owned(v, s);
}

static int push_env_num(strvec *v, const char *key, long long n)
{
    char num[24];
    snprintf(num, sizeof num, "%lld", n);
    return push_env(v, key, num);
}

static int render_env(irp_job *job, run_job *r, json_t *action, char *err, size_t errlen)
{
    const irp_step *st = job->step;
    json_t *shown = json_object();
    json_object_set_new(action, "env", shown);
    for (size_t i = 0; i < st->n_env; i++) {
        const irp_str *val = &st->env[i].value;
        char *text = NULL;
        bool secret = false;
        int rc = val->tpl ? irp_render_text(val, job->scope, &text, &secret, err, errlen) : 0;
        if (rc)
            return rc;
        /* A literal is used where it is, in the playbook. */
        const char *t = val->tpl ? text : val->s;
        size_t len = strlen(t);
        json_object_set_new(shown, st->env[i].key,
                            secret ? json_string("***") : shown_text(t, len, text_valid(t, len)));
        rc = push_env(&r->env, st->env[i].key, t);
        free(text);
        if (rc)
            return rc;
    }
    return 0;
}

/* The IRP_* variables a command sees, after the step's own.  Made when
 * the command starts, not when its action is rendered: a simulation
 * renders every action and starts none.  Once, though run_start may be
 * called again (out of descriptors). */
static int push_irp_env(irp_job *job, run_job *r)
{
    if (r->irp_env)
        return 0;
    const irp_step *st = job->step;
    char item[512] = "", err[256];
    irp_value *it = NULL;
    static const char *const item_ref[] = { "item" };
    if (st->has_for_each &&
        job->scope->lookup(job->scope->ctx, item_ref, 1, &it, err, sizeof err) == 0) {
        char *text = NULL;
        if (irp_value_render(it, &text, NULL) == 0) {
            snprintf(item, sizeof item, "%s", text);
            free(text);
        }
        irp_value_unref(it);
    }
    int rc = push_env(&r->env, "IRP_RUN_ID", job->run_id);
    rc = rc ? rc : push_env(&r->env, "IRP_RUN_DIR", job->run_dir);
    rc = rc ? rc : push_env(&r->env, "IRP_STEP_ID", st->id);
    rc = rc ? rc : push_env(&r->env, "IRP_INSTANCE", job->instance);
    rc = rc ? rc : push_env(&r->env, "IRP_ITEM", item);
    rc = rc ? rc : push_env_num(&r->env, "IRP_INDEX", (long long)job->index);
    rc = rc ? rc : push_env_num(&r->env, "IRP_ATTEMPT", job->attempt);
    rc = rc ? rc : push_env(&r->env, "IRP_OUTPUT", r->output_path);
    r->irp_env = rc == 0;
    return rc;
}

static int run_prepare(irp_job *job, json_t **action, char *err, size_t errlen)
{
    /* The outputs file's path (the log's + ".out") lives at the end of
     * the job's own allocation. */
    size_t n = strlen(job->log_path);
    run_job *r = calloc(1, sizeof *r + n + sizeof ".out");
    if (!r)
        return IRP_ENOMEM;
    r->output_path = (char *)(r + 1);
    memcpy(r->output_path, job->log_path, n);
    memcpy(r->output_path + n, ".out", sizeof ".out");
    job->priv = r;
    json_t *a = json_object(), *shown = json_array();
    *action = a;
    json_object_set_new(a, "argv", shown);
    argbuf b;
    argbuf_init(&b);
    int rc = job->step->act.run->shell ? render_shell(job, r, &b, shown, err, errlen)
                                        : render_argv(job, r, &b, shown, err, errlen);
    if (!rc)
        rc = argv_finish(r, &b);
    argbuf_release(&b);
    if (rc)
        return rc;
    if (r->argv_not_utf8)
        add_argv_b64(job, r, a);
    if (job->step->rare->cwd.s) {
        rc = irp_render_text(&job->step->rare->cwd, job->scope, &r->cwd, NULL, err, errlen);
        if (rc)
            return rc;
        json_object_set_new(a, "cwd", irp_json_text(r->cwd, strlen(r->cwd)));
    }
    return render_env(job, r, a, err, errlen);
}

/* Lines `key=value` in $IRP_OUTPUT; last value wins; 64 KiB in all.
 * *found: something is at path (the command made the file, or planted
 * something there, which is read only if it is a plain file). */
static irp_value *read_outputs(const char *path, bool *found)
{
    irp_value *map = irp_value_new_map();
    /* O_NONBLOCK: a FIFO made there must not hang the loop. */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    *found = fd >= 0 || errno != ENOENT;
    if (fd < 0)
        return map;
    struct stat st;
    FILE *f = NULL;
    if (!map || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0
        || !(f = fdopen(fd, "r"))) {
        close(fd);
        return map;
    }
    char *line = NULL;
    size_t cap = 0, total = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0 && total < OUTPUT_MAX) {
        total += (size_t)n;
        if (line[n - 1] == '\n')
            line[--n] = '\0';
        char *eq = strchr(line, '=');
        if (!eq || eq == line)
            continue;
        irp_value *v = irp_value_new_string(eq + 1, (size_t)(n - (eq + 1 - line)));
        if (v)
            irp_value_map_set(map, line, (size_t)(eq - line), v);
    }
    free(line);
    fclose(f);
    return map;
}

/* Output a child derived from a secret (it echoed $TOKEN) is as secret as
 * the secret: tainted, it is written *** wherever irp shows it. */
static bool holds_secret(const irp_value *v, const char *const *redact)
{
    size_t len;
    const char *s = irp_value_string(v, &len);
    for (; redact && *redact; redact++) {
        size_t rl = strlen(*redact);
        if (rl >= 6 && memmem(s, len, *redact, rl))
            return true;
    }
    return false;
}

static irp_value *taint_secrets(irp_value *v, const char *const *redact)
{
    if (!v)
        return v;
    if (irp_value_type_of(v) == IRP_VALUE_STRING) {
        if (holds_secret(v, redact))
            irp_value_taint(v);
        return v;
    }
    for (size_t i = 0; i < irp_value_map_len(v); i++) {
        irp_value *x = irp_value_map_value_at(v, i);
        if (holds_secret(x, redact))
            irp_value_taint(x);
    }
    return v;
}

/* Out of descriptors.  The engine retries every waiting start each time
 * an attempt ends; with 1,000 starts waiting, each retry costing a few
 * system calls only to fail the same way, that is quadratic and slows the
 * run to a crawl.  Descriptors come back when one of our children ends,
 * so after a start failed with IRP_EBUSY, later starts on that loop fail
 * at once, with no system call, until one has.  Only while a child of
 * ours runs: its end is then sure to come and retry them.  One loop at a
 * time, on its thread, as everything here. */
static struct {
    const uv_loop_t *loop;
    size_t live;                 /* our children running on loop */
    unsigned long ended;         /* ... and ended there */
    unsigned long ended_at_busy; /* `ended` when a start last ran out */
    bool busy;
} fd_gate;

static bool fd_gate_closed(const uv_loop_t *loop)
{
    return fd_gate.loop == loop && fd_gate.busy && fd_gate.live > 0 &&
           fd_gate.ended == fd_gate.ended_at_busy;
}

static void fd_gate_note(const uv_loop_t *loop, int started_rc)
{
    if (fd_gate.loop != loop) {
        if (fd_gate.live > 0)
            return;              /* another loop is busy: leave its count alone */
        fd_gate.loop = loop;
        fd_gate.busy = false;
    }
    if (started_rc == 0)
        fd_gate.live++;
    else if (started_rc == IRP_EBUSY) {
        fd_gate.busy = true;
        fd_gate.ended_at_busy = fd_gate.ended;
    }
}

static void fd_gate_ended(const uv_loop_t *loop)
{
    if (fd_gate.loop == loop && fd_gate.live > 0) {
        fd_gate.live--;
        fd_gate.ended++;
    }
}

static void run_exited(irp_proc *p, const irp_proc_result *res, void *data)
{
    irp_job *job = data;
    run_job *r = job->priv;
    r->proc = NULL;
    fd_gate_ended(job->loop);
    job->exit_code = res->term_signal ? -1 : res->exit_status;
    job->term_signal = res->term_signal;
    job->outcome = !res->term_signal && res->exit_status == 0 ? IRP_JOB_SUCCEEDED : IRP_JOB_FAILED;
    snprintf(job->log_sha256, sizeof job->log_sha256, "%s", res->log_sha256);
    if (res->stdout_head)
        job->stdout_v = taint_secrets(irp_value_new_string(res->stdout_head, res->stdout_head_len),
                                      job->redact);
    bool found;
    job->outputs = taint_secrets(read_outputs(r->output_path, &found), job->redact);
    if (found)
        unlink(r->output_path);
    if (res->log_error) {
        snprintf(job->error, sizeof job->error, "log: %s", irp_strerror(res->log_error));
        /* The log is the run's own record of this step: once it could not
         * be written (a full disk), the run must start nothing new and
         * exit 4 (SPEC §3).  Out of memory for the kept stdout head is
         * the step's problem, not the record's. */
        if (res->log_error != IRP_ENOMEM)
            job->storage_error = res->log_error;
    }
    irp_job_finish(job);
}

/* The folder of path (the run's logs/), opened O_PATH|O_NOFOLLOW and
 * checked to be a directory, so a symlink planted for it is refused
 * (ELOOP), never written through; *name is the rest of path.  Folders
 * further up are the run directory's, wherever --runs put it.  -1 with
 * errno on failure; AT_FDCWD for a path without '/'. */
static int open_folder(const char *path, const char **name)
{
    const char *slash = strrchr(path, '/');
    *name = slash ? slash + 1 : path;
    if (!slash)
        return AT_FDCWD;
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
    int e = 0;
    if (fstat(dfd, &st) != 0)
        e = errno;
    else if (S_ISLNK(st.st_mode))
        e = ELOOP;
    else if (!S_ISDIR(st.st_mode))
        e = ENOTDIR;
    if (e == 0)
        return dfd;
    close(dfd);
    errno = e;
    return -1;
}

static void close_folder(int dfd)
{
    if (dfd >= 0)
        close(dfd);
}

/* 0600, never through a symlink. */
static int create_at(int dfd, const char *name, int flags)
{
    return openat(dfd, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | flags, 0600);
}

/* IRP_EBUSY when out of descriptors (try later), else the run's record
 * failing: job->error and storage_error say which file and why. */
static int run_file_error(irp_job *job, const char *path, const char *what, int e)
{
    if (e == EMFILE || e == ENFILE)
        return IRP_EBUSY;
    job->storage_error = e == ELOOP ? IRP_EACCES : irp_err_from_errno(e);
    snprintf(job->error, sizeof job->error, "cannot create %s %s: %s", what, path,
             e == ELOOP ? "it or its folder is a symbolic link (never followed)"
                         : strerror(e));
    return job->storage_error;
}

/* The outputs file is the command's to create: most commands write no
 * outputs, and a file made and removed for each of them is an inode
 * allocated and freed per step (on ext4 without a journal, every new
 * file then scans past the recently freed inodes: quadratic in a long
 * run).  irp only makes sure nothing sits where it belongs: a symlink
 * planted there is refused (ELOOP) like one for the log, a file left by
 * an interrupted attempt is removed.  0 or an errno value. */
static int clear_outputs_file(int dfd, const char *name)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT ? 0 : errno;
    if (S_ISLNK(st.st_mode))
        return ELOOP;
    return unlinkat(dfd, name, 0) == 0 ? 0 : errno;
}

/* Get the attempt's own files in logs/ ready: no $IRP_OUTPUT file yet
 * (above), and the log created and kept open in *log_fd (-1 without a
 * log) for proc.c to append to.  Doing it here, before the spawn, tells a
 * file irp cannot write -- a full disk, a symlink planted where the file
 * belongs (never followed) -- apart from a command that cannot start: the
 * first is the run's record failing (SPEC §3: start nothing new, exit 4),
 * and says so.  Both files share the folder (the outputs file is the
 * log's name + ".out"), which is opened and checked once.  0, or
 * run_file_error's code. */
static int create_run_files(irp_job *job, run_job *r, int *log_fd)
{
    *log_fd = -1;
    const char *out_name;
    int dfd = open_folder(r->output_path, &out_name);
    if (dfd == -1)
        return run_file_error(job, r->output_path, "the outputs file", errno);
    int e = clear_outputs_file(dfd, out_name);
    if (e) {
        close_folder(dfd);
        return run_file_error(job, r->output_path, "the outputs file", e);
    }
    if (job->log_path) {
        const char *log_name = strrchr(job->log_path, '/');
        *log_fd = create_at(dfd, log_name ? log_name + 1 : job->log_path, O_APPEND);
        if (*log_fd < 0) {
            e = errno;
            close_folder(dfd);
            return run_file_error(job, job->log_path, "the log", e);
        }
    }
    close_folder(dfd);
    return 0;
}

/* irp's environment less secrets, then the step's: pointers only, the
 * strings stay the engine's and the job's.  NULL when out of memory. */
static const char **child_env(const irp_job *job, const run_job *r)
{
    size_t n = 0;
    while (job->base_env[n])
        n++;
    const char **envp = malloc((n + r->env.n + 1) * sizeof *envp);
    if (!envp)
        return NULL;
    memcpy(envp, job->base_env, n * sizeof *envp);
    if (r->env.n)
        memcpy(envp + n, r->env.v, r->env.n * sizeof *envp);
    envp[n + r->env.n] = NULL;
    return envp;
}

static int run_start(irp_job *job)
{
    run_job *r = job->priv;
    if (fd_gate_closed(job->loop))
        return IRP_EBUSY;
    int log_fd;
    int rc = create_run_files(job, r, &log_fd);
    if (rc) {
        if (rc == IRP_EBUSY) {
            fd_gate_note(job->loop, rc);
            return rc;
        }
        job->outcome = IRP_JOB_FAILED;
        irp_job_finish(job);
        return 0;
    }
    const char **envp = push_irp_env(job, r) == 0 ? child_env(job, r) : NULL;
    if (!envp) {
        if (log_fd >= 0)
            close(log_fd);
        return IRP_ENOMEM;
    }
    irp_proc_opts o = {
        .argv = (const char *const *)r->argv.v, .envp = envp, .cwd = r->cwd,
        .log_fd = log_fd, .has_log_fd = log_fd >= 0, .stdout_keep = STDOUT_KEEP,
        .redact = job->redact, .stdout_to_log = true, .on_exit = run_exited, .data = job,
    };
    rc = irp_proc_spawn(job->loop, &o, &r->proc);
    free(envp);
    fd_gate_note(job->loop, rc);
    if (rc == 0) {
        if (job->on_spawn)
            job->on_spawn(job, irp_proc_pid(r->proc));
        return 0;
    }
    if (rc == IRP_EBUSY)
        return rc;
    job->outcome = IRP_JOB_FAILED;
    job->exit_code = 127;
    snprintf(job->error, sizeof job->error, "cannot start %s: %s", r->argv.v[0],
             rc == IRP_ENOENT ? "command not found" : irp_strerror(rc));
    irp_job_finish(job);
    return 0;
}

static void run_cancel(irp_job *job, int sig)
{
    run_job *r = job->priv;
    if (r && r->proc)
        irp_proc_kill(r->proc, sig);
}

static void run_release(irp_job *job)
{
    run_job *r = job->priv;
    if (!r)
        return;
    free(r->argv.v);   /* the texts are in the same block */
    strvec_release(&r->env);
    free(r->cwd);
    free(r);   /* and output_path with it */
    job->priv = NULL;
}

const irp_executor irp_exec_run = {
    IRP_ACT_RUN, true, run_prepare, run_start, run_cancel, run_release,
};
