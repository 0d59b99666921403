/* irp answer RUN_DIR INSTANCE ANSWER [--note TEXT] [--operator NAME]:
 * answer a live run's open question from another terminal.  The answer
 * is appended to the run's journal (under its lock, so the chain stays
 * whole); the run reads it from there within a fraction of a second. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "irp/cli.h"
#include "irp/error.h"
#include "irp/journal.h"
#include "irp/timeutil.h"

typedef struct open_q {
    json_t *prompted;            /* the open step.prompted, or NULL */
    const char *key;
    bool ended;                  /* run.finished last: its process is on its way out */
} open_q;

static bool matches(const json_t *ev, const char *key)
{
    const char *inst = json_string_value(json_object_get(ev, "instance"));
    const char *step = json_string_value(json_object_get(ev, "step"));
    return inst ? strcmp(inst, key) == 0 : step && strcmp(step, key) == 0;
}

static bool same_field(const json_t *a, const json_t *b, const char *k)
{
    const char *x = json_string_value(json_object_get(a, k));
    const char *y = json_string_value(json_object_get(b, k));
    return (!x && !y) || (x && y && strcmp(x, y) == 0);
}

/* The last question for `key` still without an answer. */
static int scan(void *ctx, const irp_journal_line *line)
{
    open_q *q = ctx;
    const char *name = json_string_value(json_object_get(line->ev, "event"));
    if (name && strncmp(name, "run.", 4) == 0)
        q->ended = strcmp(name, "run.finished") == 0;
    if (!name || !matches(line->ev, q->key))
        return 0;
    if (strcmp(name, "step.prompted") == 0) {
        json_decref(q->prompted);
        q->prompted = json_incref(line->ev);
    } else if (strcmp(name, "step.answered") == 0 && q->prompted &&
               same_field(q->prompted, line->ev, "instance") &&
               same_field(q->prompted, line->ev, "about")) {
        json_decref(q->prompted);
        q->prompted = NULL;
    }
    return 0;
}

/* The choice ANSWER names: exactly, or y/n for yes/no. */
static const char *pick(const json_t *choices, const char *answer)
{
    size_t i;
    json_t *c;
    json_array_foreach(choices, i, c) {
        const char *s = json_string_value(c);
        if (s && strcasecmp(s, answer) == 0)
            return s;
    }
    json_array_foreach(choices, i, c) {
        const char *s = json_string_value(c);
        if (s && strlen(answer) == 1 && (!strcmp(s, "yes") || !strcmp(s, "no")) &&
            tolower((unsigned char)answer[0]) == s[0])
            return s;
    }
    return NULL;
}

static bool run_is_live(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/lock", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    bool live = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return live;
}

static int64_t now_ms(void)
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

static json_t *answer_event(const json_t *prompted, const char *choice, const char *note,
                            const char *op)
{
    int64_t now = now_ms();
    const char *asked = json_string_value(json_object_get(prompted, "ts"));
    int64_t at = now;
    if (asked)
        irp_time_parse(asked, strlen(asked), &at);
    json_t *ev = json_object();
    json_object_set_new(ev, "ts", time_json(now));
    json_object_set_new(ev, "wall", time_json(now));
    json_object_set_new(ev, "event", json_string("step.answered"));
    const char *keys[] = { "step", "instance", "about" };
    for (size_t i = 0; i < 3; i++)
        if (json_object_get(prompted, keys[i]))
            json_object_set(ev, keys[i], json_object_get(prompted, keys[i]));
    json_object_set_new(ev, "answer", json_string(choice));
    json_object_set_new(ev, "operator", json_string(op));
    json_object_set_new(ev, "via", json_string("irp-answer"));
    if (note)
        json_object_set_new(ev, "note", json_string(note));
    json_object_set_new(ev, "response_ms", json_integer(now > at ? now - at : 0));
    return ev;
}

static int parse_args(int argc, char **argv, const char **pos, const char **note,
                      const char **op)
{
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--note") == 0 || strcmp(argv[i], "--operator") == 0) {
            if (i + 1 >= argc)
                return irp_cli_usage_error("answer", "%s needs a value", argv[i]);
            *(argv[i][2] == 'n' ? note : op) = argv[i + 1];
            i++;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return irp_cli_usage_error("answer", "unknown option '%s'", argv[i]);
        } else if (n < 3) {
            pos[n++] = argv[i];
        } else {
            return irp_cli_usage_error("answer", "too many arguments");
        }
    }
    if (n < 3)
        return irp_cli_usage_error("answer", "needs RUN_DIR, INSTANCE and ANSWER");
    return 0;
}

int irp_cmd_answer(int argc, char **argv, const irp_cli_common *common)
{
    const char *pos[3] = { 0 }, *note = NULL, *op = NULL;
    int rc = parse_args(argc, argv, pos, &note, &op);
    if (rc)
        return rc;
    if (!op) {
        struct passwd *pw = getpwuid(getuid());
        op = getenv("USER") ? getenv("USER") : pw ? pw->pw_name : "unknown";
    }
    char path[4096], err[512] = "";
    snprintf(path, sizeof path, "%s/journal.jsonl", pos[0]);
    if (!run_is_live(pos[0])) {
        fprintf(stderr, "irp answer: %s is not a live run (no process holds its lock); "
                "answer its questions when you resume it\n", pos[0]);
        return IRP_EXIT_USAGE;
    }
    irp_journal *j = NULL;
    rc = irp_journal_open(path, false, &j, NULL, err, sizeof err);
    if (rc) {
        fprintf(stderr, "irp answer: %s: %s\n", path, err[0] ? err : irp_strerror(rc));
        return IRP_EXIT_USAGE;
    }
    open_q q = { NULL, pos[1], false };
    rc = irp_journal_read(path, scan, &q, NULL, err, sizeof err);
    const char *choice = q.prompted ? pick(json_object_get(q.prompted, "choices"), pos[2]) : NULL;
    int status = IRP_EXIT_OK;
    if (rc) {
        fprintf(stderr, "irp answer: %s: %s\n", path, err[0] ? err : irp_strerror(rc));
        status = IRP_EXIT_USAGE;
    } else if (q.ended) {
        /* The lock is held a little longer, while the report is written. */
        fprintf(stderr, "irp answer: %s is not a live run (it has finished)\n", pos[0]);
        status = IRP_EXIT_USAGE;
    } else if (!q.prompted) {
        fprintf(stderr, "irp answer: no open question for '%s' in %s\n", pos[1], pos[0]);
        status = IRP_EXIT_USAGE;
    } else if (!choice) {
        char *list = json_dumps(json_object_get(q.prompted, "choices"), JSON_COMPACT);
        fprintf(stderr, "irp answer: '%s' is not one of the choices %s\n", pos[2],
                list ? list : "");
        free(list);
        status = IRP_EXIT_USAGE;
    } else {
        json_t *ev = answer_event(q.prompted, choice, note, op);
        rc = irp_journal_append(j, ev, NULL);
        if (!rc)
            rc = irp_journal_sync(j);
        json_decref(ev);
        if (rc) {
            fprintf(stderr, "irp answer: cannot write %s: %s\n", path, irp_strerror(rc));
            status = IRP_EXIT_JOURNAL;
        } else if (!common->quiet) {
            printf("answered %s: %s; journal head %s\n", pos[1], choice, irp_journal_head(j));
        }
    }
    json_decref(q.prompted);
    irp_journal_close(j);
    return status;
}
