/* Child processes: real children on a real libuv loop. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <uv.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#include "irp/error.h"
#include "irp/proc.h"

/* ---- fixture: a loop, a scratch directory, the fd count ------------- */

typedef struct fixture {
    uv_loop_t loop;
    char dir[64];
    int fds_before;
    struct rlimit nofile;   /* restored by teardown */
} fixture;

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* The descriptor limit that leaves exactly `spare` numbers free: new
 * descriptors take the lowest free numbers, below the limit. */
static rlim_t limit_leaving(int spare)
{
    int fd = 0;
    for (; spare > 0; fd++)
        if (fcntl(fd, F_GETFD) < 0)
            spare--;
    return (rlim_t)fd;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    getrlimit(RLIMIT_NOFILE, &f->nofile);
    f->fds_before = count_fds();
    assert_int_equal(uv_loop_init(&f->loop), 0);
    snprintf(f->dir, sizeof f->dir, "/tmp/irp-proc-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX];
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* Every test ends here: the loop closes cleanly and no descriptor leaks. */
static int teardown(void **state)
{
    fixture *f = *state;
    setrlimit(RLIMIT_NOFILE, &f->nofile);
    irp_proc_shutdown(&f->loop);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    remove_dir(f->dir);
    assert_int_equal(count_fds(), f->fds_before);
    free(f);
    return 0;
}

/* ---- helpers --------------------------------------------------------- */

typedef struct outcome {
    int calls;
    irp_proc_result r;
    char *head;             /* copy of stdout_head, or NULL */
    size_t live_in_cb;      /* irp_proc_live() seen from on_exit */
    uv_loop_t *loop;
} outcome;

static void record_exit(irp_proc *p, const irp_proc_result *r, void *data)
{
    outcome *o = data;
    o->calls++;
    o->r = *r;
    o->r.stdout_head = NULL;
    if (r->stdout_head) {
        o->head = malloc(r->stdout_head_len + 1);
        memcpy(o->head, r->stdout_head, r->stdout_head_len + 1);
    }
    if (o->loop)
        o->live_in_cb = irp_proc_live(o->loop);
}

static irp_proc_opts opts_for(const char *const *argv, outcome *o)
{
    irp_proc_opts opts = { 0 };
    opts.argv = argv;
    opts.stdout_to_log = true;
    opts.on_exit = record_exit;
    opts.data = o;
    return opts;
}

static void log_path(fixture *f, const char *name, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s", f->dir, name);
}

/* The whole file, NUL-terminated; *len its size. */
static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)size + 1);
    assert_int_equal(fread(buf, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    buf[size] = '\0';
    if (len)
        *len = (size_t)size;
    return buf;
}

static void hex_digest(EVP_MD_CTX *ctx, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx, md, &n);
    for (unsigned int i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
}

static void sha256_hex(const char *buf, size_t len, char out[65])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, buf, len);
    hex_digest(ctx, out);
    EVP_MD_CTX_free(ctx);
}

static void run_sh(fixture *f, const char *script, outcome *o)
{
    const char *argv[] = { "/bin/sh", "-c", script, NULL };
    irp_proc_opts opts = opts_for(argv, o);
    irp_proc *p;
    assert_int_equal(irp_proc_spawn(&f->loop, &opts, &p), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(o->calls, 1);
}

/* Gone, or a zombie nobody reaps (an orphan under a non-reaping init). */
static bool process_dead(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return true;
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return !rp || rp[2] == 'Z' || rp[2] == 'X';
}

static bool wait_dead(pid_t pid)
{
    for (int i = 0; i < 200; i++) {
        if (process_dead(pid))
            return true;
        usleep(10000);
    }
    return false;
}

/* A one-shot timer that runs fn(arg) on the loop, then closes itself. */
typedef struct later {
    uv_timer_t timer;
    void (*fn)(void *arg);
    void *arg;
} later;

static void later_fire(uv_timer_t *t)
{
    later *l = (later *)t;
    l->fn(l->arg);
    uv_close((uv_handle_t *)t, NULL);
}

static void later_start(uv_loop_t *loop, later *l, uint64_t ms, void (*fn)(void *), void *arg)
{
    l->fn = fn;
    l->arg = arg;
    uv_timer_init(loop, &l->timer);
    uv_timer_start(&l->timer, later_fire, ms, 0);
}

/* ---- exit status and signals ---------------------------------------- */

static void test_proc_reports_exit_status(void **state)
{
    fixture *f = *state;
    outcome o = { 0 };
    run_sh(f, "exit 3", &o);
    assert_int_equal(o.r.exit_status, 3);
    assert_int_equal(o.r.term_signal, 0);
    assert_null(o.head);
    assert_string_equal(o.r.log_sha256, "");

    outcome ok = { 0 };
    run_sh(f, "exit 0", &ok);
    assert_int_equal(ok.r.exit_status, 0);
    assert_int_equal(ok.r.term_signal, 0);
    assert_int_equal(irp_proc_live(&f->loop), 0);
}

static void test_proc_reports_signal(void **state)
{
    fixture *f = *state;
    outcome o = { 0 };
    run_sh(f, "kill -USR1 $$", &o);
    assert_int_equal(o.r.term_signal, SIGUSR1);
}

/* A child that closes its pipes early is still waited for: the loop must
 * not return before the exit is seen. */
static void test_proc_waits_for_exit_after_pipes_close(void **state)
{
    fixture *f = *state;
    outcome o = { 0 };
    run_sh(f, "exec >&- 2>&-; sleep 0.3; exit 4", &o);
    assert_int_equal(o.r.exit_status, 4);
}

static void test_proc_child_leads_own_group(void **state)
{
    fixture *f = *state;
    outcome o = { 0 };
    const char *argv[] = { "/bin/sh", "-c", "cut -d' ' -f5 /proc/$$/stat", NULL };
    irp_proc_opts opts = opts_for(argv, &o);
    opts.stdout_keep = 64;
    irp_proc *p;
    assert_int_equal(irp_proc_spawn(&f->loop, &opts, &p), 0);
    pid_t pid = irp_proc_pid(p);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    char want[32];
    snprintf(want, sizeof want, "%d\n", (int)pid);
    assert_string_equal(o.head, want);
    free(o.head);
}

/* irp blocks and ignores signals; its children must not inherit that. */
static void test_proc_child_has_default_signals(void **state)
{
    fixture *f = *state;
    struct sigaction ign = { .sa_handler = SIG_IGN }, old_pipe, old_hup;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &old_pipe);
    sigaction(SIGHUP, &ign, &old_hup);
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR2);
    sigprocmask(SIG_BLOCK, &block, &old_mask);

    outcome o = { 0 };
    const char *argv[] = { "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status", NULL };
    irp_proc_opts opts = opts_for(argv, &o);
    opts.stdout_keep = 256;
    irp_proc *p;
    int rc = irp_proc_spawn(&f->loop, &opts, &p);
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    assert_int_equal(rc, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    /* Classic signals only: glibc's posix_spawn leaves its two internal
     * real-time signals (32, 33) ignored, which no program relies on. */
    unsigned long long blk = 1, ignored = 1;
    assert_int_equal(sscanf(o.head, "SigBlk:\t%llx\nSigIgn:\t%llx", &blk, &ignored), 2);
    assert_int_equal(blk, 0);
    assert_int_equal(ignored & 0x7fffffffull, 0);
    free(o.head);
}

/* ---- output --------------------------------------------------------- */

static void test_proc_logs_stdout_and_stderr(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX];
    log_path(f, "both.log", path, sizeof path);
    outcome o = { 0 };
    const char *argv[] = { "/bin/sh", "-c", "echo to-out; echo to-err >&2; echo again", NULL };
    irp_proc_opts opts = opts_for(argv, &o);
    opts.log_path = path;
    irp_proc *p;
    assert_int_equal(irp_proc_spawn(&f->loop, &opts, &p), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);

    size_t len;
    char *log = slurp(path, &len);
    assert_non_null(strstr(log, "to-out\n"));
    assert_non_null(strstr(log, "to-err\n"));
    assert_non_null(strstr(log, "again\n"));
    assert_int_equal(len, strlen("to-out\nto-err\nagain\n"));
    assert_int_equal(o.r.log_bytes, len);
    assert_int_equal(o.r.stdout_bytes, strlen("to-out\nagain\n"));
    assert_int_equal(o.r.log_error, 0);
    char want[65];
    sha256_hex(log, len, want);
    assert_string_equal(o.r.log_sha256, want);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    free(log);
}

static void test_proc_log_refuses_symlink(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX];
    log_path(f, "link.log", path, sizeof path);
    assert_int_equal(symlink("/dev/null", path), 0);
    outcome o = { 0 };
    const char *argv[] = { "true", NULL };
    irp_proc_opts opts = opts_for(argv, &o);
    opts.log_path = path;
    irp_proc *p;
    assert_int_equal(irp_proc_spawn(&f->loop, &opts, &p), IRP_EACCES);
    assert_int_equal(irp_proc_live(&f->loop), 0);
}

static void test_proc_stdout_kept_truncated(void **state)
{
    fixture *f = *state;
    const char *argv[] = { "printf", "hello world", NULL };
    size_t keeps[] = { 5, 100, 0 };
    const char *want[] = { "hello", "hello world", NULL };
    for (int i = 0; i < 3; i++) {
        outcome o = { 0 };
        irp_proc_opts opts = opts_for(argv, &o);
        opts.stdout_keep = keeps[i];
        irp_proc *p;
        assert_int_equal(irp_proc_spawn(&f->loop, &opts, &p), 0);
        uv_run(&f->loop, UV_RUN_DEFAULT);
        assert_int_equal(o.r.stdout_bytes, 11);
        if (want[i]) {
            assert_string_equal(o.head, want[i]);
            assert_int_equal(o.r.stdout_head_len, strlen(want[i]));
        } else {
            assert_null(o.head);
        }
        free(o.head);
    }
}

static void test_proc_stdout_kept_empty_when_silent(void **state)
{
    fixture *f = *state;
    outcome o = { 0 };
    const char *argv[] = { "true", NULL };
    irp_proc_opts opts = opts_for(argv, &o);
    opts.stdout_keep = 64;
    irp_proc *p;
    assert_int_equal(irp_proc_spawn(&f->loop, &opts, &p), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_string_equal(o.head, "");
    free(o.head);
}

typedef struct capture {
    char buf[4096];
    size_t len;
    uint64_t total;
    int calls;
    int stop_with;          /* returned from the callback when non-zero */
} capture;

/* on_stdout shares the proc's data pointer with on_exit, so tests pass a
 * struct that starts with the outcome. */
typedef struct watched {
    outcome o;
    capture c;
} watched;

static int watch_stdout(const char *buf, size_t len, void *data)
{
    capture *c = &((watched *)data)->c;
    c->calls++;
    c->total += len;
    size_t room = sizeof c->buf - 1 - c->len;
    size_t take = len < room ? len : room;
    memcpy(c->buf + c->len, buf, take);
    c->len += take;
    c->buf[c->len] = '\0';
    return c->stop_with;
}

static void test_proc_stdout_only_to_callback(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX];
    log_path(f, "evidence.log", path, sizeof path);
    watched w = { 0 };
    const char *argv[] = { "/bin/sh", "-c", "echo evidence; echo complaint >&2", NULL };
    irp_proc_opts opts = opts_for(argv, &w.o);
    opts.log_path = path;
    opts.stdout_to_log = false;
    opts.on_stdout = watch_stdout;
    irp_proc *p;
    assert_int_equal(irp_proc_spawn(&f->loop, &opts, &p), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    char *log = slurp(path, NULL);
    assert_string_equal(log, "complaint\n");
    assert_string_equal(w.c.buf, "evidence\n");
    assert_int_equal(w.o.r.stdout_bytes, 9);
    free(log);
}

static void test_proc_stdout_callback_stops_child(void **state)
{
    fixture *f = *state;
    watched w = { 0 };
    w.c.stop_with = IRP_ECANCELED;
    const char *argv[] = { "yes", NULL };
    irp_proc_opts opts = opts_for(argv, &w.o);
    opts.on_stdout = watch_stdout;
    irp_proc *p;
    assert_int_equal(irp_proc_spawn(&f->loop, &opts, &p), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(w.c.calls, 1);
    assert_int_equal(w.o.r.term_signal, SIGKILL);
    assert_int_equal(w.o.r.log_error, IRP_ECANCELED);
}

/* 200 MB through the pipe: memory stays flat, the log is whole. */
static void test_proc_streams_large_output(void **state)
{
    fixture *f = *state;
    const uint64_t total = 200000000;
    char path[PATH_MAX];
    log_path(f, "big.log", path, sizeof path);
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);

    outcome o = { 0 };
    const char *argv[] = { "head", "-c", "200000000", "/dev/zero", NULL };
    irp_proc_opts opts = opts_for(argv, &o);
    opts.log_path = path;
    opts.stdout_keep = 64 * 1024;
    irp_proc *p;
    assert_int_equal(irp_proc_spawn(&f->loop, &opts, &p), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    getrusage(RUSAGE_SELF, &after);

    assert_int_equal(o.r.exit_status, 0);
    assert_int_equal(o.r.stdout_bytes, total);
    assert_int_equal(o.r.log_bytes, total);
    assert_int_equal(o.r.stdout_head_len, 64 * 1024);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, total);
    long grown_kib = after.ru_maxrss - before.ru_maxrss;
    if (grown_kib >= 64 * 1024)
        fail_msg("max RSS grew by %ld KiB", grown_kib);

    static const char zeros[1 << 16];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (uint64_t left = total; left > 0;) {
        size_t n = left < sizeof zeros ? (size_t)left : sizeof zeros;
        EVP_DigestUpdate(ctx, zeros, n);
        left -= n;
    }
    char want[65];
    hex_digest(ctx, want);
    EVP_MD_CTX_free(ctx);
    assert_string_equal(o.r.log_sha256, want);
    free(o.head);
}

/* Secrets split across reads (the sleeps make separate chunks), overlapping
 * secrets, a too-short "secret", a secret prefix at EOF, and stderr. */
static void test_proc_redacts_across_chunks(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX];
    log_path(f, "redact.log", path, sizeof path);
    const char *script =
        "printf 'x=abc'; sleep 0.3; printf 'def1 and ghijkl'; sleep 0.3;"
        "printf 'mn.\\n'; sleep 0.3; printf 'err:abcdef1\\n' >&2; sleep 0.3;"
        "printf 'over:secret123456|short tail-abc'";
    const char *secrets[] = { "abcdef1", "ghijklmn", "secret12", "t123456", "short", NULL };
    outcome o = { 0 };
    const char *argv[] = { "/bin/sh", "-c", script, NULL };
    irp_proc_opts opts = opts_for(argv, &o);
    opts.log_path = path;
    opts.redact = secrets;
    opts.stdout_keep = 4096;
    irp_proc *p;
    assert_int_equal(irp_proc_spawn(&f->loop, &opts, &p), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);

    size_t len;
    char *log = slurp(path, &len);
    assert_string_equal(log, "x=*** and ***.\nerr:***\nover:***|short tail-abc");
    assert_int_equal(o.r.log_bytes, len);
    char want[65];
    sha256_hex(log, len, want);
    assert_string_equal(o.r.log_sha256, want);
    /* The kept stdout is raw: the caller redacts where it records it. */
    assert_string_equal(o.head, "x=abcdef1 and ghijklmn.\nover:secret123456|short tail-abc");
    free(o.head);
    free(log);
}

/* ---- environment ---------------------------------------------------- */

static void test_proc_runs_in_cwd(void **state)
{
    fixture *f = *state;
    outcome o = { 0 };
    const char *argv[] = { "pwd", "-P", NULL };
    irp_proc_opts opts = opts_for(argv, &o);
    opts.cwd = f->dir;
    opts.stdout_keep = PATH_MAX;
    irp_proc *p;
    assert_int_equal(irp_proc_spawn(&f->loop, &opts, &p), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    char real[PATH_MAX], want[PATH_MAX + 2];
    assert_non_null(realpath(f->dir, real));
    snprintf(want, sizeof want, "%s\n", real);
    assert_string_equal(o.head, want);
    free(o.head);
}

static void test_proc_passes_env_exactly(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX];
    log_path(f, "env.log", path, sizeof path);
    outcome o = { 0 };
    const char *argv[] = { "env", NULL };
    const char *envp[] = { "A=1", "B=two words", "IRP_STEP_ID=isolate", NULL };
    irp_proc_opts opts = opts_for(argv, &o);
    opts.envp = envp;
    opts.log_path = path;
    irp_proc *p;
    assert_int_equal(irp_proc_spawn(&f->loop, &opts, &p), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    char *log = slurp(path, NULL);
    assert_string_equal(log, "A=1\nB=two words\nIRP_STEP_ID=isolate\n");
    free(log);
}

/* ---- failures to start ---------------------------------------------- */

/* Under valgrind the exec error cannot travel back (fork emulation of
 * CLONE_VFORK): the child reports 127 instead, as proc.h allows. */
static void expect_not_started(fixture *f, irp_proc_opts *opts, int want_err)
{
    outcome *o = opts->data;
    irp_proc *p;
    int rc = irp_proc_spawn(&f->loop, opts, &p);
    if (RUNNING_ON_VALGRIND && rc == 0) {
        uv_run(&f->loop, UV_RUN_DEFAULT);
        assert_int_equal(o->r.exit_status, 127);
        return;
    }
    assert_int_equal(rc, want_err);
    assert_int_equal(o->calls, 0);
    assert_int_equal(irp_proc_live(&f->loop), 0);
}

static void test_proc_command_not_found(void **state)
{
    fixture *f = *state;
    outcome o = { 0 };
    const char *argv[] = { "irp-no-such-command-7f3a", NULL };
    irp_proc_opts opts = opts_for(argv, &o);
    expect_not_started(f, &opts, IRP_ENOENT);

    outcome o2 = { 0 };
    const char *abs[] = { "/nonexistent/irp-tool", NULL };
    opts = opts_for(abs, &o2);
    expect_not_started(f, &opts, IRP_ENOENT);
}

static void test_proc_command_not_executable(void **state)
{
    fixture *f = *state;
    char path[PATH_MAX];
    log_path(f, "script", path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "#!/bin/sh\n", 10), 10);
    close(fd);
    outcome o = { 0 };
    const char *argv[] = { path, NULL };
    irp_proc_opts opts = opts_for(argv, &o);
    expect_not_started(f, &opts, IRP_EACCES);
}

static void test_proc_missing_cwd(void **state)
{
    fixture *f = *state;
    outcome o = { 0 };
    const char *argv[] = { "true", NULL };
    irp_proc_opts opts = opts_for(argv, &o);
    opts.cwd = "/nonexistent/irp-cwd";
    expect_not_started(f, &opts, IRP_ENOENT);
}

static void test_proc_rejects_bad_options(void **state)
{
    fixture *f = *state;
    outcome o = { 0 };
    const char *argv[] = { NULL };
    irp_proc_opts opts = opts_for(argv, &o);
    irp_proc *p;
    assert_int_equal(irp_proc_spawn(&f->loop, &opts, &p), IRP_EINVAL);
    const char *ok[] = { "true", NULL };
    opts = opts_for(ok, &o);
    opts.on_exit = NULL;
    assert_int_equal(irp_proc_spawn(&f->loop, &opts, &p), IRP_EINVAL);
}

/* ---- killing -------------------------------------------------------- */

typedef struct group_case {
    watched w;
    irp_proc *p;
    pid_t grandchild;
    int calls_before_kill;
    bool alive_before_kill;
} group_case;

static void kill_group_now(void *arg)
{
    group_case *g = arg;
    g->grandchild = (pid_t)atoi(g->w.c.buf);
    g->calls_before_kill = g->w.o.calls;
    g->alive_before_kill = g->grandchild > 0 && !process_dead(g->grandchild);
    assert_int_equal(irp_proc_kill(g->p, SIGTERM), 0);
}

/* The child exits at once; its grandchild holds stdout.  The proc is not
 * finished until the group is killed, and the kill reaches the grandchild. */
static void test_proc_kill_ends_grandchild(void **state)
{
    fixture *f = *state;
    group_case g = { 0 };
    const char *argv[] = { "/bin/sh", "-c", "sleep 30 & echo $!", NULL };
    irp_proc_opts opts = opts_for(argv, &g.w.o);
    opts.on_stdout = watch_stdout;
    assert_int_equal(irp_proc_spawn(&f->loop, &opts, &g.p), 0);
    later l;
    later_start(&f->loop, &l, 500, kill_group_now, &g);
    uint64_t t0 = uv_hrtime();
    uv_run(&f->loop, UV_RUN_DEFAULT);

    assert_true(g.alive_before_kill);
    assert_int_equal(g.calls_before_kill, 0);
    assert_int_equal(g.w.o.calls, 1);
    assert_int_equal(g.w.o.r.exit_status, 0);   /* the shell itself exited */
    assert_true(wait_dead(g.grandchild));
    assert_true(uv_hrtime() - t0 < 10ull * 1000 * 1000 * 1000);
}

typedef struct stubborn {
    outcome o;
    irp_proc *p;
    int calls_after_term;
} stubborn;

static void send_term(void *arg)
{
    assert_int_equal(irp_proc_kill(((stubborn *)arg)->p, SIGTERM), 0);
}

static void send_kill(void *arg)
{
    stubborn *s = arg;
    s->calls_after_term = s->o.calls;
    assert_int_equal(irp_proc_kill(s->p, SIGKILL), 0);
}

static void test_proc_sigkill_after_ignored_sigterm(void **state)
{
    fixture *f = *state;
    stubborn s = { 0 };
    const char *argv[] = { "/bin/sh", "-c", "trap '' TERM; sleep 30", NULL };
    irp_proc_opts opts = opts_for(argv, &s.o);
    assert_int_equal(irp_proc_spawn(&f->loop, &opts, &s.p), 0);
    later term, kill9;
    later_start(&f->loop, &term, 300, send_term, &s);
    later_start(&f->loop, &kill9, 800, send_kill, &s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(s.calls_after_term, 0);
    assert_int_equal(s.o.calls, 1);
    assert_int_equal(s.o.r.term_signal, SIGKILL);
}

/* ---- many children, few descriptors --------------------------------- */

#define MANY 200

static void test_proc_many_concurrent_reported_once(void **state)
{
    fixture *f = *state;
    static outcome o[MANY];
    char idx[MANY][8], path[PATH_MAX];
    memset(o, 0, sizeof o);
    for (int i = 0; i < MANY; i++) {
        snprintf(idx[i], sizeof idx[i], "%d", i);
        snprintf(path, sizeof path, "%s/many.%d.log", f->dir, i);
        const char *argv[] = { "/bin/sh", "-c", "sleep 0.2; echo $0; echo e$0 >&2", idx[i], NULL };
        irp_proc_opts opts = opts_for(argv, &o[i]);
        opts.stdout_keep = 16;
        opts.log_path = path;
        o[i].loop = &f->loop;
        irp_proc *p;
        assert_int_equal(irp_proc_spawn(&f->loop, &opts, &p), 0);
    }
    assert_int_equal(irp_proc_live(&f->loop), MANY);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(irp_proc_live(&f->loop), 0);
    for (int i = 0; i < MANY; i++) {
        char want[16];
        assert_int_equal(o[i].calls, 1);
        assert_int_equal(o[i].r.exit_status, 0);
        snprintf(want, sizeof want, "%d\n", i);
        assert_string_equal(o[i].head, want);
        assert_int_equal(o[i].r.log_bytes, 2 * strlen(want) + 1);
        assert_true(o[i].live_in_cb < MANY);
        free(o[i].head);
    }
}

/* A child sees only 0, 1, 2 (and ls's own directory fd): not irp's log
 * files, not a sibling's pipes. */
static void test_proc_child_inherits_no_descriptors(void **state)
{
    fixture *f = *state;
    char sib_log[PATH_MAX], path[PATH_MAX];
    log_path(f, "sibling.log", sib_log, sizeof sib_log);
    log_path(f, "fds.log", path, sizeof path);
    outcome sib = { 0 }, o = { 0 };
    const char *sleeper[] = { "sleep", "0.3", NULL };
    irp_proc_opts opts = opts_for(sleeper, &sib);
    opts.log_path = sib_log;
    irp_proc *p;
    assert_int_equal(irp_proc_spawn(&f->loop, &opts, &p), 0);
    const char *argv[] = { "ls", "/proc/self/fd", NULL };
    opts = opts_for(argv, &o);
    opts.log_path = path;
    assert_int_equal(irp_proc_spawn(&f->loop, &opts, &p), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    char *log = slurp(path, NULL);
    assert_string_equal(log, "0\n1\n2\n3\n");
    free(log);
}

static void test_proc_busy_when_out_of_descriptors(void **state)
{
    fixture *f = *state;
    outcome warm = { 0 };
    run_sh(f, "true", &warm);   /* the loop's SIGCHLD watcher now exists */

    struct rlimit low = f->nofile;
    low.rlim_cur = limit_leaving(8);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    static outcome o[32];
    memset(o, 0, sizeof o);
    int started = 0, rc = 0;
    char path[PATH_MAX];
    while (started < 32) {
        int fds = count_fds();
        snprintf(path, sizeof path, "%s/busy.%d.log", f->dir, started);
        const char *argv[] = { "sleep", "0.3", NULL };
        irp_proc_opts opts = opts_for(argv, &o[started]);
        opts.log_path = path;
        irp_proc *p;
        rc = irp_proc_spawn(&f->loop, &opts, &p);
        if (rc != 0) {
            assert_int_equal(count_fds(), fds);   /* nothing leaked */
            break;
        }
        started++;
    }
    assert_int_equal(rc, IRP_EBUSY);
    assert_true(started >= 1);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    for (int i = 0; i < started; i++)
        assert_int_equal(o[i].calls, 1);

    outcome again = { 0 };
    const char *argv[] = { "true", NULL };
    irp_proc_opts opts = opts_for(argv, &again);
    opts.log_path = path;
    irp_proc *p;
    assert_int_equal(irp_proc_spawn(&f->loop, &opts, &p), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(again.calls, 1);
}

int main(void)
{
    /* libuv opens its process-wide signal lock pipe once, on the first
     * loop: do it before the fixtures start counting descriptors. */
    uv_loop_t warm;
    uv_loop_init(&warm);
    uv_loop_close(&warm);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_proc_streams_large_output, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_reports_exit_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_reports_signal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_waits_for_exit_after_pipes_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_child_leads_own_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_child_has_default_signals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_logs_stdout_and_stderr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_log_refuses_symlink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_stdout_kept_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_stdout_kept_empty_when_silent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_stdout_only_to_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_stdout_callback_stops_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_redacts_across_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_runs_in_cwd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_passes_env_exactly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_command_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_command_not_executable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_missing_cwd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_rejects_bad_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_kill_ends_grandchild, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_sigkill_after_ignored_sigterm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_many_concurrent_reported_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_child_inherits_no_descriptors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proc_busy_when_out_of_descriptors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
