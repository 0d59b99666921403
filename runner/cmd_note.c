/* irp note RUN_DIR TEXT [--at TIME] [--operator NAME]: add an observation
 * to a run's journal, the incident's own timeline beside the playbook's
 * (SPEC §3).
 *
 * Safe while the run is live: irp_journal_open() and every append take the
 * journal's exclusive lock, so the runner's lines and this one interleave
 * whole and the chain stays unbroken.
 */
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "irp/cli.h"
#include "irp/error.h"
#include "irp/journal.h"
#include "irp/jsonutil.h"
#include "irp/timeutil.h"

typedef struct note_args {
    const char *dir, *text, *operator_name;
    int64_t at_ms;               /* -1: no --at */
} note_args;

static int parse_args(int argc, char **argv, note_args *a)
{
    bool dashdash = false;
    a->at_ms = -1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        bool takes = !dashdash && (strcmp(s, "--at") == 0 || strcmp(s, "--operator") == 0);
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (takes && !val)
            return irp_cli_usage_error("note", "%s needs a value", s);
        if (!dashdash && strcmp(s, "--") == 0) {
            dashdash = true;
        } else if (takes && strcmp(s, "--at") == 0) {
            if (irp_time_parse(val, strlen(val), &a->at_ms) != 0)
                return irp_cli_usage_error("note", "--at takes an RFC 3339 time with an "
                                           "offset, such as 2026-11-28T09:15:00+01:00 "
                                           "(got '%s')", val);
            i++;
        } else if (takes) {
            if (!*val || !irp_utf8_valid(val, strlen(val)))
                return irp_cli_usage_error("note", "--operator takes a name in UTF-8");
            a->operator_name = val;
            i++;
        } else if (!dashdash && s[0] == '-' && s[1]) {
            return irp_cli_usage_error("note", "unknown option '%s' (a text that begins with "
                                       "'-' goes after --)", s);
        } else if (!a->dir) {
            a->dir = s;
        } else if (!a->text) {
            a->text = s;
        } else {
            return irp_cli_usage_error("note", "one text at a time (quote it: "
                                       "irp note RUN_DIR \"the text\")");
        }
    }
    if (!a->dir)
        return irp_cli_usage_error("note", "no run directory given");
    if (!a->text)
        return irp_cli_usage_error("note", "no text given");
    if (!*a->text)
        return irp_cli_usage_error("note", "the text is empty");
    if (!irp_utf8_valid(a->text, strlen(a->text)))
        return irp_cli_usage_error("note", "the text is not valid UTF-8");
    return 0;
}

static int64_t wall_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static json_t *time_json(int64_t ms)
{
    char buf[IRP_TIME_BUFSZ];
    irp_time_format(ms, buf);
    return json_string(buf);
}

/* The note as journaled; NULL when out of memory. */
static json_t *make_event(const note_args *a)
{
    const char *op = a->operator_name;
    if (!op) {
        struct passwd *pw = getpwuid(getuid());
        op = getenv("USER") && *getenv("USER") ? getenv("USER")
             : pw                              ? pw->pw_name : "unknown";
    }
    int64_t now = wall_now_ms();
    json_t *ev = json_object();
    int bad = !ev;
    /* `ts` is the time the note was recorded; the observed event's own
     * time, when the operator knows it, is `at`. */
    bad = bad || json_object_set_new(ev, "ts", time_json(now));
    bad = bad || json_object_set_new(ev, "wall", time_json(now));
    bad = bad || json_object_set_new(ev, "event", json_string("note"));
    bad = bad || json_object_set_new(ev, "text", json_string(a->text));
    bad = bad || json_object_set_new(ev, "operator", irp_json_text(op, strlen(op)));
    /* $USER that is not UTF-8 keeps its raw bytes beside the U+FFFD text. */
    if (!bad && !irp_utf8_valid(op, strlen(op)))
        bad = json_object_set_new(ev, "operator_b64", irp_json_b64(op, strlen(op)));
    if (!bad && a->at_ms >= 0)
        bad = json_object_set_new(ev, "at", time_json(a->at_ms));
    if (bad) {
        json_decref(ev);
        return NULL;
    }
    return ev;
}

/* "line N: what" -> "JOURNAL:N: error: what" */
static void print_damage(const char *jpath, char *err)
{
    char *end;
    /* The parser's message may quote bytes of the damaged line. */
    for (char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    if (strncmp(err, "line ", 5) == 0) {
        unsigned long long n = strtoull(err + 5, &end, 10);
        if (end[0] == ':' && end[1] == ' ') {
            fprintf(stderr, "%s:%llu: error: %s\n", jpath, n, end + 2);
            return;
        }
    }
    fprintf(stderr, "%s: error: %s\n", jpath, err);
}

static int open_journal(const char *dir, const char *jpath, irp_journal **j)
{
    char err[1024] = "";
    irp_journal_open_info info;
    struct stat st;

    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "irp note: %s: %s\n", dir,
                errno == ENOENT ? "no such run directory" : "not a run directory");
        return IRP_EXIT_USAGE;
    }
    int rc = irp_journal_open(jpath, false, j, &info, err, sizeof err);
    if (rc == IRP_ECORRUPT || rc == IRP_ELIMIT) {
        print_damage(jpath, err);
        fprintf(stderr, "irp note: the journal is damaged; nothing was added "
                        "(irp verify %s shows the damage)\n", dir);
        return IRP_EXIT_FAILED;
    }
    if (rc == IRP_ENOMEM) {
        fprintf(stderr, "irp note: out of memory\n");
        return IRP_EXIT_INTERNAL;
    }
    if (rc == IRP_ENOENT) {
        fprintf(stderr, "irp note: %s: no journal.jsonl; not a run directory\n", dir);
        return IRP_EXIT_USAGE;
    }
    if (rc) {
        fprintf(stderr, "irp note: cannot open %s: %s\n", jpath, *err ? err : irp_strerror(rc));
        return IRP_EXIT_USAGE;
    }
    if (info.lines == 0) {
        fprintf(stderr, "%s: error: the journal is empty; a run's journal begins with "
                        "run.started\n", jpath);
        irp_journal_close(*j);
        *j = NULL;
        return IRP_EXIT_FAILED;
    }
    return 0;
}

static int append_note(irp_journal *j, const char *jpath, const note_args *a, uint64_t *seq)
{
    json_t *ev = make_event(a);
    if (!ev) {
        fprintf(stderr, "irp note: out of memory\n");
        return IRP_EXIT_INTERNAL;
    }
    int rc = irp_journal_append(j, ev, seq);
    json_decref(ev);
    if (rc == 0)
        rc = irp_journal_sync(j);
    switch (rc) {
    case 0:
        return IRP_EXIT_OK;
    case IRP_ELIMIT:
        fprintf(stderr, "irp note: the text is too long for one journal line (at most %zu "
                        "MiB)\n", IRP_JOURNAL_MAX_LINE >> 20);
        return IRP_EXIT_USAGE;
    case IRP_ECORRUPT:
        fprintf(stderr, "%s: error: lines another writer added do not continue the chain; "
                        "nothing was added\n", jpath);
        return IRP_EXIT_FAILED;
    case IRP_ENOMEM:
        fprintf(stderr, "irp note: out of memory\n");
        return IRP_EXIT_INTERNAL;
    default:
        fprintf(stderr, "irp note: cannot write %s: %s\n", jpath, irp_strerror(rc));
        return IRP_EXIT_JOURNAL;
    }
}

int irp_cmd_note(int argc, char **argv, const irp_cli_common *common)
{
    note_args a = { 0 };
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc;
    size_t len = strlen(a.dir);
    while (len > 1 && a.dir[len - 1] == '/')
        len--;
    char *jpath = NULL;
    if (asprintf(&jpath, "%.*s/journal.jsonl", (int)len, a.dir) < 0) {
        fprintf(stderr, "irp note: out of memory\n");
        return IRP_EXIT_INTERNAL;
    }
    irp_journal *j = NULL;
    uint64_t seq = 0;
    int status = open_journal(a.dir, jpath, &j);
    if (status == IRP_EXIT_OK)
        status = append_note(j, jpath, &a, &seq);
    if (status == IRP_EXIT_OK && !common->quiet)
        printf("note added as line %" PRIu64 "; journal head %s\n", seq, irp_journal_head(j));
    irp_journal_close(j);
    free(jpath);
    return status;
}
