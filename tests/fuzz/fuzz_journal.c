/* Fuzz target: the journal, read and written.
 *
 * The input is used twice:
 *   1. as a journal file as found on disk: irp_journal_read() (verify,
 *      status, report), then irp_journal_open() without and with repair
 *      (resume, note, answer) and one append to what it opened;
 *   2. as events: each line that parses as a JSON object is appended to a
 *      new journal with irp_journal_append(), and the file is read back.
 *
 * Invariants checked beyond "no crash, no leak, no hang":
 *   - read hands out lines numbered from 1, each with the SHA-256 of its
 *     text and a `seq` equal to its number;
 *   - open agrees with read: the same damage refuses both; a whole chain
 *     opens with the same line count and head; a last line cut off refuses
 *     open without repair and is cut off with it;
 *   - what append accepts reads back as the same object, in order, with
 *     `seq` first and `prev` last, and the head the writer reports;
 *   - its text between them is what json_dumps(JSON_COMPACT | JSON_EMBED)
 *     makes of the event: irp's serializer agrees with jansson's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "fuzz_common.h"
#include "irp/error.h"
#include "irp/journal.h"

#define MAX_EVENTS 64

struct seen {
    uint64_t lines;
    char head[IRP_SHA256_HEX];
    json_t *expect;          /* events appended, for the read back; or NULL */
};

/* The writer's own serializer writes what jansson would: the members of
 * the event as json_dumps(JSON_COMPACT | JSON_EMBED) gives them, between
 * seq and prev. */
static void check_text(const irp_journal_line *line, const json_t *want)
{
    char *members = json_dumps(want, JSON_COMPACT | JSON_EMBED);
    FUZZ_CHECK(members, "jansson cannot dump what was appended");
    char head[40];
    int n = snprintf(head, sizeof head, "{\"seq\":%llu%s", (unsigned long long)line->lineno,
                     members[0] ? "," : "");
    size_t m = strlen(members);
    FUZZ_CHECK(line->len == (size_t)n + m + 75 && memcmp(line->text, head, (size_t)n) == 0 &&
                   memcmp(line->text + n, members, m) == 0 &&
                   memcmp(line->text + n + m, ",\"prev\":\"", 9) == 0,
               "line %llu is not jansson's compact text", (unsigned long long)line->lineno);
    free(members);
}

static int on_line(void *vctx, const irp_journal_line *line)
{
    struct seen *s = vctx;
    char hash[IRP_SHA256_HEX];
    FUZZ_CHECK(line->lineno == s->lines + 1, "line %llu after %llu",
               (unsigned long long)line->lineno, (unsigned long long)s->lines);
    irp_sha256_hex(line->text, line->len, hash);
    FUZZ_CHECK(strcmp(hash, line->hash) == 0, "line %llu: wrong hash",
               (unsigned long long)line->lineno);
    json_t *seq = json_object_get(line->ev, "seq");
    FUZZ_CHECK(json_is_integer(seq) && (uint64_t)json_integer_value(seq) == line->lineno,
               "line %llu: seq does not match", (unsigned long long)line->lineno);
    if (s->expect) {
        json_t *want = json_array_get(s->expect, (size_t)s->lines);
        json_t *got = json_deep_copy(line->ev);
        FUZZ_CHECK(want && got, "line %llu: nothing appended here",
                   (unsigned long long)line->lineno);
        json_object_del(got, "seq");
        json_object_del(got, "prev");
        FUZZ_CHECK(json_equal(want, got), "line %llu does not read back as appended",
                   (unsigned long long)line->lineno);
        json_decref(got);
        FUZZ_CHECK(line->len > 7 && memcmp(line->text, "{\"seq\":", 7) == 0,
                   "line %llu does not start with seq", (unsigned long long)line->lineno);
        check_text(line, want);
    }
    memcpy(s->head, line->hash, sizeof s->head);
    s->lines++;
    return 0;
}

static json_t *note_event(void)
{
    return json_pack("{s:s, s:s, s:s, s:s}", "ts", "2026-11-28T12:00:00.000Z", "wall",
                     "2026-11-28T12:00:00.000Z", "event", "note", "text", "fuzz");
}

static off_t file_size(const char *path)
{
    struct stat st;
    FUZZ_CHECK(stat(path, &st) == 0, "stat %s failed", path);
    return st.st_size;
}

/* Append one note to an opened journal and read the whole file again. */
static void append_and_reread(irp_journal *j, const char *path, uint64_t lines)
{
    json_t *ev = note_event();
    uint64_t seq = 0;
    FUZZ_CHECK(ev && irp_journal_append(j, ev, &seq) == 0, "append to an opened journal failed");
    FUZZ_CHECK(seq == lines + 1, "appended seq %llu after %llu lines", (unsigned long long)seq,
               (unsigned long long)lines);
    json_decref(ev);
    struct seen s = { 0 };
    char err[256];
    bool partial = true;
    int rc = irp_journal_read(path, on_line, &s, &partial, err, sizeof err);
    FUZZ_CHECK(rc == 0 && !partial, "journal damaged by an append: %s", err);
    FUZZ_CHECK(s.lines == lines + 1, "%llu lines after the append",
               (unsigned long long)s.lines);
    FUZZ_CHECK(strcmp(s.head, irp_journal_head(j)) == 0, "head differs after the append");
}

static void as_file(const uint8_t *data, size_t size)
{
    char path[4200], err[256];
    fuzz_write_file("journal.jsonl", data, size, path, sizeof path);

    struct seen s = { 0 };
    bool partial = false;
    int rc = irp_journal_read(path, on_line, &s, &partial, err, sizeof err);
    FUZZ_CHECK(rc == 0 || rc == IRP_ECORRUPT || rc == IRP_ELIMIT, "read gave %d", rc);
    FUZZ_CHECK(rc == 0 || strncmp(err, "line ", 5) == 0, "read error without a line: %s", err);

    irp_journal *j = NULL;
    irp_journal_open_info info;
    int orc = irp_journal_open(path, false, &j, &info, err, sizeof err);
    if (rc != 0) {
        FUZZ_CHECK(orc == rc, "read gave %d, open %d", rc, orc);
        FUZZ_CHECK(irp_journal_open(path, true, &j, &info, err, sizeof err) == rc,
                   "read gave %d, open with repair did not", rc);
        return;
    }
    if (partial) {
        FUZZ_CHECK(orc == IRP_ECORRUPT, "a cut-off line opened without repair (%d)", orc);
        orc = irp_journal_open(path, true, &j, &info, err, sizeof err);
        FUZZ_CHECK(orc == 0, "repair failed: %s", err);
        FUZZ_CHECK(info.dropped_partial && info.dropped_bytes > 0, "nothing was cut off");
        FUZZ_CHECK((size_t)file_size(path) + info.dropped_bytes == size,
                   "repair left %lld of %zu bytes and dropped %zu", (long long)file_size(path),
                   size, info.dropped_bytes);
    } else {
        FUZZ_CHECK(orc == 0, "a whole chain does not open: %s", err);
        FUZZ_CHECK(!info.dropped_partial, "dropped a line of a whole chain");
    }
    FUZZ_CHECK(info.lines == s.lines, "open saw %llu lines, read %llu",
               (unsigned long long)info.lines, (unsigned long long)s.lines);
    FUZZ_CHECK(s.lines == 0 || strcmp(irp_journal_head(j), s.head) == 0,
               "open and read disagree on the head");
    append_and_reread(j, path, s.lines);
    irp_journal_close(j);
}

static void as_events(const uint8_t *data, size_t size)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/events.jsonl", fuzz_tmpdir());
    unlink(path);
    irp_journal *j = NULL;
    FUZZ_CHECK(irp_journal_create(path, &j) == 0, "cannot create %s", path);
    irp_journal_set_fsync(j, false);

    json_t *appended = json_array();
    const char *p = (const char *)data, *end = p + size;
    for (size_t n = 0; p < end && n < MAX_EVENTS; n++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        json_t *ev = json_loadb(p, len, JSON_ALLOW_NUL, NULL);
        p += len + 1;
        if (!ev)
            continue;
        uint64_t seq = 0;
        int rc = irp_journal_append(j, ev, &seq);
        if (rc == 0) {
            FUZZ_CHECK(seq == json_array_size(appended) + 1, "append gave seq %llu",
                       (unsigned long long)seq);
            json_array_append(appended, ev);
        } else {
            FUZZ_CHECK(rc == IRP_EINVAL || rc == IRP_ELIMIT, "append gave %d", rc);
            FUZZ_CHECK(!json_is_object(ev) || json_object_get(ev, "seq") ||
                           json_object_get(ev, "prev") || rc == IRP_ELIMIT,
                       "append refused a plain object (%d)", rc);
        }
        json_decref(ev);
    }

    struct seen s = { .expect = appended };
    char err[256];
    bool partial = true;
    /* A journal gets its name with its first line. */
    if (json_array_size(appended) == 0) {
        FUZZ_CHECK(access(path, F_OK) < 0 && errno == ENOENT,
                   "a journal without lines has a file");
        irp_journal_close(j);
        json_decref(appended);
        return;
    }
    int rc = irp_journal_read(path, on_line, &s, &partial, err, sizeof err);
    FUZZ_CHECK(rc == 0 && !partial, "appended events do not read back: %s", err);
    FUZZ_CHECK(s.lines == json_array_size(appended), "%llu lines read, %zu appended",
               (unsigned long long)s.lines, json_array_size(appended));
    FUZZ_CHECK(s.lines == 0 || strcmp(s.head, irp_journal_head(j)) == 0,
               "the writer's head is not the last line's hash");
    irp_journal_close(j);
    json_decref(appended);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    as_file(data, size);
    as_events(data, size);
    return 0;
}
