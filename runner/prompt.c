#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "prompt.h"

typedef struct question {
    struct question *next;
    char *instance, *text;
    irp_answer_cb cb;
    void *arg;
    int answer;
} question;

struct prompter {
    uv_loop_t *loop;
    liveview *view;
    int fd;                      /* /dev/tty, or -1 */
    bool tried;
    uv_tty_t tty;
    bool reading;
    uv_timer_t later;            /* delivers answers outside ask() */
    question *head, *tail;       /* waiting; head is the one on screen */
    question *settled, *settled_tail;
    char line[256];
    size_t len;
    int open_handles;            /* handles still to close before freeing */
};

/* A terminal that went away is noticed by the read side (EOF). */
static void say(prompter *p, const char *s)
{
    if (p->fd >= 0 && write(p->fd, s, strlen(s)) < 0)
        return;
}

static void show(prompter *p)
{
    question *q = p->head;
    if (!q)
        return;
    liveview_pause(p->view, true);
    char buf[800];
    snprintf(buf, sizeof buf, "\n[%s] %s [y/N] ", q->instance, q->text);
    say(p, buf);
}

static void free_question(question *q)
{
    free(q->instance);
    free(q->text);
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
        q->cb(q->arg, q->answer);
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
    return q;
}

static void stop_reading(prompter *p)
{
    if (p->reading) {
        uv_read_stop((uv_stream_t *)&p->tty);
        p->reading = false;
    }
    liveview_pause(p->view, false);
}

static void answer_line(prompter *p)
{
    const char *s = p->line;
    while (*s == ' ')
        s++;
    int a = -3;
    if (!strcasecmp(s, "y") || !strcasecmp(s, "yes"))
        a = 1;
    else if (!*s || !strcasecmp(s, "n") || !strcasecmp(s, "no"))
        a = 0;
    p->len = 0;
    if (a == -3) {
        say(p, "please answer y or n\n");
        show(p);
        return;
    }
    settle(p, pop(p), a);
    if (p->head)
        show(p);
    else
        stop_reading(p);
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
        /* The terminal is gone (EOF, hang-up): nobody can answer here. */
        question *q;
        while ((q = pop(p)))
            settle(p, q, -1);
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

static void ask(void *ctx, const char *instance, const char *text, irp_answer_cb cb, void *arg)
{
    prompter *p = ctx;
    question *q = calloc(1, sizeof *q);
    if (!q)
        return;
    *q = (question){ NULL, strdup(instance), strdup(text), cb, arg, 0 };
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
    if (!first)
        return;   /* queued behind the question on screen */
    show(p);
    if (!p->reading && uv_read_start((uv_stream_t *)&p->tty, alloc_cb, read_cb) == 0)
        p->reading = true;
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
    uv_timer_init(loop, &p->later);
    p->later.data = p;
    return p;
}

irp_prompter prompter_iface(prompter *p)
{
    return (irp_prompter){ ask, cancel_all, p };
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
    stop_reading(p);
    p->open_handles = p->fd >= 0 ? 2 : 1;
    uv_close((uv_handle_t *)&p->later, closed);
    if (p->fd >= 0)
        uv_close((uv_handle_t *)&p->tty, closed);
}
