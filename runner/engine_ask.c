/* Questions to the operator: confirmations, manual steps, re-running an
 * interrupted instance.  Each is journaled when asked (step.prompted) and
 * when answered (step.answered), and can be answered two ways: on the
 * terminal (the prompter) or by `irp answer` from another process, which
 * appends the step.answered itself -- the run notices it by polling the
 * journal while a question is open.  The first answer in the journal wins. */
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "irp/error.h"

#define FOREIGN_POLL_MS 200

struct equestion {
    equestion *next, *prev;
    irp_engine *e;
    char *step, *instance;       /* instance NULL: the step as a whole */
    const char *about;           /* static: "rerun", or NULL */
    char **choices;
    size_t n;
    int64_t asked_wall;
    engine_answer_fn fn;
    void *arg;
};

static void unlink_q(irp_engine *e, equestion *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        e->questions = q->next;
    if (q->next)
        q->next->prev = q->prev;
    e->open_prompts--;
    irp_clock_release(e->o.clock);   /* held while the question was open */
    if (!e->questions && e->poll)
        uv_timer_stop(e->poll);
}

static void free_q(equestion *q)
{
    for (size_t i = 0; i < q->n; i++)
        free(q->choices[i]);
    free(q->choices);
    free(q->step);
    free(q->instance);
    free(q);
}

static void journal_answered(irp_engine *e, const equestion *q, int choice, const char *note)
{
    json_t *ev = engine_event(e, "step.answered");
    json_object_set_new(ev, "step", json_string(q->step));
    if (q->instance)
        json_object_set_new(ev, "instance", json_string(q->instance));
    if (q->about)
        json_object_set_new(ev, "about", json_string(q->about));
    json_object_set_new(ev, "answer", json_string(q->choices[choice]));
    json_object_set_new(ev, "operator", json_string(e->o.operator_name));
    json_object_set_new(ev, "via", json_string("terminal"));
    if (note)
        json_object_set_new(ev, "note", json_string(note));
    json_object_set_new(ev, "response_ms",
                        json_integer(irp_clock_wall_ms(e->o.clock) - q->asked_wall));
    engine_emit(e, ev, NULL);
}

/* The prompter's answer. */
static void on_terminal(void *arg, int choice, const char *note)
{
    equestion *q = arg;
    irp_engine *e = q->e;
    unlink_q(e, q);
    if (choice >= 0)
        journal_answered(e, q, choice, note);
    q->fn(e, q->arg, choice, note);
    free_q(q);
}

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* A step.answered another process wrote (irp answer). */
static void on_foreign(void *ctx, const json_t *ev)
{
    irp_engine *e = ctx;
    const char *step = json_string_value(json_object_get(ev, "step"));
    const char *instance = json_string_value(json_object_get(ev, "instance"));
    const char *about = json_string_value(json_object_get(ev, "about"));
    const char *answer = json_string_value(json_object_get(ev, "answer"));
    if (!step || !answer)
        return;
    for (equestion *q = e->questions; q; q = q->next) {
        if (strcmp(q->step, step) != 0 || !same(q->instance, instance) || !same(q->about, about))
            continue;
        for (size_t i = 0; i < q->n; i++) {
            if (strcmp(q->choices[i], answer) != 0)
                continue;
            if (e->o.prompter.withdraw)
                e->o.prompter.withdraw(e->o.prompter.ctx, q);
            unlink_q(e, q);
            const char *note = json_string_value(json_object_get(ev, "note"));
            if (e->o.on_event)
                e->o.on_event(e->o.ctx, ev);
            q->fn(e, q->arg, (int)i, note);
            free_q(q);
            return;
        }
    }
}

static void poll_journal(uv_timer_t *t)
{
    irp_engine *e = t->data;
    if (!e->journal_err && e->o.journal)
        irp_journal_refresh(e->o.journal, on_foreign, e);
}

static void start_polling(irp_engine *e)
{
    if (!e->poll) {
        /* Allocated apart: it is freed by its close callback, which may
         * run after the engine is gone. */
        uv_timer_t *t = malloc(sizeof *t);
        if (!t || uv_timer_init(e->o.loop, t) != 0) {
            free(t);
            return;
        }
        t->data = e;
        e->poll = t;
        if (e->o.journal)
            irp_journal_watch(e->o.journal, "step.answered");
    }
    if (!uv_is_active((uv_handle_t *)e->poll))
        uv_timer_start(e->poll, poll_journal, FOREIGN_POLL_MS, FOREIGN_POLL_MS);
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

equestion *engine_ask(irp_engine *e, const char *step, const char *instance, const char *about,
                      const char *prompt, const char *const *choices, size_t n, bool want_note,
                      engine_answer_fn fn, void *arg)
{
    equestion *q = calloc(1, sizeof *q);
    char **copy = calloc(n ? n : 1, sizeof *copy);
    bool ok = q && copy && (q->step = strdup(step)) && (!instance || (q->instance = strdup(instance)));
    for (size_t i = 0; ok && i < n; i++)
        ok = (copy[i] = strdup(choices[i])) != NULL;
    if (q) {
        q->choices = copy;
        q->n = n;
    }
    if (!ok) {
        if (q)
            free_q(q);
        else
            free(copy);
        fn(e, arg, -1, NULL);
        return NULL;
    }
    *q = (equestion){ .e = e, .step = q->step, .instance = q->instance, .about = about,
                      .choices = copy, .n = n, .fn = fn, .arg = arg,
                      .asked_wall = irp_clock_wall_ms(e->o.clock) };
    json_t *ev = engine_event(e, "step.prompted");
    json_object_set_new(ev, "step", json_string(step));
    if (instance)
        json_object_set_new(ev, "instance", json_string(instance));
    if (about)
        json_object_set_new(ev, "about", json_string(about));
    json_object_set_new(ev, "prompt", json_string(prompt));
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, json_string(choices[i]));
    json_object_set_new(ev, "choices", list);
    engine_emit(e, ev, NULL);
    q->next = e->questions;
    if (e->questions)
        e->questions->prev = q;
    e->questions = q;
    e->open_prompts++;
    /* A max-speed simulation stands still while a person thinks. */
    irp_clock_hold(e->o.clock);
    if (!e->o.prompter.ask) {
        on_terminal(q, -1, NULL);     /* nobody to ask */
        return NULL;
    }
    start_polling(e);
    e->o.prompter.ask(e->o.prompter.ctx, instance ? instance : step, prompt, choices, n,
                      want_note, on_terminal, q);
    return q;
}

void engine_unask(irp_engine *e, equestion *q)
{
    if (!q)
        return;
    if (e->o.prompter.withdraw)
        e->o.prompter.withdraw(e->o.prompter.ctx, q);
    unlink_q(e, q);
    free_q(q);
}

void engine_ask_close(irp_engine *e)
{
    equestion *q;
    while ((q = e->questions)) {
        unlink_q(e, q);
        free_q(q);
    }
    if (e->poll)
        uv_close((uv_handle_t *)e->poll, free_handle);
    e->poll = NULL;
}
