#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <uv.h>

#include "irp/error.h"
#include "irp/event.h"
#include "irp/journal.h"
#include "irp/jsonutil.h"

#define ZEROS "0000000000000000000000000000000000000000000000000000000000000000"
#define MAX_LINES 65536

/* ---- fixture: a fresh directory per test ------------------------------ */

typedef struct fixture {
    char dir[64];
    char path[128];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);

    if (!f)
        return -1;
    strcpy(f->dir, "/tmp/irp-journal-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/journal.jsonl", f->dir);
    *state = f;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    fixture *f = *state;
    char mnt[96];

    /* A test that failed with its tmpfs mounted must not leave it. */
    snprintf(mnt, sizeof mnt, "%s/tiny", f->dir);
    (void)umount2(mnt, MNT_DETACH);
    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* ---- files, written and checked without the journal's code ----------- */

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    char *buf;
    long n;

    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    n = ftell(fp);
    rewind(fp);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    buf[n] = '\0';
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static void write_file(const char *path, const char *buf, size_t len, const char *mode)
{
    FILE *fp = fopen(path, mode);

    assert_non_null(fp);
    assert_int_equal(fwrite(buf, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static off_t file_size(const char *path)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* SHA-256 through EVP's streaming interface: not the code under test. */
static void hash_hex(const char *buf, size_t len, char out[IRP_SHA256_HEX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    assert_non_null(ctx);
    assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
    assert_int_equal(EVP_DigestUpdate(ctx, buf, len), 1);
    assert_int_equal(EVP_DigestFinal_ex(ctx, md, &n), 1);
    EVP_MD_CTX_free(ctx);
    assert_int_equal(n, 32);
    for (unsigned int i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Split buf into lines (pointers into buf); a last line without newline
 * is not counted. */
static size_t split_lines(char *buf, size_t len, char **line, size_t *llen)
{
    size_t n = 0, pos = 0;

    while (pos < len) {
        char *nl = memchr(buf + pos, '\n', len - pos);
        if (!nl)
            break;
        assert_true(n < MAX_LINES);
        line[n] = buf + pos;
        llen[n] = (size_t)(nl - (buf + pos));
        pos += llen[n] + 1;
        n++;
    }
    return n;
}

/* Recompute the chain from a journal's bytes; every line must be whole.
 * Returns the number of lines and the hash of the last one in head. */
static uint64_t verify_text(char *buf, size_t len, char head[IRP_SHA256_HEX])
{
    static char *line[MAX_LINES];
    static size_t llen[MAX_LINES];
    char prev[IRP_SHA256_HEX] = ZEROS;
    size_t n;

    n = split_lines(buf, len, line, llen);
    assert_true(n == 0 || line[n - 1] + llen[n - 1] + 1 == buf + len);
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_loadb(line[i], llen[i], JSON_ALLOW_NUL, NULL);
        assert_non_null(o);
        assert_int_equal(json_integer_value(json_object_get(o, "seq")), i + 1);
        assert_string_equal(json_string_value(json_object_get(o, "prev")), prev);
        json_decref(o);
        hash_hex(line[i], llen[i], prev);
    }
    memcpy(head, prev, IRP_SHA256_HEX);
    return n;
}

static uint64_t verify_independently(const char *path, char head[IRP_SHA256_HEX])
{
    size_t len;
    char *buf = slurp(path, &len);
    uint64_t n = verify_text(buf, len, head);

    free(buf);
    return n;
}

/* A journal another thread writes to: verified once it holds a line and
 * does not end inside a write.  0 if that takes more than 10 s. */
static uint64_t verify_when_written(const char *path, char head[IRP_SHA256_HEX])
{
    for (int i = 0; i < 10000; i++) {
        size_t len;
        /* A new journal has no name before its first write. */
        if (access(path, F_OK) != 0) {
            usleep(1000);
            continue;
        }
        char *buf = slurp(path, &len);
        uint64_t n = len && buf[len - 1] == '\n' ? verify_text(buf, len, head) : 0;
        free(buf);
        if (n)
            return n;
        usleep(1000);
    }
    return 0;
}

/* ---- events ------------------------------------------------------------ */

static json_t *note(const char *who, int i)
{
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:i}", "ts", "2026-11-28T12:00:00.000Z",
                           "wall", "2026-11-28T12:00:00.123Z", "event", "note", "who", who,
                           "i", i);
    assert_non_null(ev);
    return ev;
}

static uint64_t append_ok(irp_journal *j, json_t *ev)
{
    uint64_t seq = 0;
    int rc = irp_journal_append(j, ev, &seq);

    json_decref(ev);
    assert_int_equal(rc, 0);
    return seq;
}

static void make_journal(const char *path, int lines)
{
    irp_journal *j;

    assert_int_equal(irp_journal_create(path, &j), 0);
    for (int i = 1; i <= lines; i++)
        assert_int_equal(append_ok(j, note("runner", i)), (uint64_t)i);
    irp_journal_close(j);
}

/* ---- reading back ------------------------------------------------------ */

typedef struct collected {
    uint64_t n;
    int stop_at;                  /* return 42 from this line, 0: never */
    char head[IRP_SHA256_HEX];
    int who_child, who_parent;
    int switches;                 /* times the writer changed between lines */
    char last_who[16];
} collected;

static int collect(void *ctx, const irp_journal_line *line)
{
    collected *c = ctx;
    char hash[IRP_SHA256_HEX];
    const char *who = json_string_value(json_object_get(line->ev, "who"));

    c->n++;
    assert_int_equal(line->lineno, c->n);
    assert_int_equal(json_integer_value(json_object_get(line->ev, "seq")), c->n);
    hash_hex(line->text, line->len, hash);
    assert_string_equal(line->hash, hash);
    memcpy(c->head, hash, sizeof hash);
    if (who) {
        c->who_child += strcmp(who, "child") == 0;
        c->who_parent += strcmp(who, "parent") == 0;
        c->switches += c->last_who[0] && strcmp(who, c->last_who) != 0;
        snprintf(c->last_who, sizeof c->last_who, "%s", who);
    }
    return c->stop_at && (int)c->n == c->stop_at ? 42 : 0;
}

static int read_all(const char *path, collected *c, bool *partial, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    return irp_journal_read(path, collect, c, partial, err, errlen);
}

/* ---- create, append, read ---------------------------------------------- */

static void test_journal_create_append_read_back(void **state)
{
    fixture *f = *state;
    char head[IRP_SHA256_HEX], err[256];
    collected c;
    bool partial = true;

    make_journal(f->path, 5);
    assert_int_equal(verify_independently(f->path, head), 5);
    assert_int_equal(read_all(f->path, &c, &partial, err, sizeof err), 0);
    assert_int_equal(c.n, 5);
    assert_false(partial);
    assert_string_equal(c.head, head);
    assert_string_equal(err, "");
}

static void test_journal_seq_numbering(void **state)
{
    fixture *f = *state;
    irp_journal *j;

    assert_int_equal(irp_journal_create(f->path, &j), 0);
    assert_int_equal(irp_journal_seq(j), 0);
    for (uint64_t i = 1; i <= 10; i++) {
        assert_int_equal(append_ok(j, note("runner", (int)i)), i);
        assert_int_equal(irp_journal_seq(j), i);
    }
    irp_journal_close(j);

    /* A reopened journal continues where the file ends. */
    assert_int_equal(irp_journal_open(f->path, false, &j, NULL, NULL, 0), 0);
    assert_int_equal(irp_journal_seq(j), 10);
    assert_int_equal(append_ok(j, note("runner", 11)), 11);
    irp_journal_close(j);
}

static void test_journal_head_is_hash_of_last_line(void **state)
{
    fixture *f = *state;
    char head[IRP_SHA256_HEX];
    irp_journal *j;

    assert_int_equal(irp_journal_create(f->path, &j), 0);
    assert_string_equal(irp_journal_head(j), ZEROS);
    for (int i = 1; i <= 4; i++) {
        append_ok(j, note("runner", i));
        verify_independently(f->path, head);
        assert_string_equal(irp_journal_head(j), head);
    }
    irp_journal_close(j);

    assert_int_equal(irp_journal_open(f->path, false, &j, NULL, NULL, 0), 0);
    assert_string_equal(irp_journal_head(j), head);
    irp_journal_close(j);
}

static void test_journal_line_key_order(void **state)
{
    fixture *f = *state;
    irp_journal *j;
    size_t len;
    char *raw;

    assert_int_equal(irp_journal_create(f->path, &j), 0);
    append_ok(j, json_pack("{s:s, s:s, s:s, s:s, s:s}", "ts", "2026-11-28T12:00:00.000Z",
                           "wall", "2026-11-28T12:00:00.123Z", "event", "note",
                           "zeta", "z", "alpha", "a"));
    append_ok(j, json_pack("{s:s}", "event", "run.finished"));
    irp_journal_close(j);

    raw = slurp(f->path, &len);
    const char *first = "{\"seq\":1,\"ts\":\"2026-11-28T12:00:00.000Z\","
                        "\"wall\":\"2026-11-28T12:00:00.123Z\",\"event\":\"note\","
                        "\"zeta\":\"z\",\"alpha\":\"a\",\"prev\":\"" ZEROS "\"}\n";
    char hash[IRP_SHA256_HEX], second[256];
    hash_hex(first, strlen(first) - 1, hash);
    snprintf(second, sizeof second, "{\"seq\":2,\"event\":\"run.finished\",\"prev\":\"%s\"}\n",
             hash);
    assert_int_equal(len, strlen(first) + strlen(second));
    assert_memory_equal(raw, first, strlen(first));
    assert_string_equal(raw + strlen(first), second);
    free(raw);
}

static void test_journal_append_leaves_event_alone_and_refuses_reserved_keys(void **state)
{
    fixture *f = *state;
    irp_journal *j;
    json_t *ev = note("runner", 1);

    assert_int_equal(irp_journal_create(f->path, &j), 0);
    assert_int_equal(irp_journal_append(j, ev, NULL), 0);
    assert_int_equal(json_object_size(ev), 5);
    assert_null(json_object_get(ev, "seq"));
    assert_null(json_object_get(ev, "prev"));
    json_decref(ev);

    off_t size = file_size(f->path);
    json_t *bad_seq = json_pack("{s:s, s:i}", "event", "note", "seq", 9);
    json_t *bad_prev = json_pack("{s:s, s:s}", "event", "note", "prev", ZEROS);
    json_t *array = json_array();
    json_t *not_utf8 = json_object();
    json_object_set_new(not_utf8, "text", json_stringn_nocheck("\xff\xfe", 2));
    assert_int_equal(irp_journal_append(j, bad_seq, NULL), IRP_EINVAL);
    assert_int_equal(irp_journal_append(j, bad_prev, NULL), IRP_EINVAL);
    assert_int_equal(irp_journal_append(j, array, NULL), IRP_EINVAL);
    assert_int_equal(irp_journal_append(j, NULL, NULL), IRP_EINVAL);
    assert_int_equal(irp_journal_append(j, not_utf8, NULL), IRP_EINVAL);
    json_decref(bad_seq);
    json_decref(bad_prev);
    json_decref(array);
    json_decref(not_utf8);
    assert_int_equal(file_size(f->path), size);
    assert_int_equal(irp_journal_seq(j), 1);
    assert_int_equal(append_ok(j, note("runner", 2)), 2);
    irp_journal_close(j);
}

static void test_journal_utf8_round_trip(void **state)
{
    fixture *f = *state;
    const char *text = "Überprüfung — 事件 🚨 \"quoted\" back\\slash\ttab\nnewline";
    irp_journal *j;
    size_t len;
    char *raw;

    assert_int_equal(irp_journal_create(f->path, &j), 0);
    json_t *ev = json_pack("{s:s, s:s}", "event", "note", "text", text);
    json_object_set_new(ev, "bytes", json_stringn("a\0b", 3));
    json_object_set_new(ev, "ключ", json_string("значение"));
    append_ok(j, ev);
    irp_journal_close(j);

    /* UTF-8 is written as is, not as \u escapes; the line has one newline. */
    raw = slurp(f->path, &len);
    assert_non_null(strstr(raw, "事件 🚨"));
    assert_non_null(strstr(raw, "\"ключ\":\"значение\""));
    assert_null(strstr(raw, "\\u4e8b"));
    assert_ptr_equal(strchr(raw, '\n'), raw + len - 1);
    free(raw);

    json_error_t jerr;
    char *line[1];
    size_t llen[1];
    raw = slurp(f->path, &len);
    assert_int_equal(split_lines(raw, len, line, llen), 1);
    json_t *back = json_loadb(line[0], llen[0], JSON_ALLOW_NUL, &jerr);
    assert_non_null(back);
    assert_string_equal(json_string_value(json_object_get(back, "text")), text);
    assert_int_equal(json_string_length(json_object_get(back, "bytes")), 3);
    assert_memory_equal(json_string_value(json_object_get(back, "bytes")), "a\0b", 3);
    assert_string_equal(json_string_value(json_object_get(back, "ключ")), "значение");
    json_decref(back);
    free(raw);

    collected c;
    assert_int_equal(read_all(f->path, &c, NULL, NULL, 0), 0);
    assert_int_equal(c.n, 1);
}

/* Entries of f->dir other than "." and "..". */
static int count_entries(const fixture *f)
{
    DIR *d = opendir(f->dir);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void test_journal_create_refuses_existing_and_is_private(void **state)
{
    fixture *f = *state;
    irp_journal *j;
    struct stat st;

    assert_int_equal(irp_journal_create(f->path, &j), 0);
    append_ok(j, note("first", 1));
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    irp_journal_close(j);
    assert_int_equal(irp_journal_create(f->path, &j), IRP_EEXISTS);
    assert_null(j);
    assert_int_equal(count_entries(f), 1);
}

/* Another process that opens a new journal (`irp note` as soon as the
 * run's directory appears) never finds it empty: the name comes with the
 * first line, and a journal closed without one leaves nothing behind. */
static void test_journal_appears_with_its_first_line(void **state)
{
    fixture *f = *state;
    irp_journal *j;
    struct stat st;
    size_t len;

    assert_int_equal(irp_journal_create(f->path, &j), 0);
    assert_int_equal(stat(f->path, &st), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(append_ok(j, note("first", 1)), 1);
    char *text = slurp(f->path, &len);
    assert_non_null(text);
    assert_true(len > 0 && text[len - 1] == '\n');
    assert_non_null(strstr(text, "\"seq\":1,"));
    free(text);
    irp_journal_close(j);
    assert_int_equal(count_entries(f), 1);

    char other[160];
    snprintf(other, sizeof other, "%s/never.jsonl", f->dir);
    assert_int_equal(irp_journal_create(other, &j), 0);
    assert_int_equal(count_entries(f), 2);          /* its temporary name */
    irp_journal_close(j);
    assert_int_equal(count_entries(f), 1);
    assert_int_equal(stat(other, &st), -1);

    /* The name taken after create: the first append fails, as O_EXCL. */
    assert_int_equal(irp_journal_create(other, &j), 0);
    int fd = open(other, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    json_t *ev = note("late", 1);
    assert_int_equal(irp_journal_append(j, ev, NULL), IRP_EEXISTS);
    json_decref(ev);
    irp_journal_close(j);
    assert_int_equal(stat(other, &st), 0);
    assert_int_equal(st.st_size, 0);
    assert_int_equal(count_entries(f), 2);
}

static void test_journal_open_empty_file(void **state)
{
    fixture *f = *state;
    irp_journal_open_info info;
    irp_journal *j;
    char head[IRP_SHA256_HEX];

    write_file(f->path, "", 0, "wb");
    assert_int_equal(irp_journal_open(f->path, false, &j, &info, NULL, 0), 0);
    assert_int_equal(info.lines, 0);
    assert_false(info.dropped_partial);
    assert_string_equal(irp_journal_head(j), ZEROS);
    assert_int_equal(append_ok(j, note("runner", 1)), 1);
    irp_journal_close(j);
    assert_int_equal(verify_independently(f->path, head), 1);
}

static void test_journal_read_missing_file(void **state)
{
    fixture *f = *state;
    irp_journal *j;
    char err[128];

    assert_int_equal(irp_journal_read(f->path, NULL, NULL, NULL, err, sizeof err), IRP_ENOENT);
    assert_true(strlen(err) > 0);
    assert_int_equal(irp_journal_open(f->path, true, &j, NULL, NULL, 0), IRP_ENOENT);
    assert_null(j);
}

static void test_journal_read_callback_stops_read(void **state)
{
    fixture *f = *state;
    collected c;

    make_journal(f->path, 5);
    memset(&c, 0, sizeof c);
    c.stop_at = 2;
    assert_int_equal(irp_journal_read(f->path, collect, &c, NULL, NULL, 0), 42);
    assert_int_equal(c.n, 2);
}

static void test_journal_sha256_hex_known_vectors(void **state)
{
    char out[IRP_SHA256_HEX];

    (void)state;
    irp_sha256_hex("abc", 3, out);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    irp_sha256_hex("", 0, out);
    assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

/* ---- several writers ----------------------------------------------------- */

static void test_journal_two_handles_interleave_one_chain(void **state)
{
    fixture *f = *state;
    irp_journal *a, *b;
    char head[IRP_SHA256_HEX];
    collected c;

    assert_int_equal(irp_journal_create(f->path, &a), 0);
    assert_int_equal(append_ok(a, note("parent", 0)), 1);
    /* Like `irp note` beside a live run: its own open file, its own lock. */
    assert_int_equal(irp_journal_open(f->path, false, &b, NULL, NULL, 0), 0);
    for (int i = 0; i < 20; i++) {
        uint64_t sa = append_ok(a, note("parent", i));
        uint64_t sb = append_ok(b, note("child", i));
        assert_int_equal(sa, 2 + 2 * (uint64_t)i);
        assert_int_equal(sb, sa + 1);
        /* b wrote last: its head is the file's; a catches up on its next append. */
        verify_independently(f->path, head);
        assert_string_equal(irp_journal_head(b), head);
    }
    assert_int_equal(append_ok(a, note("parent", 99)), 42);
    assert_int_equal(verify_independently(f->path, head), 42);
    assert_string_equal(irp_journal_head(a), head);
    irp_journal_close(a);
    irp_journal_close(b);

    assert_int_equal(read_all(f->path, &c, NULL, NULL, 0), 0);
    assert_int_equal(c.n, 42);
    assert_int_equal(c.who_child, 20);
    assert_int_equal(c.who_parent, 22);
}

#define FORK_APPENDS 2000

/* Runs in the forked child: no cmocka asserts here, an exit code instead. */
static int child_appends(const char *path, int ready_fd)
{
    irp_journal *j;
    char go = 1;

    if (irp_journal_open(path, false, &j, NULL, NULL, 0) != 0)
        return 10;
    if (write(ready_fd, &go, 1) != 1)
        return 11;
    for (int i = 0; i < FORK_APPENDS; i++) {
        json_t *ev = json_pack("{s:s, s:s, s:i}", "event", "note", "who", "child", "i", i);
        int rc = ev ? irp_journal_append(j, ev, NULL) : IRP_ENOMEM;
        json_decref(ev);
        if (rc != 0) {
            irp_journal_close(j);
            return 12;
        }
    }
    irp_journal_close(j);
    return 0;
}

static void test_journal_forked_writer_keeps_one_chain(void **state)
{
    fixture *f = *state;
    irp_journal *j;
    int ready[2], status;
    char go, head[IRP_SHA256_HEX];
    uint64_t last = 1;
    collected c;
    pid_t pid;

    assert_int_equal(irp_journal_create(f->path, &j), 0);
    append_ok(j, note("parent", -1));
    assert_int_equal(pipe(ready), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        _exit(child_appends(f->path, ready[1]));
    }
    close(ready[1]);
    assert_int_equal(read(ready[0], &go, 1), 1);     /* both writing from here */
    close(ready[0]);
    for (int i = 0; i < FORK_APPENDS; i++) {
        uint64_t seq = append_ok(j, note("parent", i));
        assert_true(seq > last);
        last = seq;
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    assert_int_equal(read_all(f->path, &c, NULL, NULL, 0), 0);
    assert_int_equal(c.n, 1 + 2 * FORK_APPENDS);
    assert_int_equal(c.who_parent, 1 + FORK_APPENDS);
    assert_int_equal(c.who_child, FORK_APPENDS);
    print_message("forked writer: %d switches between writers\n", c.switches);

    assert_int_equal(append_ok(j, note("parent", 999)), 2 + 2 * FORK_APPENDS);
    assert_int_equal(verify_independently(f->path, head), 2 + 2 * FORK_APPENDS);
    assert_string_equal(irp_journal_head(j), head);
    irp_journal_close(j);
}

/* ---- partial last line ----------------------------------------------------- */

static const char partial_line[] = "{\"seq\":4,\"ts\":\"2026-11-28T12:00:0";

static void test_journal_read_ignores_partial_last_line(void **state)
{
    fixture *f = *state;
    collected c;
    bool partial = false;

    make_journal(f->path, 3);
    write_file(f->path, partial_line, strlen(partial_line), "ab");
    assert_int_equal(read_all(f->path, &c, &partial, NULL, 0), 0);
    assert_int_equal(c.n, 3);
    assert_true(partial);
}

static void test_journal_open_repair_drops_partial_last_line(void **state)
{
    fixture *f = *state;
    irp_journal_open_info info;
    irp_journal *j;
    char err[256], head[IRP_SHA256_HEX];

    make_journal(f->path, 3);
    off_t good = file_size(f->path);
    write_file(f->path, partial_line, strlen(partial_line), "ab");

    /* Without repair it is refused, and the file is left alone. */
    assert_int_equal(irp_journal_open(f->path, false, &j, &info, err, sizeof err), IRP_ECORRUPT);
    assert_null(j);
    assert_string_equal(err, "line 4: cut off mid-write (33 bytes without a newline at the end)");
    assert_int_equal(file_size(f->path), good + (off_t)strlen(partial_line));

    assert_int_equal(irp_journal_open(f->path, true, &j, &info, err, sizeof err), 0);
    assert_int_equal(info.lines, 3);
    assert_true(info.dropped_partial);
    assert_int_equal(info.dropped_bytes, strlen(partial_line));
    assert_int_equal(file_size(f->path), good);
    assert_int_equal(append_ok(j, note("runner", 4)), 4);
    irp_journal_close(j);
    assert_int_equal(verify_independently(f->path, head), 4);
}

static void test_journal_append_drops_line_left_by_dead_writer(void **state)
{
    fixture *f = *state;
    irp_journal *j;
    char head[IRP_SHA256_HEX];

    make_journal(f->path, 3);
    assert_int_equal(irp_journal_open(f->path, false, &j, NULL, NULL, 0), 0);
    /* Another writer died inside write() after this handle opened. */
    write_file(f->path, partial_line, strlen(partial_line), "ab");
    assert_int_equal(append_ok(j, note("runner", 4)), 4);
    irp_journal_close(j);
    assert_int_equal(verify_independently(f->path, head), 4);
}

static void test_journal_append_refuses_foreign_line_that_breaks_chain(void **state)
{
    fixture *f = *state;
    irp_journal *j;
    json_t *ev = note("runner", 4);

    make_journal(f->path, 3);
    assert_int_equal(irp_journal_open(f->path, false, &j, NULL, NULL, 0), 0);
    const char *foreign = "{\"seq\":4,\"event\":\"note\",\"prev\":\"" ZEROS "\"}\n";
    write_file(f->path, foreign, strlen(foreign), "ab");
    off_t size = file_size(f->path);
    assert_int_equal(irp_journal_append(j, ev, NULL), IRP_ECORRUPT);
    assert_int_equal(file_size(f->path), size);

    /* A file cut shorter than what the handle has seen is refused too. */
    assert_int_equal(truncate(f->path, 10), 0);
    assert_int_equal(irp_journal_append(j, ev, NULL), IRP_ECORRUPT);
    assert_int_equal(file_size(f->path), 10);
    json_decref(ev);
    irp_journal_close(j);
}

/* ---- tampering ------------------------------------------------------------- */

#define TAMPER_LINES 8

/* Rewrite the journal with its lines in `order` (1-based numbers). */
static void rewrite(const char *path, char **line, size_t *llen, const int *order, size_t n)
{
    FILE *fp = fopen(path, "wb");

    assert_non_null(fp);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(fwrite(line[order[i] - 1], 1, llen[order[i] - 1], fp),
                         llen[order[i] - 1]);
        assert_int_equal(fputc('\n', fp), '\n');
    }
    assert_int_equal(fclose(fp), 0);
}

/* Both readers must name the same line and the same problem. */
static void expect_damage(const char *path, const char *want, size_t cmp_len)
{
    char err[256];
    irp_journal *j;
    collected c;

    assert_int_equal(read_all(path, &c, NULL, err, sizeof err), IRP_ECORRUPT);
    assert_memory_equal(err, want, cmp_len ? cmp_len : strlen(want) + 1);
    assert_int_equal(irp_journal_open(path, true, &j, NULL, err, sizeof err), IRP_ECORRUPT);
    assert_null(j);
    assert_memory_equal(err, want, cmp_len ? cmp_len : strlen(want) + 1);
}

typedef struct tamper {
    char *buf;
    size_t len;
    char *line[TAMPER_LINES];
    size_t llen[TAMPER_LINES];
} tamper;

static void tamper_load(const char *path, tamper *t)
{
    make_journal(path, TAMPER_LINES);
    t->buf = slurp(path, &t->len);
    assert_int_equal(split_lines(t->buf, t->len, t->line, t->llen), TAMPER_LINES);
}

static const int in_order[TAMPER_LINES] = { 1, 2, 3, 4, 5, 6, 7, 8 };

static void test_journal_tamper_changed_byte_located(void **state)
{
    fixture *f = *state;
    tamper t;

    tamper_load(f->path, &t);
    char *at = strstr(t.line[2], "\"event\":\"note\"");
    assert_true(at && at < t.line[3]);
    at[9] = 'N';                             /* "note" -> "Note" in line 3 */
    rewrite(f->path, t.line, t.llen, in_order, TAMPER_LINES);
    expect_damage(f->path, "line 4: prev does not match the hash of line 3", 0);
    free(t.buf);
}

static void test_journal_tamper_invalid_json_located(void **state)
{
    fixture *f = *state;
    tamper t;

    tamper_load(f->path, &t);
    t.line[2][0] = 'x';
    rewrite(f->path, t.line, t.llen, in_order, TAMPER_LINES);
    expect_damage(f->path, "line 3: not valid JSON: ", strlen("line 3: not valid JSON: "));
    free(t.buf);
}

static void test_journal_tamper_deleted_line_located(void **state)
{
    fixture *f = *state;
    static const int order[] = { 1, 2, 3, 4, 6, 7, 8 };
    tamper t;

    tamper_load(f->path, &t);
    rewrite(f->path, t.line, t.llen, order, 7);
    expect_damage(f->path, "line 5: seq is 6, expected 5", 0);
    free(t.buf);
}

static void test_journal_tamper_swapped_lines_located(void **state)
{
    fixture *f = *state;
    static const int order[] = { 1, 2, 4, 3, 5, 6, 7, 8 };
    tamper t;

    tamper_load(f->path, &t);
    rewrite(f->path, t.line, t.llen, order, TAMPER_LINES);
    expect_damage(f->path, "line 3: seq is 4, expected 3", 0);
    free(t.buf);
}

static void test_journal_tamper_first_prev_located(void **state)
{
    fixture *f = *state;
    tamper t;

    tamper_load(f->path, &t);
    char *at = strstr(t.line[0], "\"prev\":\"0");
    assert_true(at && at < t.line[1]);
    at[8] = '1';
    rewrite(f->path, t.line, t.llen, in_order, TAMPER_LINES);
    expect_damage(f->path, "line 1: prev is not 64 zeros, as the first line's must be", 0);
    free(t.buf);
}

static void test_journal_tamper_not_object_or_missing_fields_located(void **state)
{
    fixture *f = *state;
    static const int first2[] = { 1, 2 };
    char *fake[2];
    size_t flen[2];
    tamper t;

    tamper_load(f->path, &t);
    fake[0] = t.line[0];
    flen[0] = t.llen[0];
    fake[1] = "[1,2]";
    flen[1] = 5;
    rewrite(f->path, fake, flen, first2, 2);
    expect_damage(f->path, "line 2: not a JSON object", 0);
    fake[1] = "{\"seq\":\"2\"}";
    flen[1] = strlen(fake[1]);
    rewrite(f->path, fake, flen, first2, 2);
    expect_damage(f->path, "line 2: seq is missing or not an integer", 0);
    fake[1] = "{\"seq\":2}";
    flen[1] = strlen(fake[1]);
    rewrite(f->path, fake, flen, first2, 2);
    expect_damage(f->path, "line 2: prev is missing or not a string", 0);
    fake[1] = "{\"seq\":2,\"seq\":2}";
    flen[1] = strlen(fake[1]);
    rewrite(f->path, fake, flen, first2, 2);
    expect_damage(f->path, "line 2: not valid JSON: ", strlen("line 2: not valid JSON: "));
    free(t.buf);
}

/* The chain cannot see a changed last line; the head written down
 * elsewhere does. */
static void test_journal_tamper_last_line_changes_head(void **state)
{
    fixture *f = *state;
    char before[IRP_SHA256_HEX];
    collected c;
    tamper t;

    tamper_load(f->path, &t);
    assert_int_equal(read_all(f->path, &c, NULL, NULL, 0), 0);
    memcpy(before, c.head, sizeof before);
    char *at = strstr(t.line[7], "\"i\":8");
    assert_non_null(at);
    at[4] = '9';
    rewrite(f->path, t.line, t.llen, in_order, TAMPER_LINES);
    assert_int_equal(read_all(f->path, &c, NULL, NULL, 0), 0);
    assert_string_not_equal(c.head, before);
    free(t.buf);
}

/* ---- size limits ------------------------------------------------------------ */

static json_t *note_of_len(size_t n)
{
    char *s = malloc(n + 1);
    json_t *ev;

    assert_non_null(s);
    memset(s, 'x', n);
    s[n] = '\0';
    ev = json_pack("{s:s, s:s}", "event", "note", "text", s);
    free(s);
    assert_non_null(ev);
    return ev;
}

/* Journal text is jansson's compact JSON, byte for byte, though irp writes
 * it with its own serializer: every escape, number and nesting. */
static json_t *awkward_event(void)
{
    char all[128];
    for (int i = 0; i < 127; i++)
        all[i] = (char)(i + 1);   /* every ASCII byte but NUL, DEL included */
    json_t *ev = json_object();
    json_object_set_new(ev, "event", json_string("note"));
    json_object_set_new(ev, "ascii", json_stringn(all, 127));
    json_object_set_new(ev, "nul", json_stringn("a\0b\0", 4));
    json_object_set_new(ev, "utf8", json_string("\u00e9 \u4e8b \U0001F6A8 \u2028 \ufeff"));
    json_object_set_new(ev, "key \"\\\n\x01 \u00e9", json_string(""));
    json_object_set_new(ev, "ints", json_pack("[I,I,I,I,I]", (json_int_t)0, (json_int_t)-1,
                                              (json_int_t)1234567890123LL,
                                              (json_int_t)INT64_MAX, (json_int_t)INT64_MIN));
    json_object_set_new(ev, "reals", json_pack("[f,f,f,f,f]", 0.1, -0.0, 3.0, 1e300, -2.5e-7));
    json_object_set_new(ev, "lits", json_pack("[b,b,n]", 1, 0));
    json_object_set_new(ev, "empty", json_pack("{s:{},s:[],s:[[]],s:{s:{}}}", "o", "a", "aa", "n", "x"));
    json_object_set_new(ev, "nested", json_pack("{s:[{s:[i,{s:s}]}]}", "a", "b", 1, "c", "d"));
    assert_int_equal(json_object_size(ev), 10);   /* every part was built */
    return ev;
}

static void test_journal_line_text_is_jansson_compact(void **state)
{
    fixture *f = *state;
    irp_journal *j;
    size_t len;

    json_t *ev = awkward_event();
    char *want = json_dumps(ev, JSON_COMPACT | JSON_EMBED);
    assert_non_null(want);
    assert_int_equal(irp_journal_create(f->path, &j), 0);
    append_ok(j, ev);
    irp_journal_close(j);
    char *raw = slurp(f->path, &len);
    /* {"seq":1,<members>,"prev":"<64 zeros>"}\n */
    assert_true(len > 8 + 75);
    assert_memory_equal(raw, "{\"seq\":1,", 9);
    assert_int_equal(len - 9 - 76, strlen(want));
    assert_memory_equal(raw + 9, want, strlen(want));
    free(raw);
    free(want);
}

static void test_json_dump_matches_jansson(void **state)
{
    (void)state;
    json_t *ev = awkward_event();
    json_t *values[] = { ev, json_object_get(ev, "ascii"), json_object_get(ev, "ints"),
                         json_object_get(ev, "reals"), json_object_get(ev, "empty") };
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        irp_json_buf b = { 0 };
        char *want = json_dumps(values[i], JSON_COMPACT | JSON_ENCODE_ANY);
        assert_int_equal(irp_json_dump(values[i], &b), 0);
        assert_int_equal(b.len, strlen(want));
        assert_memory_equal(b.p, want, b.len);
        free(want);
        free(b.p);
    }
    /* Members only: what JSON_EMBED writes; nothing for {}. */
    irp_json_buf b = { 0 };
    assert_int_equal(irp_json_dump_members(json_object_get(ev, "nested"), &b), 0);
    assert_int_equal(b.len, strlen("\"a\":[{\"b\":[1,{\"c\":\"d\"}]}]"));
    assert_memory_equal(b.p, "\"a\":[{\"b\":[1,{\"c\":\"d\"}]}]", b.len);
    json_t *empty = json_object();
    assert_int_equal(irp_json_dump_members(empty, &b), 0);
    assert_int_equal(b.len, strlen("\"a\":[{\"b\":[1,{\"c\":\"d\"}]}]"));
    json_decref(empty);
    free(b.p);
    json_decref(ev);
}

static void test_json_dump_refuses_what_jansson_refuses(void **state)
{
    (void)state;
    static const char *const bad[] = { "\xff", "a\xc3", "\xc0\xaf", "\xed\xa0\x80",
                                       "\xf4\x90\x80\x80", "\xe2\x82" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "ok", json_string("kept"));
        json_object_set_new_nocheck(o, "bad", json_stringn_nocheck(bad[i], strlen(bad[i])));
        irp_json_buf b = { 0 };
        assert_int_equal(irp_json_buf_put(&b, "x", 1), 0);
        assert_null(json_dumps(o, JSON_COMPACT));
        assert_int_equal(irp_json_dump(o, &b), IRP_EINVAL);
        assert_int_equal(b.len, 1);   /* nothing half-written */
        free(b.p);
        json_decref(o);
    }
    /* Deeper than the limit: refused, not a stack overflow. */
    json_t *deep = json_array(), *in = deep;
    for (int d = 0; d < IRP_JSON_MAX_DEPTH; d++) {
        json_t *next = json_array();
        json_array_append_new(in, next);
        in = next;
    }
    irp_json_buf b = { 0 };
    assert_int_equal(irp_json_dump(deep, &b), IRP_EINVAL);
    assert_int_equal(b.len, 0);
    json_decref(deep);
    free(b.p);
}

static void test_journal_line_limit_on_append(void **state)
{
    fixture *f = *state;
    irp_journal *j;
    size_t overhead;
    char head[IRP_SHA256_HEX];

    /* Measure a line's fixed part, then write one exactly at the limit. */
    assert_int_equal(irp_journal_create(f->path, &j), 0);
    append_ok(j, note_of_len(1));
    overhead = (size_t)file_size(f->path) - 1 - 1;
    irp_journal_close(j);
    assert_int_equal(unlink(f->path), 0);

    assert_int_equal(irp_journal_create(f->path, &j), 0);
    append_ok(j, note_of_len(IRP_JOURNAL_MAX_LINE - overhead));
    assert_int_equal(file_size(f->path), IRP_JOURNAL_MAX_LINE + 1);
    json_t *big = note_of_len(IRP_JOURNAL_MAX_LINE);
    assert_int_equal(irp_journal_append(j, big, NULL), IRP_ELIMIT);
    json_decref(big);
    assert_int_equal(file_size(f->path), IRP_JOURNAL_MAX_LINE + 1);
    assert_int_equal(irp_journal_seq(j), 1);
    irp_journal_close(j);
    assert_int_equal(verify_independently(f->path, head), 1);
    collected c;
    assert_int_equal(read_all(f->path, &c, NULL, NULL, 0), 0);
    assert_int_equal(c.n, 1);
}

static void test_journal_line_limit_on_read(void **state)
{
    fixture *f = *state;
    size_t n = IRP_JOURNAL_MAX_LINE + 1;
    char *huge = malloc(n + 1), err[256];
    irp_journal *j;
    collected c;

    assert_non_null(huge);
    make_journal(f->path, 1);
    memset(huge, 'x', n);
    huge[n] = '\n';
    write_file(f->path, huge, n + 1, "ab");
    free(huge);
    assert_int_equal(read_all(f->path, &c, NULL, err, sizeof err), IRP_ELIMIT);
    assert_int_equal(c.n, 1);
    assert_string_equal(err, "line 2: longer than 16 MiB");
    assert_int_equal(irp_journal_open(f->path, true, &j, NULL, err, sizeof err), IRP_ELIMIT);
    assert_string_equal(err, "line 2: longer than 16 MiB");
}

/* ---- write failures ----------------------------------------------------------- */

static void test_journal_write_failure_on_full_disk_truncates_back(void **state)
{
    fixture *f = *state;
    char mnt[96], path[128], filler[128], head[IRP_SHA256_HEX];
    irp_journal *j;
    off_t good = 0;
    int rc = 0;
    uint64_t lines = 0;

    snprintf(mnt, sizeof mnt, "%s/tiny", f->dir);
    assert_int_equal(mkdir(mnt, 0700), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=64k") != 0) {
        print_message("cannot mount a 64k tmpfs (%s): skipped\n", strerror(errno));
        skip();
    }
    snprintf(path, sizeof path, "%s/journal.jsonl", mnt);
    snprintf(filler, sizeof filler, "%s/filler", mnt);
    char *pad = calloc(1, 8192);
    assert_non_null(pad);
    write_file(filler, pad, 8192, "wb");
    free(pad);

    assert_int_equal(irp_journal_create(path, &j), 0);
    /* Lines of ~3 KB do not fall on page boundaries: the last write is short. */
    for (int i = 0; i < 100; i++) {
        json_t *ev = note_of_len(3000);
        rc = irp_journal_append(j, ev, NULL);
        json_decref(ev);
        if (rc != 0)
            break;
        lines++;
        good = file_size(path);
    }
    assert_int_equal(rc, IRP_ENOSPC);
    assert_true(lines > 5);
    assert_int_equal(file_size(path), good);
    assert_int_equal(irp_journal_seq(j), lines);
    assert_int_equal(verify_independently(path, head), lines);
    assert_string_equal(irp_journal_head(j), head);

    /* Space comes back: the same handle goes on, the chain unbroken. */
    assert_int_equal(unlink(filler), 0);
    assert_int_equal(append_ok(j, note_of_len(3000)), lines + 1);
    assert_int_equal(verify_independently(path, head), lines + 1);
    assert_string_equal(irp_journal_head(j), head);
    irp_journal_close(j);
    assert_int_equal(umount(mnt), 0);
}

/* Runs in the forked child: exit code instead of asserts. */
static int child_hits_fsize_limit(const char *path)
{
    struct rlimit lim;
    struct stat st, lst;
    irp_journal *j;
    json_t *ev;
    int rc;

    signal(SIGXFSZ, SIG_IGN);
    if (irp_journal_open(path, false, &j, NULL, NULL, 0) != 0 || stat(path, &st) != 0)
        return 10;
    lim.rlim_cur = lim.rlim_max = (rlim_t)st.st_size + 400;
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0)
        return 11;
    ev = note_of_len(1000);
    rc = irp_journal_append(j, ev, NULL);
    json_decref(ev);
    if (rc != IRP_ENOSPC)
        return 12;
    if (stat(path, &lst) != 0 || lst.st_size != st.st_size || irp_journal_seq(j) != 3)
        return 13;
    ev = json_pack("{s:s}", "event", "note");
    rc = irp_journal_append(j, ev, NULL);      /* a short line still fits */
    json_decref(ev);
    irp_journal_close(j);
    return rc == 0 ? 0 : 14;
}

static void test_journal_write_failure_short_write_truncates_back(void **state)
{
    fixture *f = *state;
    char head[IRP_SHA256_HEX];
    int status;
    pid_t pid;

    make_journal(f->path, 3);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(child_hits_fsize_limit(f->path));
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(verify_independently(f->path, head), 4);
}

/* ---- sync ----------------------------------------------------------------------- */

static void test_journal_sync_blocking(void **state)
{
    fixture *f = *state;
    irp_journal *j;

    assert_int_equal(irp_journal_create(f->path, &j), 0);
    assert_int_equal(irp_journal_sync(j), 0);          /* nothing to make durable */
    assert_int_equal(irp_journal_fsync_count(j), 0);
    append_ok(j, note("runner", 1));
    append_ok(j, note("runner", 2));
    assert_int_equal(irp_journal_durable_seq(j), 0);
    assert_int_equal(irp_journal_sync(j), 0);
    assert_int_equal(irp_journal_fsync_count(j), 1);
    assert_int_equal(irp_journal_durable_seq(j), 2);
    assert_int_equal(irp_journal_sync(j), 0);
    assert_int_equal(irp_journal_fsync_count(j), 1);
    append_ok(j, note("runner", 3));
    assert_int_equal(irp_journal_sync(j), 0);
    assert_int_equal(irp_journal_fsync_count(j), 2);
    irp_journal_close(j);

    /* A reopened journal trusts nothing to be on disk until it syncs. */
    assert_int_equal(irp_journal_open(f->path, false, &j, NULL, NULL, 0), 0);
    assert_int_equal(irp_journal_durable_seq(j), 0);
    assert_int_equal(irp_journal_sync(j), 0);
    assert_int_equal(irp_journal_fsync_count(j), 1);
    assert_int_equal(irp_journal_durable_seq(j), 3);
    irp_journal_close(j);
}

#define MAX_REQS 64

typedef struct sync_log {
    int n;
    uint64_t seq[MAX_REQS];
    int status[MAX_REQS];
    int id[MAX_REQS];
    int depth, max_depth;
    irp_journal *j;           /* for callbacks that act on the journal */
    uv_loop_t *loop;
} sync_log;

typedef struct sync_req {
    sync_log *log;
    uint64_t seq;
    int id;
    void (*then)(struct sync_req *r);
} sync_req;

static void on_sync(void *arg, int status)
{
    sync_req *r = arg;
    sync_log *log = r->log;

    /* Success means the line is durable by then, never before. */
    if (status == 0 && log->j)
        assert_true(irp_journal_durable_seq(log->j) >= r->seq);
    log->depth++;
    if (log->depth > log->max_depth)
        log->max_depth = log->depth;
    assert_true(log->n < MAX_REQS);
    log->seq[log->n] = r->seq;
    log->status[log->n] = status;
    log->id[log->n] = r->id;
    log->n++;
    if (r->then)
        r->then(r);
    log->depth--;
}

static void request(irp_journal *j, uv_loop_t *loop, sync_req *r, sync_log *log, uint64_t seq,
                    int id)
{
    r->log = log;
    r->seq = seq;
    r->id = id;
    assert_int_equal(irp_journal_sync_async(j, loop, seq, on_sync, r), 0);
}

static void loop_done(uv_loop_t *loop)
{
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(loop), 0);
}

static void test_journal_sync_async_coalesces(void **state)
{
    fixture *f = *state;
    sync_req req[50] = { 0 };
    sync_log log = { 0 };
    uv_loop_t loop;
    irp_journal *j;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(irp_journal_create(f->path, &j), 0);
    /* The first request starts an fsync covering line 1; the 49 lines
     * appended while it runs all share the next one. */
    append_ok(j, note("runner", 1));
    request(j, &loop, &req[0], &log, 1, 0);
    for (int i = 2; i <= 50; i++) {
        append_ok(j, note("runner", i));
        request(j, &loop, &req[i - 1], &log, (uint64_t)i, i - 1);
    }
    assert_int_equal(log.n, 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(log.n, 50);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(log.seq[i], i + 1);
        assert_int_equal(log.status[i], 0);
    }
    assert_int_equal(irp_journal_fsync_count(j), 2);
    assert_int_equal(irp_journal_durable_seq(j), 50);
    irp_journal_close(j);
    loop_done(&loop);
}

static void test_journal_sync_async_callbacks_in_seq_order(void **state)
{
    fixture *f = *state;
    static const uint64_t asked[] = { 5, 3, 4, 3, 1 };
    sync_req req[5] = { 0 };
    sync_log log = { 0 };
    uv_loop_t loop;
    irp_journal *j;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(irp_journal_create(f->path, &j), 0);
    for (int i = 1; i <= 5; i++)
        append_ok(j, note("runner", i));
    for (int i = 0; i < 5; i++)
        request(j, &loop, &req[i], &log, asked[i], i);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(log.n, 5);
    /* seq order; the two requests for 3 in the order asked */
    static const uint64_t seqs[] = { 1, 3, 3, 4, 5 };
    static const int ids[] = { 4, 1, 3, 2, 0 };
    for (int i = 0; i < 5; i++) {
        assert_int_equal(log.seq[i], seqs[i]);
        assert_int_equal(log.id[i], ids[i]);
        assert_int_equal(log.status[i], 0);
    }
    assert_int_equal(irp_journal_fsync_count(j), 1);
    irp_journal_close(j);
    loop_done(&loop);
}

static void test_journal_sync_async_durable_completes_next_turn(void **state)
{
    fixture *f = *state;
    sync_req req[2] = { 0 };
    sync_log log = { 0 };
    uv_loop_t loop;
    irp_journal *j;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(irp_journal_create(f->path, &j), 0);
    for (int i = 1; i <= 3; i++)
        append_ok(j, note("runner", i));
    assert_int_equal(irp_journal_sync(j), 0);
    assert_int_equal(irp_journal_fsync_count(j), 1);

    request(j, &loop, &req[0], &log, 2, 0);
    request(j, &loop, &req[1], &log, 0, 1);
    assert_int_equal(log.n, 0);                    /* never inside the call */
    uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.seq[0], 0);
    assert_int_equal(log.seq[1], 2);
    assert_int_equal(log.status[0], 0);
    assert_int_equal(log.status[1], 0);
    assert_int_equal(irp_journal_fsync_count(j), 1);   /* no fsync needed */
    irp_journal_close(j);
    loop_done(&loop);
}

static sync_req nested_req;

static void ask_again(sync_req *r)
{
    nested_req.then = NULL;
    request(r->log->j, r->log->loop, &nested_req, r->log, 1, 7);
    assert_int_equal(r->log->n, 1);                /* not run inside */
}

static void test_journal_sync_async_request_from_callback(void **state)
{
    fixture *f = *state;
    sync_req req = { 0 };
    sync_log log = { 0 };
    uv_loop_t loop;
    irp_journal *j;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(irp_journal_create(f->path, &j), 0);
    append_ok(j, note("runner", 1));
    log.j = j;
    log.loop = &loop;
    req.then = ask_again;
    request(j, &loop, &req, &log, 1, 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.id[1], 7);
    assert_int_equal(log.status[1], 0);
    assert_int_equal(log.max_depth, 1);
    assert_int_equal(irp_journal_fsync_count(j), 1);
    irp_journal_close(j);
    loop_done(&loop);
}

static void test_journal_fsync_off(void **state)
{
    fixture *f = *state;
    sync_req req = { 0 };
    sync_log log = { 0 };
    uv_loop_t loop;
    irp_journal *j;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(irp_journal_create(f->path, &j), 0);
    irp_journal_set_fsync(j, false);
    for (int i = 1; i <= 3; i++)
        append_ok(j, note("runner", i));
    request(j, &loop, &req, &log, 3, 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(log.n, 1);
    assert_int_equal(log.status[0], 0);
    assert_int_equal(irp_journal_durable_seq(j), 3);
    append_ok(j, note("runner", 4));
    assert_int_equal(irp_journal_sync(j), 0);
    assert_int_equal(irp_journal_durable_seq(j), 4);
    assert_int_equal(irp_journal_fsync_count(j), 0);
    irp_journal_close(j);
    loop_done(&loop);
}

static void test_journal_fsync_error_is_sticky(void **state)
{
    fixture *f = *state;
    sync_req req[3] = { 0 };
    sync_log log = { 0 };
    uv_loop_t loop;
    irp_journal *j;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(irp_journal_create(f->path, &j), 0);
    append_ok(j, note("runner", 1));
    append_ok(j, note("runner", 2));
    irp_journal_inject_fsync_error(j, IRP_EIO);
    request(j, &loop, &req[0], &log, 2, 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(log.n, 1);
    assert_int_equal(log.status[0], IRP_EIO);
    assert_int_equal(irp_journal_durable_seq(j), 0);
    assert_int_equal(irp_journal_fsync_count(j), 1);

    /* No later sync may claim success: the pages may be gone. */
    assert_int_equal(irp_journal_sync(j), IRP_EIO);
    append_ok(j, note("runner", 3));
    request(j, &loop, &req[1], &log, 3, 1);
    request(j, &loop, &req[2], &log, 1, 2);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(log.n, 3);
    assert_int_equal(log.status[1], IRP_EIO);
    assert_int_equal(log.status[2], IRP_EIO);
    assert_int_equal(irp_journal_fsync_count(j), 1);
    irp_journal_close(j);
    loop_done(&loop);
}

/* A line appended while a round runs gets a round of its own alongside
 * it.  When the first fails, the second's success counts for nothing,
 * whichever comes back first: the failure may have been reported to the
 * first alone, and the pages the second found clean may be gone. */
static void test_journal_round_beside_a_failed_one_counts_for_nothing(void **state)
{
    fixture *f = *state;
    sync_req req[2] = { 0 };
    sync_log log = { 0 };
    uv_loop_t loop;
    irp_journal *j;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(irp_journal_create(f->path, &j), 0);
    append_ok(j, note("runner", 1));
    irp_journal_inject_fsync_error(j, IRP_EIO);
    request(j, &loop, &req[0], &log, 1, 0);
    append_ok(j, note("runner", 2));
    request(j, &loop, &req[1], &log, 2, 1);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.status[0], IRP_EIO);
    assert_int_equal(log.status[1], IRP_EIO);
    assert_int_equal(irp_journal_durable_seq(j), 0);
    assert_false(irp_journal_is_durable(j, 2));
    assert_int_equal(irp_journal_sync(j), IRP_EIO);
    irp_journal_close(j);
    loop_done(&loop);
}

/* Lines appended one loop turn after another while a round runs: each
 * turn's lines start a round at once, beside it, rather than all waiting
 * for it to come back; every waiter still hears only once its line is
 * durable, in seq order. */
static void on_turn(uv_timer_t *t);

typedef struct turns {
    irp_journal *j;
    uv_loop_t *loop;
    sync_req req[6];
    sync_log log;
    int next;
} turns;

static void on_turn(uv_timer_t *t)
{
    turns *x = t->data;

    append_ok(x->j, note("runner", x->next + 1));
    request(x->j, x->loop, &x->req[x->next], &x->log, (uint64_t)x->next + 1, x->next);
    if (++x->next < 6)
        uv_timer_start(t, on_turn, 0, 0);
}

static void test_journal_rounds_beside_each_other(void **state)
{
    fixture *f = *state;
    uv_loop_t loop;
    uv_timer_t t;
    turns x = { 0 };

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(irp_journal_create(f->path, &x.j), 0);
    x.loop = &loop;
    x.log.j = x.j;
    assert_int_equal(uv_timer_init(&loop, &t), 0);
    t.data = &x;
    assert_int_equal(uv_timer_start(&t, on_turn, 0, 0), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(x.log.n, 6);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(x.log.seq[i], i + 1);
        assert_int_equal(x.log.status[i], 0);
    }
    assert_int_equal(irp_journal_durable_seq(x.j), 6);
    /* One round per turn at most, however many ran at once. */
    uint64_t n = irp_journal_fsync_count(x.j);
    assert_true(n >= 1 && n <= 6);
    char head[IRP_SHA256_HEX];
    assert_int_equal(verify_independently(f->path, head), 6);
    uv_close((uv_handle_t *)&t, NULL);
    irp_journal_close(x.j);
    loop_done(&loop);
}

static void test_journal_close_with_sync_in_flight(void **state)
{
    fixture *f = *state;
    sync_req req[2] = { 0 };
    sync_log log = { 0 };
    uv_loop_t loop;
    irp_journal *j;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(irp_journal_create(f->path, &j), 0);
    append_ok(j, note("runner", 1));
    request(j, &loop, &req[0], &log, 1, 0);        /* fsync for line 1 starts */
    append_ok(j, note("runner", 2));
    request(j, &loop, &req[1], &log, 2, 1);        /* would need the next one */
    irp_journal_close(j);
    assert_int_equal(log.n, 0);
    loop_done(&loop);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.status[0], 0);
    assert_int_equal(log.status[1], IRP_ECANCELED);
}

static void close_journal(sync_req *r)
{
    irp_journal_close(r->log->j);
    assert_int_equal(irp_journal_sync_async(r->log->j, r->log->loop, 1, on_sync, r),
                     IRP_ECANCELED);
}

static void test_journal_close_inside_callback(void **state)
{
    fixture *f = *state;
    sync_req req[2] = { 0 };
    sync_log log = { 0 };
    uv_loop_t loop;
    irp_journal *j;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(irp_journal_create(f->path, &j), 0);
    append_ok(j, note("runner", 1));
    append_ok(j, note("runner", 2));
    log.j = j;
    log.loop = &loop;
    req[0].then = close_journal;
    request(j, &loop, &req[0], &log, 1, 0);
    request(j, &loop, &req[1], &log, 2, 1);
    loop_done(&loop);
    assert_int_equal(log.n, 2);
    assert_int_equal(log.status[0], 0);
    assert_int_equal(log.status[1], 0);             /* covered by the same fsync */
}

static void test_journal_sync_async_refuses_bad_requests(void **state)
{
    fixture *f = *state;
    sync_req req = { 0 };
    sync_log log = { 0 };
    uv_loop_t loop, other;
    irp_journal *j;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(uv_loop_init(&other), 0);
    assert_int_equal(irp_journal_create(f->path, &j), 0);
    append_ok(j, note("runner", 1));
    assert_int_equal(irp_journal_sync_async(j, &loop, 2, on_sync, &req), IRP_EINVAL);
    assert_int_equal(irp_journal_sync_async(j, &loop, 1, NULL, &req), IRP_EINVAL);
    request(j, &loop, &req, &log, 1, 0);
    assert_int_equal(irp_journal_sync_async(j, &other, 1, on_sync, &req), IRP_EINVAL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(log.n, 1);
    irp_journal_close(j);
    loop_done(&loop);
    loop_done(&other);
}


/* ---- taps, batches ------------------------------------------------------ */

typedef struct tapped {
    int n;
    int i[64];                    /* the note's "i" */
    char who[64][16];
    int fail_at;                  /* return IRP_ENOMEM at this call, 0: never */
} tapped;

/* Own lines come as appended, others' as written (with seq and prev). */
static int on_tap(void *ctx, irp_event *ev)
{
    tapped *t = ctx;
    json_t *line = irp_event_json(ev);
    const char *who = json_string_value(json_object_get(line, "who"));

    assert_true(t->n < 64);
    assert_non_null(who);
    assert_int_equal(json_object_get(line, "prev") != NULL, strcmp(who, "child") == 0);
    t->i[t->n] = (int)json_integer_value(json_object_get(line, "i"));
    snprintf(t->who[t->n], sizeof t->who[0], "%s", who);
    t->n++;
    return t->fail_at == t->n ? IRP_ENOMEM : 0;
}

/* t's lines from `from` on are these, "p3" for parent 3, "c1" child 1. */
static void assert_tapped(const tapped *t, int from, const char *const *want, int n)
{
    assert_true(t->n >= from + n);
    for (int k = 0; k < n; k++) {
        char got[24];
        snprintf(got, sizeof got, "%c%d", t->who[from + k][0], t->i[from + k]);
        assert_string_equal(got, want[k]);
    }
}

static void test_journal_tap_sees_own_and_foreign_lines_in_order(void **state)
{
    fixture *f = *state;
    irp_journal *a, *b;
    tapped t = { .fail_at = 3 };

    assert_int_equal(irp_journal_create(f->path, &a), 0);
    irp_journal_set_tap(a, on_tap, &t);
    append_ok(a, note("parent", 1));
    assert_int_equal(irp_journal_open(f->path, false, &b, NULL, NULL, 0), 0);
    append_ok(b, note("child", 1));
    append_ok(a, note("parent", 2));   /* catches up with b's line first */
    assert_int_equal(t.n, 3);
    assert_tapped(&t, 0, (const char *const[]){ "p1", "c1", "p2" }, 3);
    /* The tap's failure is kept, the tap is told nothing more, and the
     * journal carries on. */
    assert_int_equal(irp_journal_tap_error(a), IRP_ENOMEM);
    append_ok(b, note("child", 2));
    append_ok(a, note("parent", 3));
    assert_int_equal(t.n, 3);
    assert_int_equal(irp_journal_seq(a), 5);
    irp_journal_close(a);
    irp_journal_close(b);
}

static void test_journal_is_durable(void **state)
{
    fixture *f = *state;
    irp_journal *j;

    assert_int_equal(irp_journal_create(f->path, &j), 0);
    append_ok(j, note("runner", 1));
    assert_false(irp_journal_is_durable(j, 1));     /* not fsynced yet */
    assert_false(irp_journal_is_durable(j, 2));     /* no such line */
    assert_int_equal(irp_journal_sync(j), 0);
    assert_true(irp_journal_is_durable(j, 1));
    append_ok(j, note("runner", 2));
    assert_false(irp_journal_is_durable(j, 2));
    irp_journal_set_fsync(j, false);
    assert_true(irp_journal_is_durable(j, 2));      /* written is all it takes */
    irp_journal_inject_fsync_error(j, IRP_EIO);
    irp_journal_set_fsync(j, true);
    append_ok(j, note("runner", 3));
    assert_int_equal(irp_journal_sync(j), IRP_EIO);
    assert_false(irp_journal_is_durable(j, 1));     /* after a failure: never */
    irp_journal_close(j);
}

static void on_later(uv_timer_t *h)
{
    (void)h;   /* only makes the loop wait */
}

static void test_journal_batch_writes_together_and_rechains(void **state)
{
    fixture *f = *state;
    uv_loop_t loop;
    irp_journal *a, *b;
    char head[IRP_SHA256_HEX];
    tapped t = { 0 };
    collected c;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(irp_journal_create(f->path, &a), 0);
    irp_journal_set_fsync(a, false);
    assert_int_equal(irp_journal_set_batch(a, &loop, IRP_BATCH_LAZY), 0);
    assert_int_equal(irp_journal_set_batch(a, &loop, IRP_BATCH_LAZY), IRP_EINVAL);
    irp_journal_set_tap(a, on_tap, &t);
    append_ok(a, note("parent", 1));
    assert_int_equal(irp_journal_flush(a), 0);
    assert_int_equal(verify_independently(f->path, head), 1);
    assert_string_equal(irp_journal_head(a), head);

    /* Three lines pending: nothing in the file yet; the tap has them. */
    for (int i = 2; i <= 4; i++)
        assert_int_equal(append_ok(a, note("parent", i)), (uint64_t)i);
    assert_int_equal(verify_independently(f->path, head), 1);
    assert_int_equal(t.n, 4);
    assert_int_equal(irp_journal_tap_error(a), 0);
    /* Another writer is not held up: its line takes seq 2 ... */
    assert_int_equal(irp_journal_open(f->path, false, &b, NULL, NULL, 0), 0);
    assert_int_equal(append_ok(b, note("child", 1)), 2);
    /* ... and the batch is chained after it, as seq 3 to 5. */
    assert_int_equal(irp_journal_flush(a), 0);
    assert_int_equal(verify_independently(f->path, head), 5);
    assert_string_equal(irp_journal_head(a), head);
    assert_int_equal(irp_journal_seq(a), 5);
    /* The tap saw the batch before b's line, which the file has first:
     * it is told it lost the file's order, and nothing more. */
    assert_int_equal(irp_journal_tap_error(a), IRP_EBUSY);
    assert_int_equal(t.n, 4);
    assert_tapped(&t, 0, (const char *const[]){ "p1", "p2", "p3", "p4" }, 4);

    /* Lines pending are written soon, whether the loop waits or spins. */
    append_ok(a, note("parent", 5));
    append_ok(a, note("parent", 6));
    off_t before = file_size(f->path);
    uv_timer_t later;
    assert_int_equal(uv_timer_init(&loop, &later), 0);
    uv_update_time(&loop);
    assert_int_equal(uv_timer_start(&later, on_later, 100, 0), 0);
    (void)uv_run(&loop, UV_RUN_ONCE);     /* wakes for the batch's timer */
    /* ... and handed to the journal's writer thread (durability is off),
     * which writes it while the loop goes on. */
    for (int i = 0; i < 10000 && file_size(f->path) == before; i++)
        usleep(1000);
    assert_true(file_size(f->path) > before);
    uv_close((uv_handle_t *)&later, NULL);
    assert_int_equal(verify_independently(f->path, head), 7);

    /* b's line comes before a batch pending as 8 and 9, which becomes 9
     * and 10: a seq one digit longer, the chain intact. */
    append_ok(a, note("parent", 7));
    assert_int_equal(append_ok(a, note("parent", 8)), 9);
    assert_int_equal(append_ok(b, note("child", 2)), 8);
    irp_journal_close(a);                  /* flushes */
    irp_journal_close(b);
    loop_done(&loop);
    assert_int_equal(verify_independently(f->path, head), 10);
    assert_int_equal(read_all(f->path, &c, NULL, NULL, 0), 0);
    assert_int_equal(c.n, 10);
    assert_int_equal(c.who_child, 2);
    assert_int_equal(c.who_parent, 8);
}

static void test_journal_batch_large_flushes_on_its_own(void **state)
{
    fixture *f = *state;
    uv_loop_t loop;
    irp_journal *j;
    char head[IRP_SHA256_HEX];

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(irp_journal_create(f->path, &j), 0);
    irp_journal_set_fsync(j, false);
    assert_int_equal(irp_journal_set_batch(j, &loop, IRP_BATCH_LAZY), 0);
    /* About 150 bytes a line: 1 MiB is pending well before 10,000,
     * and goes to the writer thread without a flush or a turn of the loop. */
    for (int i = 1; i <= 10000; i++)
        append_ok(j, note("runner", i));
    uint64_t written = verify_when_written(f->path, head);
    assert_true(written > 0 && written < 10000);
    /* Durable again: the rest is written at once. */
    irp_journal_set_fsync(j, true);
    assert_int_equal(verify_independently(f->path, head), 10000);
    irp_journal_close(j);
    loop_done(&loop);
}

/* Durable, a batch waits for the loop's next turn at most, and an action
 * waiting for its line (sync, sync_async) writes the batch first. */
static void test_journal_batch_durable_waits_one_turn(void **state)
{
    fixture *f = *state;
    uv_loop_t loop;
    irp_journal *j;
    char head[IRP_SHA256_HEX];
    uv_timer_t later;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(irp_journal_create(f->path, &j), 0);
    assert_int_equal(irp_journal_set_batch(j, &loop, IRP_BATCH_TURN), 0);
    append_ok(j, note("runner", 1));
    append_ok(j, note("runner", 2));
    assert_int_equal(access(f->path, F_OK), -1);    /* nothing written: no file yet */
    assert_false(irp_journal_is_durable(j, 2));
    /* The loop's next turn, here one with a timer far off to wait for:
     * the lines are written before it waits. */
    assert_int_equal(uv_timer_init(&loop, &later), 0);
    assert_int_equal(uv_timer_start(&later, on_later, 0, 0), 0);
    (void)uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(verify_independently(f->path, head), 2);
    assert_string_equal(irp_journal_head(j), head);
    /* A sync writes what is pending, then makes it durable. */
    append_ok(j, note("runner", 3));
    assert_int_equal(verify_independently(f->path, head), 2);
    assert_int_equal(irp_journal_sync(j), 0);
    assert_int_equal(verify_independently(f->path, head), 3);
    assert_true(irp_journal_is_durable(j, 3));
    uv_close((uv_handle_t *)&later, NULL);
    irp_journal_close(j);
    loop_done(&loop);
}

/* A run with durability off (--no-fsync) batches too, but as a durable
 * one does: a line waits for the loop's next turn at most, is hashed and
 * written on the caller's thread, and is_durable writes it before the
 * caller acts on it. */
static void test_journal_batch_turn_without_fsync(void **state)
{
    fixture *f = *state;
    uv_loop_t loop;
    irp_journal *j;
    char head[IRP_SHA256_HEX];
    uv_timer_t later;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(irp_journal_create(f->path, &j), 0);
    irp_journal_set_fsync(j, false);
    assert_int_equal(irp_journal_set_batch(j, &loop, 7), IRP_EINVAL);
    assert_int_equal(irp_journal_set_batch(j, &loop, IRP_BATCH_TURN), 0);
    append_ok(j, note("runner", 1));
    append_ok(j, note("runner", 2));
    assert_int_equal(access(f->path, F_OK), -1);    /* pending: no file yet */
    assert_true(irp_journal_is_durable(j, 2));
    /* Written by the call itself, not by a thread some time later. */
    assert_int_equal(verify_independently(f->path, head), 2);
    assert_string_equal(irp_journal_head(j), head);
    assert_int_equal(irp_journal_durable_seq(j), 2);
    /* The next waits for the loop's turn, not 20 ms: a timer of 0 with
     * one far off behind it, and the loop run once. */
    append_ok(j, note("runner", 3));
    assert_int_equal(verify_independently(f->path, head), 2);
    assert_int_equal(uv_timer_init(&loop, &later), 0);
    assert_int_equal(uv_timer_start(&later, on_later, 10000, 0), 0);
    (void)uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(verify_independently(f->path, head), 3);
    assert_int_equal(irp_journal_fsync_count(j), 0);
    uv_close((uv_handle_t *)&later, NULL);
    irp_journal_close(j);
    loop_done(&loop);
}

/* Parents' lines in the order appended, each once, whatever came between. */
static int parents_in_order(void *ctx, const irp_journal_line *line)
{
    int *last = ctx;
    if (strcmp(json_string_value(json_object_get(line->ev, "who")), "parent") == 0) {
        assert_int_equal(json_integer_value(json_object_get(line->ev, "i")), *last + 1);
        (*last)++;
    }
    return 0;
}

/* With durability off, batches go to the writer thread.  Another
 * process's line written while batches are queued stops it; they are
 * chained after that line, and the thread carries on afterwards. */
static void test_journal_writer_thread_yields_to_another_writer(void **state)
{
    fixture *f = *state;
    uv_loop_t loop;
    irp_journal *a, *b;
    char head[IRP_SHA256_HEX];
    int last = 0;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(irp_journal_create(f->path, &a), 0);
    irp_journal_set_fsync(a, false);
    assert_int_equal(irp_journal_set_batch(a, &loop, IRP_BATCH_LAZY), 0);
    /* About 150 bytes a line: some 7,000 lines a batch. */
    for (int i = 1; i <= 8000; i++)
        append_ok(a, note("parent", i));
    /* The file has its name once the thread wrote the first batch. */
    for (int tries = 0; access(f->path, F_OK) < 0 && tries < 5000; tries++)
        usleep(1000);
    assert_int_equal(irp_journal_open(f->path, false, &b, NULL, NULL, 0), 0);
    uint64_t child_seq = append_ok(b, note("child", 1));
    assert_true(child_seq >= 2 && child_seq <= 8001);
    for (int i = 8001; i <= 24000; i++)
        append_ok(a, note("parent", i));
    /* The head waits for every line appended, pending ones included. */
    const char *h = irp_journal_head(a);
    assert_int_equal(verify_independently(f->path, head), 24001);
    assert_string_equal(h, head);
    assert_int_equal(irp_journal_seq(a), 24001);
    assert_int_equal(irp_journal_read(f->path, parents_in_order, &last, NULL, NULL, 0), 0);
    assert_int_equal(last, 24000);

    /* Then the thread writes again, after b's second line. */
    append_ok(b, note("child", 2));
    for (int i = 24001; i <= 36000; i++)
        append_ok(a, note("parent", i));
    assert_int_equal(irp_journal_flush(a), 0);
    assert_int_equal(verify_independently(f->path, head), 36002);
    assert_string_equal(irp_journal_head(a), head);
    last = 0;
    assert_int_equal(irp_journal_read(f->path, parents_in_order, &last, NULL, NULL, 0), 0);
    assert_int_equal(last, 36000);
    irp_journal_close(a);
    irp_journal_close(b);
    loop_done(&loop);
}

/* A batch the writer thread cannot write fails the journal: the file
 * keeps whole lines only, and every later append says why. */
static void test_journal_writer_thread_full_disk(void **state)
{
    fixture *f = *state;
    char mnt[96], path[128];
    uv_loop_t loop;
    irp_journal *j;
    int rc = 0, i;

    snprintf(mnt, sizeof mnt, "%s/tiny", f->dir);
    assert_int_equal(mkdir(mnt, 0700), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=64k") != 0) {
        print_message("cannot mount a 64k tmpfs (%s): skipped\n", strerror(errno));
        skip();
    }
    snprintf(path, sizeof path, "%s/journal.jsonl", mnt);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(irp_journal_create(path, &j), 0);
    irp_journal_set_fsync(j, false);
    assert_int_equal(irp_journal_set_batch(j, &loop, IRP_BATCH_LAZY), 0);
    /* 256 KiB of 3 KB lines go to the thread as one batch, larger than the
     * disk; the failure shows at a later hand-over, or at the flush. */
    for (i = 0; i < 1000 && rc == 0; i++) {
        json_t *ev = note_of_len(3000);
        rc = irp_journal_append(j, ev, NULL);
        json_decref(ev);
    }
    if (rc == 0)
        rc = irp_journal_flush(j);
    assert_int_equal(rc, IRP_ENOSPC);
    assert_int_equal(irp_journal_flush(j), IRP_ENOSPC);
    assert_int_equal(irp_journal_tap_error(j), IRP_ENOSPC);
    json_t *ev = note_of_len(10);
    assert_int_equal(irp_journal_append(j, ev, NULL), IRP_ENOSPC);
    json_decref(ev);
    /* No line was written whole: there is no journal, not a broken one. */
    assert_int_equal(access(path, F_OK), -1);
    irp_journal_close(j);
    loop_done(&loop);
    DIR *d = opendir(mnt);
    struct dirent *e;
    while ((e = readdir(d)))
        assert_true(strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0);
    closedir(d);
    assert_int_equal(umount(mnt), 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    /* The fork()ing tests come first, before any uv thread pool exists. */
    const struct CMUnitTest tests[] = {
        T(test_journal_forked_writer_keeps_one_chain),
        T(test_journal_write_failure_short_write_truncates_back),
        T(test_journal_create_append_read_back),
        T(test_journal_seq_numbering),
        T(test_journal_head_is_hash_of_last_line),
        T(test_journal_line_key_order),
        T(test_journal_append_leaves_event_alone_and_refuses_reserved_keys),
        T(test_journal_utf8_round_trip),
        T(test_journal_line_text_is_jansson_compact),
        T(test_json_dump_matches_jansson),
        T(test_json_dump_refuses_what_jansson_refuses),
        T(test_journal_create_refuses_existing_and_is_private),
        T(test_journal_appears_with_its_first_line),
        T(test_journal_open_empty_file),
        T(test_journal_read_missing_file),
        T(test_journal_read_callback_stops_read),
        T(test_journal_sha256_hex_known_vectors),
        T(test_journal_two_handles_interleave_one_chain),
        T(test_journal_read_ignores_partial_last_line),
        T(test_journal_open_repair_drops_partial_last_line),
        T(test_journal_append_drops_line_left_by_dead_writer),
        T(test_journal_append_refuses_foreign_line_that_breaks_chain),
        T(test_journal_tamper_changed_byte_located),
        T(test_journal_tamper_invalid_json_located),
        T(test_journal_tamper_deleted_line_located),
        T(test_journal_tamper_swapped_lines_located),
        T(test_journal_tamper_first_prev_located),
        T(test_journal_tamper_not_object_or_missing_fields_located),
        T(test_journal_tamper_last_line_changes_head),
        T(test_journal_line_limit_on_append),
        T(test_journal_line_limit_on_read),
        T(test_journal_write_failure_on_full_disk_truncates_back),
        T(test_journal_sync_blocking),
        T(test_journal_sync_async_coalesces),
        T(test_journal_sync_async_callbacks_in_seq_order),
        T(test_journal_sync_async_durable_completes_next_turn),
        T(test_journal_sync_async_request_from_callback),
        T(test_journal_fsync_off),
        T(test_journal_fsync_error_is_sticky),
        T(test_journal_round_beside_a_failed_one_counts_for_nothing),
        T(test_journal_rounds_beside_each_other),
        T(test_journal_close_with_sync_in_flight),
        T(test_journal_close_inside_callback),
        T(test_journal_sync_async_refuses_bad_requests),
        T(test_journal_tap_sees_own_and_foreign_lines_in_order),
        T(test_journal_is_durable),
        T(test_journal_batch_writes_together_and_rechains),
        T(test_journal_batch_large_flushes_on_its_own),
        T(test_journal_writer_thread_yields_to_another_writer),
        T(test_journal_writer_thread_full_disk),
        T(test_journal_batch_durable_waits_one_turn),
        T(test_journal_batch_turn_without_fsync),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
