#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "prompt.h"

typedef struct question {
    struct question *next;
    char *key, *text;
    char **choices;
    size_t n;
    bool want_note;
    irp_answer_cb cb;
    void *arg;
    int answer;
    char *note;
} question;

struct prompter {
    uv_loop_t *loop;
    liveview *view;
    int fd;                      /* /dev/tty, or -1 */
    bool tried;
    bool lost;                   /* the terminal went away (SIGHUP) */
    uv_tty_t tty;
    bool reading;
    uv_timer_t later;            /* delivers answers outside ask() */
    question *head, *tail;       /* waiting; head is the one on screen */
    question *settled, *settled_tail;
    int choice;                  /* head's choice while its note is typed; -1 */
    char line[512];
    size_t len;
    int open_handles;            /* handles still to close before freeing */
    void (*idle_fn)(void *ctx, const char *line);
    void *idle_ctx;
};

/* A terminal that went away is noticed by the read side (EOF). */
static void say(prompter *p, const char *s)
{
    if (p->fd >= 0 && !p->lost && write(p->fd, s, strlen(s)) < 0)
        return;
}

/* yes/no questions, and yes/no/one by one, are asked the short way. */
static bool is_yes_no(const question *q)
{
    return (q->n == 2 || (q->n == 3 && !strcmp(q->choices[2], "one by one"))) &&
           !strcmp(q->choices[0], "yes") && !strcmp(q->choices[1], "no");
}

static size_t waiting_behind(const prompter *p)
{
    size_t n = 0;
    for (const question *q = p->head ? p->head->next : NULL; q; q = q->next)
        n++;
    return n;
}

static void show(prompter *p)
{
    question *q = p->head;
    if (!q)
        return;
    liveview_pause(p->view, true);
    char buf[1600];
    size_t behind = waiting_behind(p);
    char more[64] = "";
    if (behind)
        snprintf(more, sizeof more, " (%zu more waiting)", behind);
    if (p->choice >= 0) {
        snprintf(buf, sizeof buf, "note for %s (Enter for none): ", q->key);
    } else if (is_yes_no(q)) {
        snprintf(buf, sizeof buf, "\n[%s]%s %s [y/N%s] ", q->key, more, q->text,
                 q->n == 3 ? "/o = one by one" : "");
    } else {
        int off = snprintf(buf, sizeof buf, "\n[%s]%s %s\n ", q->key, more, q->text);
        for (size_t i = 0; i < q->n && off > 0 && (size_t)off < sizeof buf; i++)
            off += snprintf(buf + off, sizeof buf - (size_t)off, " %zu) %s", i + 1, q->choices[i]);
        if (off > 0 && (size_t)off < sizeof buf)
            snprintf(buf + off, sizeof buf - (size_t)off, "\n  answer: ");
    }
    say(p, buf);
}

static void free_question(question *q)
{
    free(q->key);
    free(q->text);
    for (size_t i = 0; i < q->n; i++)
        free(q->choices[i]);
    free(q->choices);
    free(q->note);
    free(q);
}

static void deliver(uv_timer_t *t)
{
    prompter *p = t->data;
    question *q;
    while ((q = p->settled)) {
        p->settled = q->next;
        if (!p->settled)
            p->settled_tail = NULL;
        q->cb(q->arg, q->answer, q->note);
        free_question(q);
    }
}

static void settle(prompter *p, question *q, int answer)
{
    q->answer = answer;
    q->next = NULL;
    if (p->settled_tail)
        p->settled_tail->next = q;
    else
        p->settled = q;
    p->settled_tail = q;
    uv_timer_start(&p->later, deliver, 0, 0);
}

static question *pop(prompter *p)
{
    question *q = p->head;
    if (q) {
        p->head = q->next;
        if (!p->head)
            p->tail = NULL;
    }
    p->choice = -1;
    return q;
}

static void stop_reading(prompter *p)
{
    if (p->reading && !p->idle_fn) {
        uv_read_stop((uv_stream_t *)&p->tty);
        p->reading = false;
    }
    liveview_pause(p->view, false);
}

static void next_question(prompter *p)
{
    if (p->head)
        show(p);
    else
        stop_reading(p);
}

/* A choice by number, by name, or by an unambiguous start of a name
 * (y, n); for yes/no an empty line is no.  -1: not understood. */
static int parse_choice(const question *q, const char *s)
{
    if (!*s)
        return is_yes_no(q) ? 1 : -1;
    char *end;
    long k = strtol(s, &end, 10);
    if (*end == '\0' && k >= 1 && (size_t)k <= q->n)
        return (int)k - 1;
    int found = -1;
    size_t len = strlen(s);
    for (size_t i = 0; i < q->n; i++) {
        if (!strcasecmp(q->choices[i], s))
            return (int)i;
        if (!strncasecmp(q->choices[i], s, len))
            found = found == -1 ? (int)i : -2;
    }
    return found >= 0 ? found : -1;
}

static void answer_line(prompter *p)
{
    question *q = p->head;
    const char *s = p->line;
    while (*s == ' ')
        s++;
    p->len = 0;
    if (!q) {
        if (p->idle_fn)
            p->idle_fn(p->idle_ctx, s);
        return;
    }
    if (p->choice >= 0) {
        if (*s)
            q->note = strdup(s);
        settle(p, pop(p), p->choice);
        next_question(p);
        return;
    }
    int c = parse_choice(q, s);
    if (c < 0) {
        say(p, !is_yes_no(q) ? "please answer with a choice's number or name\n"
               : q->n == 3   ? "please answer y, n or o\n" : "please answer y or n\n");
        show(p);
        return;
    }
    if (q->want_note) {
        p->choice = c;
        show(p);
        return;
    }
    settle(p, pop(p), c);
    next_question(p);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char mem[256];
    *buf = uv_buf_init(mem, sizeof mem);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    prompter *p = s->data;
    if (n < 0) {
        /* The terminal is gone (EOF, hang-up): the questions stay open
         * for `irp answer`, and the run goes on. */
        p->lost = true;
        p->idle_fn = NULL;
        stop_reading(p);
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        char c = buf->base[i];
        if (c == '\n' || c == '\r') {
            p->line[p->len] = '\0';
            answer_line(p);
        } else if (p->len + 1 < sizeof p->line) {
            p->line[p->len++] = c;
        }
    }
}

static bool open_tty(prompter *p)
{
    if (!p->tried) {
        p->tried = true;
        p->fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (p->fd >= 0 && uv_tty_init(p->loop, &p->tty, p->fd, 1) != 0) {
            close(p->fd);
            p->fd = -1;
        }
        if (p->fd >= 0)
            p->tty.data = p;
    }
    return p->fd >= 0;
}

static question *new_question(const char *key, const char *text, const char *const *choices,
                              size_t n, bool want_note, irp_answer_cb cb, void *arg)
{
    question *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    *q = (question){ .key = strdup(key), .text = strdup(text), .n = n,
                     .want_note = want_note, .cb = cb, .arg = arg };
    q->choices = calloc(n ? n : 1, sizeof *q->choices);
    bool ok = q->key && q->text && q->choices;
    for (size_t i = 0; ok && i < n; i++)
        ok = (q->choices[i] = strdup(choices[i])) != NULL;
    if (!ok) {
        free_question(q);
        return NULL;
    }
    return q;
}

static void ask(void *ctx, const char *key, const char *text, const char *const *choices,
                size_t n, bool want_note, irp_answer_cb cb, void *arg)
{
    prompter *p = ctx;
    question *q = new_question(key, text, choices, n, want_note, cb, arg);
    if (!q)
        return;
    if (!open_tty(p)) {
        settle(p, q, -1);
        return;
    }
    bool first = !p->head;
    if (p->tail)
        p->tail->next = q;
    else
        p->head = q;
    p->tail = q;
    if (!first) {
        /* Queued behind the question on screen: say so, then show that
         * one again. */
        char buf[700];
        snprintf(buf, sizeof buf, "\n(waiting: [%s] %s)", key, text);
        say(p, buf);
        show(p);
        return;
    }
    show(p);
    if (!p->lost && !p->reading && uv_read_start((uv_stream_t *)&p->tty, alloc_cb, read_cb) == 0)
        p->reading = true;
}

static void withdraw(void *ctx, void *arg)
{
    prompter *p = ctx;
    /* Answered here, its answer not yet delivered: it never will be. */
    for (question **s = &p->settled, *prev_s = NULL; *s; prev_s = *s, s = &(*s)->next) {
        if ((*s)->arg != arg)
            continue;
        question *q = *s;
        *s = q->next;
        if (p->settled_tail == q)
            p->settled_tail = prev_s;
        free_question(q);
        return;
    }
    question **pp = &p->head, *prev = NULL;
    while (*pp && (*pp)->arg != arg) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    question *q = *pp;
    if (!q)
        return;
    bool on_screen = q == p->head;
    *pp = q->next;
    if (p->tail == q)
        p->tail = prev;
    free_question(q);
    if (on_screen) {
        p->choice = -1;
        p->len = 0;
        say(p, "\n(answered elsewhere)\n");
        next_question(p);
    }
}

static void cancel_all(void *ctx)
{
    prompter *p = ctx;
    question *q;
    if (p->head)
        say(p, "\n(question withdrawn)\n");
    while ((q = pop(p)))
        settle(p, q, -2);
    stop_reading(p);
}

prompter *prompter_new(uv_loop_t *loop, liveview *view)
{
    prompter *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->loop = loop;
    p->view = view;
    p->fd = -1;
    p->choice = -1;
    uv_timer_init(loop, &p->later);
    p->later.data = p;
    return p;
}

void prompter_on_idle_line(prompter *p, void (*fn)(void *ctx, const char *line), void *ctx)
{
    if (!p || !open_tty(p))
        return;
    p->idle_fn = fn;
    p->idle_ctx = ctx;
    if (!p->reading && uv_read_start((uv_stream_t *)&p->tty, alloc_cb, read_cb) == 0)
        p->reading = true;
}

irp_prompter prompter_iface(prompter *p)
{
    return (irp_prompter){ ask, withdraw, cancel_all, p };
}

/* libuv runs close callbacks in no promised order: the last one frees. */
static void closed(uv_handle_t *h)
{
    prompter *p = h->data;
    if (--p->open_handles == 0)
        free(p);
}

void prompter_close(prompter *p)
{
    if (!p)
        return;
    question *q;
    while ((q = pop(p)))
        free_question(q);
    while ((q = p->settled)) {
        p->settled = q->next;
        free_question(q);
    }
    p->idle_fn = NULL;
    stop_reading(p);
    p->open_handles = p->fd >= 0 ? 2 : 1;
    uv_close((uv_handle_t *)&p->later, closed);
    if (p->fd >= 0)
        uv_close((uv_handle_t *)&p->tty, closed);
}
