/* irp verify RUN_DIR [--head HASH]: re-hash the journal's chain and every
 * evidence copy against its `evidence.collected` event (SPEC §3).
 *
 * Damage is printed as RUN_DIR/journal.jsonl:LINE: error: ... (or, for a
 * file under evidence/ that no event accounts for, RUN_DIR/evidence/...:
 * error: ...); a summary goes to stdout.  Nothing in the run directory is
 * ever written, and a path from the journal is opened only when it is a
 * plain relative path under evidence/, one component at a time without
 * following symbolic links, so a forged event cannot make verify read
 * outside the run.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "irp/cli.h"
#include "irp/error.h"
#include "irp/journal.h"

#define HASH_CHUNK ((size_t)64 << 10)
/* Bounds on what one verify holds in memory and how deep it walks. */
#define MAX_EVIDENCE ((size_t)10000000)
#define MAX_DEPTH 32

typedef struct evidence_rec {
    uint64_t lineno;             /* line of its evidence.collected */
    char *path;                  /* relative to the run directory */
    char *shown;                 /* path as printed: control bytes as '?' */
    char sha[IRP_SHA256_HEX];    /* lowercase */
    uint64_t size;
    const char *bad;             /* the event itself is malformed: why */
    bool superseded;             /* a later event names the same path */
} evidence_rec;

typedef struct verify_ctx {
    const irp_cli_common *common;
    const char *dir;             /* RUN_DIR as given, without trailing '/' */
    char *jpath;                 /* RUN_DIR/journal.jsonl */
    const char *want_head;       /* --head, lowercase; NULL without it */
    uint64_t head_line;          /* line whose hash is want_head; 0: none */
    uint64_t lines;
    char head[IRP_SHA256_HEX];
    evidence_rec *ev;
    size_t nev, cap;
    size_t damage, unreadable, stray;
    int nomem;
} verify_ctx;

/* ---- output ----------------------------------------------------------- */

static void diag(const verify_ctx *v, const char *file, uint64_t line, const char *sev,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* "FILE:LINE: sev: message" (no LINE when 0) on stderr. */
static void diag(const verify_ctx *v, const char *file, uint64_t line, const char *sev,
                 const char *fmt, ...)
{
    va_list ap;
    const char *color = !v->common->color ? ""
                        : strcmp(sev, "error") == 0 ? "\033[1;31m" : "\033[1;36m";
    if (line)
        fprintf(stderr, "%s:%" PRIu64 ": ", file, line);
    else
        fprintf(stderr, "%s: ", file);
    fprintf(stderr, "%s%s:%s ", color, sev, *color ? "\033[0m" : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- reading the journal ------------------------------------------------ */

static bool is_hex64(const char *s, size_t len)
{
    if (len != IRP_SHA256_HEX - 1)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!strchr("0123456789abcdefABCDEF", s[i]) || !s[i])
            return false;
    return true;
}

static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'F')
            *s = (char)(*s - 'A' + 'a');
}

/* A path verify may open: relative, under evidence/, every component a
 * plain name (no "", ".", ".."), so the copy is inside the run directory
 * whatever the event says. */
static const char *path_problem(const char *p, size_t len)
{
    if (len == 0)
        return "the path is empty";
    if (memchr(p, '\0', len))
        return "the path holds a NUL byte";
    if (p[0] == '/')
        return "the path is absolute; it must be relative to the run directory";
    if (len >= 4096)
        return "the path is too long";
    for (const char *c = p, *end = p + len; c <= end;) {
        const char *slash = memchr(c, '/', (size_t)(end - c));
        size_t n = (size_t)((slash ? slash : end) - c);
        if (n == 2 && c[0] == '.' && c[1] == '.')
            return "the path contains '..'; it must stay inside the run directory";
        if (n == 0 || (n == 1 && c[0] == '.'))
            return "the path has an empty or '.' component";
        c += n + 1;
    }
    if (len < 10 || memcmp(p, "evidence/", 9) != 0)
        return "the path is not under evidence/";
    return NULL;
}

/* A copy of what the journal says, safe to print on a terminal: a
 * forged path must not bring its own escape sequences or line breaks. */
static char *printable(const char *s, size_t len)
{
    size_t n = len > 8192 ? 8192 : len;
    char *out = malloc(n + 4);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    strcpy(out + n, len > n ? "..." : "");
    return out;
}

/* Fields of one evidence.collected event into r; r->bad says what is wrong. */
static void take_evidence(evidence_rec *r, json_t *ev)
{
    json_t *path = json_object_get(ev, "path");
    json_t *sha = json_object_get(ev, "sha256");
    json_t *size = json_object_get(ev, "size");

    if (json_is_string(path) &&
        !(r->shown = printable(json_string_value(path), json_string_length(path)))) {
        r->bad = "out of memory";
        return;
    }
    if (!json_is_string(path))
        r->bad = "evidence.collected has no `path` string";
    else if (!json_is_string(sha) || !is_hex64(json_string_value(sha), json_string_length(sha)))
        r->bad = "evidence.collected has no `sha256` of 64 hex digits";
    else if (!json_is_integer(size) || json_integer_value(size) < 0)
        r->bad = "evidence.collected has no `size` (a whole number of bytes)";
    else
        r->bad = path_problem(json_string_value(path), json_string_length(path));
    if (r->bad)
        return;
    r->size = (uint64_t)json_integer_value(size);
    memcpy(r->sha, json_string_value(sha), IRP_SHA256_HEX);
    lower(r->sha);
    r->path = strdup(json_string_value(path));
    if (!r->path)
        r->bad = "out of memory";
}

static int on_line(void *ctx, const irp_journal_line *line)
{
    verify_ctx *v = ctx;
    v->lines = line->lineno;
    memcpy(v->head, line->hash, sizeof v->head);
    if (v->want_head && !v->head_line && strcmp(line->hash, v->want_head) == 0)
        v->head_line = line->lineno;
    const char *event = json_string_value(json_object_get(line->ev, "event"));
    if (!event || strcmp(event, "evidence.collected") != 0)
        return 0;
    if (v->nev == v->cap) {
        if (v->cap >= MAX_EVIDENCE)
            return IRP_ELIMIT;
        size_t cap = v->cap ? v->cap * 2 : 64;
        evidence_rec *n = realloc(v->ev, cap * sizeof *n);
        if (!n)
            return IRP_ENOMEM;
        v->ev = n;
        v->cap = cap;
    }
    evidence_rec *r = &v->ev[v->nev++];
    memset(r, 0, sizeof *r);
    r->lineno = line->lineno;
    take_evidence(r, line->ev);
    if (r->bad && strcmp(r->bad, "out of memory") == 0)
        return IRP_ENOMEM;
    return 0;
}

/* "line N: what" from the journal reader into N and what. */
static uint64_t split_line_error(const char *err, const char **what)
{
    char *end;
    *what = err;
    if (strncmp(err, "line ", 5) != 0)
        return 0;
    uint64_t n = strtoull(err + 5, &end, 10);
    if (end[0] != ':' || end[1] != ' ')
        return 0;
    *what = end + 2;
    return n;
}

/* Returns 0 when the whole chain was read (damage or not: see *whole),
 * else the exit status for a journal that could not be read at all. */
static int check_chain(verify_ctx *v, bool *whole)
{
    char err[1024];
    bool partial = false;
    int rc = irp_journal_read(v->jpath, on_line, v, &partial, err, sizeof err);

    *whole = rc == 0;
    if (rc == IRP_ENOMEM) {
        fprintf(stderr, "irp verify: out of memory\n");
        return IRP_EXIT_INTERNAL;
    }
    if (rc == IRP_ELIMIT && v->nev >= MAX_EVIDENCE) {
        fprintf(stderr, "irp verify: %s: more than %zu evidence.collected events\n",
                v->jpath, MAX_EVIDENCE);
        return IRP_EXIT_USAGE;
    }
    if (rc == IRP_ECORRUPT || rc == IRP_ELIMIT) {
        const char *what;
        /* The parser's message may quote bytes of the damaged line. */
        for (char *p = err; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '?';
        uint64_t n = split_line_error(err, &what);
        diag(v, v->jpath, n, "error", "%s", what);
        v->damage++;
        if (!v->common->quiet)
            printf("journal: damaged at line %" PRIu64 "\n", n);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "irp verify: cannot read %s: %s\n", v->jpath,
                *err ? err : irp_strerror(rc));
        return IRP_EXIT_USAGE;
    }
    if (partial && !v->common->quiet)
        diag(v, v->jpath, v->lines + 1, "note",
             "the last line has no newline: cut off mid-write (a crash), not counted");
    if (v->lines == 0 && !partial) {
        diag(v, v->jpath, 0, "error", "the journal is empty; a run's journal begins with "
             "run.started");
        v->damage++;
    }
    if (!v->common->quiet && v->lines)
        printf("journal: %" PRIu64 " lines, chain whole; head %s\n", v->lines, v->head);
    return 0;
}

static void check_head(verify_ctx *v, bool whole)
{
    if (!v->want_head)
        return;
    if (v->head_line) {
        if (!v->common->quiet)
            printf("head %s: line %" PRIu64 " of %" PRIu64 "%s\n", v->want_head, v->head_line,
                   v->lines, v->head_line == v->lines ? " (the last)" : "");
        return;
    }
    v->damage++;
    if (!whole) {
        diag(v, v->jpath, 0, "error", "head %s is not the hash of any of the %" PRIu64
             " lines before the damage", v->want_head, v->lines);
        return;
    }
    diag(v, v->jpath, 0, "error", "head %s is not the hash of any line (the journal has %"
         PRIu64 " lines; its head is %s): lines were removed or replaced after %s was "
         "recorded", v->want_head, v->lines, v->head, v->want_head);
}

/* ---- evidence ------------------------------------------------------------ */

/* Open dir/rel for reading, one component at a time, never following a
 * symbolic link.  -1 with errno set on failure. */
static int open_beneath(const char *dir, const char *rel)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char name[4096];
    const char *p = rel;

    while (fd >= 0) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        memcpy(name, p, n);
        name[n] = '\0';
        int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (slash ? O_DIRECTORY : O_NONBLOCK);
        int next = openat(fd, name, flags);
        int saved = errno;
        close(fd);
        errno = saved;
        fd = next;
        if (!slash)
            break;
        p = slash + 1;
    }
    return fd;
}

typedef enum { EV_OK, EV_DAMAGED, EV_UNREADABLE } ev_result;

/* Streams the file through SHA-256 in fixed chunks: memory stays bounded
 * whatever the size of the evidence. */
static ev_result hash_fd(int fd, char out[IRP_SHA256_HEX], uint64_t *len, int *errnum)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    char *buf = malloc(HASH_CHUNK);
    ev_result res = EV_UNREADABLE;

    *errnum = ENOMEM;
    *len = 0;
    if (!ctx || !buf || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        goto out;
    for (;;) {
        ssize_t n = read(fd, buf, HASH_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *errnum = errno;
            goto out;
        }
        if (n == 0)
            break;
        *len += (uint64_t)n;
        if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1)
            goto out;
    }
    if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
        goto out;
    for (unsigned int i = 0; i < mdlen; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[2 * mdlen] = '\0';
    res = EV_OK;
out:
    EVP_MD_CTX_free(ctx);
    free(buf);
    return res;
}

static ev_result check_file(verify_ctx *v, const evidence_rec *r)
{
    int fd = open_beneath(v->dir, r->path);
    if (fd < 0) {
        if (errno == ENOENT) {
            diag(v, v->jpath, r->lineno, "error", "evidence %s is missing", r->shown);
            return EV_DAMAGED;
        }
        if (errno == ELOOP || errno == ENOTDIR) {
            diag(v, v->jpath, r->lineno, "error", "evidence %s: a symbolic link or a file "
                 "stands where the copy or its directory should be", r->shown);
            return EV_DAMAGED;
        }
        diag(v, v->jpath, r->lineno, "error", "evidence %s cannot be opened: %s", r->shown,
             strerror(errno));
        return EV_UNREADABLE;
    }
    struct stat st;
    ev_result res = EV_OK;
    char sha[IRP_SHA256_HEX];
    uint64_t len;
    int errnum = 0;
    if (fstat(fd, &st) != 0) {
        diag(v, v->jpath, r->lineno, "error", "evidence %s: %s", r->shown, strerror(errno));
        res = EV_UNREADABLE;
    } else if (!S_ISREG(st.st_mode)) {
        diag(v, v->jpath, r->lineno, "error", "evidence %s is not a regular file", r->shown);
        res = EV_DAMAGED;
    } else if ((uint64_t)st.st_size != r->size) {
        diag(v, v->jpath, r->lineno, "error", "evidence %s is %" PRIu64 " bytes; the journal "
             "records %" PRIu64, r->shown, (uint64_t)st.st_size, r->size);
        res = EV_DAMAGED;
    } else if ((res = hash_fd(fd, sha, &len, &errnum)) != EV_OK) {
        diag(v, v->jpath, r->lineno, "error", "evidence %s cannot be read: %s", r->shown,
             strerror(errnum));
    } else if (len != r->size) {
        diag(v, v->jpath, r->lineno, "error", "evidence %s changed size while it was read",
             r->shown);
        res = EV_DAMAGED;
    } else if (strcmp(sha, r->sha) != 0) {
        diag(v, v->jpath, r->lineno, "error", "evidence %s has sha256 %s; the journal records "
             "%s", r->shown, sha, r->sha);
        res = EV_DAMAGED;
    }
    close(fd);
    return res;
}

static int cmp_path(const void *a, const void *b)
{
    const evidence_rec *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    if (c)
        return c;
    return x->lineno < y->lineno ? -1 : x->lineno > y->lineno;
}

static int cmp_lineno(const void *a, const void *b)
{
    const evidence_rec *x = a, *y = b;
    return x->lineno < y->lineno ? -1 : x->lineno > y->lineno;
}

/* A path collected more than once (a retried step writes its copy again)
 * is checked against its last event only: that one describes the file as
 * it was left.  Leaves ev sorted by path, malformed events first. */
static void mark_superseded(verify_ctx *v)
{
    size_t nbad = 0;
    for (size_t i = 0; i < v->nev; i++)
        if (v->ev[i].bad) {
            evidence_rec t = v->ev[nbad];
            v->ev[nbad++] = v->ev[i];
            v->ev[i] = t;
        }
    if (v->nev > nbad)
        qsort(v->ev + nbad, v->nev - nbad, sizeof *v->ev, cmp_path);
    for (size_t i = nbad; i + 1 < v->nev; i++)
        if (strcmp(v->ev[i].path, v->ev[i + 1].path) == 0)
            v->ev[i].superseded = true;
}

static bool accounted(const verify_ctx *v, size_t first, const char *rel)
{
    size_t lo = first, hi = v->nev;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(v->ev[mid].path, rel);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Every file under evidence/ must be some event's copy.  `fd` is the
 * directory `rel` (relative to the run directory); closed here. */
static void find_strays(verify_ctx *v, size_t first, int fd, char *rel, size_t rlen,
                        int depth)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        diag(v, v->dir, 0, "error", "cannot list %s: %s", rel, strerror(errno));
        v->unreadable++;
        return;
    }
    struct dirent *de;
    while ((errno = 0, de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        size_t n = strlen(de->d_name);
        if (rlen + 1 + n >= 4096) {
            diag(v, v->dir, 0, "error", "%s/%s...: path too long", rel, de->d_name);
            v->stray++;
            continue;
        }
        rel[rlen] = '/';
        memcpy(rel + rlen + 1, de->d_name, n + 1);
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            diag(v, v->dir, 0, "error", "%s: %s", rel, strerror(errno));
            v->unreadable++;
        } else if (S_ISDIR(st.st_mode) && depth < MAX_DEPTH) {
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
                                                   O_CLOEXEC);
            if (sub < 0) {
                diag(v, v->dir, 0, "error", "cannot open %s: %s", rel, strerror(errno));
                v->unreadable++;
            } else {
                find_strays(v, first, sub, rel, rlen + 1 + n, depth + 1);
            }
        } else if (!accounted(v, first, rel)) {
            char full[8192];
            snprintf(full, sizeof full, "%s/%s", v->dir, rel);
            /* A planted file's name is printed as safely as a journal path. */
            char *shown = printable(full, strlen(full));
            if (S_ISDIR(st.st_mode))
                diag(v, shown ? shown : rel, 0, "error", "nested deeper than %d directories; "
                     "not checked", MAX_DEPTH);
            else
                diag(v, shown ? shown : rel, 0, "error", "not in the journal: no "
                     "evidence.collected event names this file");
            free(shown);
            v->stray++;
        }
        rel[rlen] = '\0';
    }
    if (errno) {
        diag(v, v->dir, 0, "error", "cannot list %s: %s", rel, strerror(errno));
        v->unreadable++;
    }
    closedir(d);
}

static void check_evidence(verify_ctx *v, bool whole)
{
    size_t files = 0, bad = 0;

    mark_superseded(v);
    size_t first = 0;
    while (first < v->nev && v->ev[first].bad)
        first++;
    if (whole) {
        char rel[4096] = "evidence";
        int fd = open_beneath(v->dir, "evidence");
        if (fd >= 0)
            find_strays(v, first, fd, rel, strlen(rel), 0);
        else if (errno != ENOENT) {
            diag(v, v->dir, 0, "error", "cannot open evidence/: %s", strerror(errno));
            v->unreadable++;
        }
    } else if (!v->common->quiet) {
        diag(v, v->jpath, 0, "note", "files under evidence/ were not checked against the "
             "events: the events after the damage are unknown");
    }
    /* Report in journal order, which is how a reader follows the run. */
    if (v->nev)
        qsort(v->ev, v->nev, sizeof *v->ev, cmp_lineno);
    for (size_t i = 0; i < v->nev; i++) {
        const evidence_rec *r = &v->ev[i];
        if (r->superseded)
            continue;
        files++;
        ev_result res = EV_DAMAGED;
        if (r->bad && r->shown && strncmp(r->bad, "the path ", 9) == 0)
            diag(v, v->jpath, r->lineno, "error", "evidence '%s': %s", r->shown, r->bad);
        else if (r->bad)
            diag(v, v->jpath, r->lineno, "error", "%s", r->bad);
        else
            res = check_file(v, r);
        if (res == EV_DAMAGED)
            v->damage++;
        else if (res == EV_UNREADABLE)
            v->unreadable++;
        bad += res != EV_OK;
    }
    if (v->common->quiet)
        return;
    if (!bad && !v->stray && files == 0)
        printf("evidence: none collected\n");
    else if (!bad && !v->stray)
        printf("evidence: %zu file%s, all match\n", files, files == 1 ? "" : "s");
    else
        printf("evidence: %zu file%s, %zu damaged or unreadable, %zu not in the journal\n",
               files, files == 1 ? "" : "s", bad, v->stray);
}

/* ---- the command ------------------------------------------------------------ */

static int parse_args(int argc, char **argv, const char **dir, char *head)
{
    bool dashdash = false;
    *dir = NULL;
    head[0] = '\0';
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!dashdash && strcmp(s, "--") == 0) {
            dashdash = true;
        } else if (!dashdash && strcmp(s, "--head") == 0) {
            if (i + 1 >= argc)
                return irp_cli_usage_error("verify", "--head needs a value");
            const char *h = argv[++i];
            if (!is_hex64(h, strlen(h)))
                return irp_cli_usage_error("verify", "--head takes a journal head: 64 hex "
                                           "digits (got '%s')", h);
            memcpy(head, h, IRP_SHA256_HEX);
            lower(head);
        } else if (!dashdash && s[0] == '-' && s[1]) {
            return irp_cli_usage_error("verify", "unknown option '%s'", s);
        } else if (*dir) {
            return irp_cli_usage_error("verify", "one run directory at a time ('%s' and '%s')",
                                       *dir, s);
        } else {
            *dir = s;
        }
    }
    if (!*dir)
        return irp_cli_usage_error("verify", "no run directory given");
    return 0;
}

int irp_cmd_verify(int argc, char **argv, const irp_cli_common *common)
{
    const char *arg;
    char head[IRP_SHA256_HEX];
    int rc = parse_args(argc, argv, &arg, head);
    if (rc)
        return rc;

    verify_ctx v = { .common = common, .want_head = head[0] ? head : NULL };
    size_t len = strlen(arg);
    while (len > 1 && arg[len - 1] == '/')
        len--;
    char *dir = strndup(arg, len);
    if (!dir || asprintf(&v.jpath, "%s/journal.jsonl", dir) < 0) {
        free(dir);
        fprintf(stderr, "irp verify: out of memory\n");
        return IRP_EXIT_INTERNAL;
    }
    v.dir = dir;
    struct stat st;
    int status = IRP_EXIT_OK;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "irp verify: %s: %s\n", dir,
                errno == ENOENT ? "no such run directory" : "not a run directory");
        status = IRP_EXIT_USAGE;
    } else if (access(v.jpath, F_OK) != 0 && errno == ENOENT) {
        fprintf(stderr, "irp verify: %s: no journal.jsonl; not a run directory\n", dir);
        status = IRP_EXIT_USAGE;
    }
    bool whole = false;
    if (status == IRP_EXIT_OK)
        status = check_chain(&v, &whole);
    if (status == IRP_EXIT_OK) {
        check_head(&v, whole);
        check_evidence(&v, whole);
        if (v.unreadable)
            status = IRP_EXIT_USAGE;
        else if (v.damage || v.stray)
            status = IRP_EXIT_FAILED;
        if (status != IRP_EXIT_OK)
            fprintf(stderr, "irp verify: %s: %zu problem%s found\n", dir,
                    v.damage + v.stray + v.unreadable,
                    v.damage + v.stray + v.unreadable == 1 ? "" : "s");
    }
    for (size_t i = 0; i < v.nev; i++) {
        free(v.ev[i].path);
        free(v.ev[i].shown);
    }
    free(v.ev);
    free(v.jpath);
    free(dir);
    return status;
}
