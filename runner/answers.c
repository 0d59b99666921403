/* --answers FILE: answers given in advance, checked against the playbook
 * before anything runs. */
#include <stdlib.h>
#include <string.h>

#include "irp/answers.h"
#include "irp/error.h"
#include "irp/node.h"

struct irp_answers {
    irp_arena arena;             /* the parsed file: keys and values point into it */
    const char *file;            /* borrowed */
    irp_answer *v;
    size_t n;
};

typedef struct actx {
    const irp_playbook *pb;
    const char *file;
    irp_diag_list *diags;
    int bad;
} actx;

#define ERR(c, n, ...) \
    ((c)->bad = 1, irp_diag_error((c)->diags, (c)->file, (n)->line, (n)->col, __VA_ARGS__))

/* "yes"/"no" (true/false are taken too: YAML 1.1 habits), or NULL. */
static const char *yes_no(const char *s)
{
    if (strcmp(s, "yes") == 0 || strcmp(s, "true") == 0)
        return "yes";
    if (strcmp(s, "no") == 0 || strcmp(s, "false") == 0)
        return "no";
    return NULL;
}

static bool is_choice(const irp_step *s, const char *answer)
{
    const irp_manual_action *m = s->act.manual;
    for (size_t i = 0; i < m->n_choices; i++)
        if (strcmp(m->choices[i], answer) == 0)
            return true;
    return false;
}

/* The step a key names: `ID` or `ID[...]`. */
static const irp_step *key_step(actx *c, const irp_node *k, bool *is_instance)
{
    const char *s = k->u.scalar.s;
    const char *br = strchr(s, '[');
    *is_instance = br != NULL;
    if (br && (br == s || s[k->len - 1] != ']' || k->len - (size_t)(br - s) < 3)) {
        ERR(c, k, "'%s' is not a step id or an instance id such as step[item]", s);
        return NULL;
    }
    char id[256];
    size_t len = br ? (size_t)(br - s) : k->len;
    if (len >= sizeof id) {
        ERR(c, k, "the playbook has no step '%.40s...'", s);
        return NULL;
    }
    memcpy(id, s, len);
    id[len] = 0;
    const irp_step *st = irp_playbook_step(c->pb, id);
    if (!st) {
        ERR(c, k, "the playbook has no step '%s'", id);
        return NULL;
    }
    if (br && !st->has_for_each) {
        ERR(c, k, "step '%s' has no for_each, so it has no instance '%s'", id, s);
        return NULL;
    }
    if (!st->confirm && st->action != IRP_ACT_MANUAL) {
        ERR(c, k, "step '%s' asks nothing: it has no confirm and is not a manual step", id);
        return NULL;
    }
    return st;
}

/* One answer text: a confirmation's yes/no, or a manual step's choice. */
static void set_answer(actx *c, irp_answer *a, const irp_node *v)
{
    const char *s = v->u.scalar.s;
    if (a->step->action == IRP_ACT_MANUAL) {
        if (!is_choice(a->step, s))
            ERR(c, v, "'%s' is not one of step '%s''s choices", s, a->step->id);
        a->answer = s;
    } else if (!(a->confirm = yes_no(s))) {
        ERR(c, v, "a confirmation is answered \"yes\" or \"no\", not '%s'", s);
    }
}

static void set_confirm(actx *c, irp_answer *a, const irp_node *v)
{
    if (!a->step->confirm)
        ERR(c, v, "step '%s' has no confirm", a->step->id);
    else if (!(a->confirm = yes_no(v->u.scalar.s)))
        ERR(c, v, "a confirmation is answered \"yes\" or \"no\", not '%s'", v->u.scalar.s);
}

static void from_map(actx *c, irp_answer *a, const irp_node *v)
{
    size_t errors = c->diags->errors;   /* this entry's own, not the file's */
    for (size_t i = 0; i < v->count; i++) {
        const irp_node *k = v->u.map.pairs[i].key, *x = v->u.map.pairs[i].value;
        const char *name = k->u.scalar.s;
        if (x->kind != IRP_NODE_SCALAR) {
            ERR(c, x, "'%s' takes a single value", name);
        } else if (strcmp(name, "answer") == 0) {
            set_answer(c, a, x);
        } else if (strcmp(name, "note") == 0) {
            a->note = x->u.scalar.s;
        } else if (strcmp(name, "confirm") == 0) {
            set_confirm(c, a, x);
        } else {
            ERR(c, k, "unknown key '%s' (an answer takes answer, note and confirm)", name);
        }
    }
    if (!a->answer && !a->confirm && c->diags->errors == errors)
        ERR(c, v, "no answer given for '%s'", a->key);
}

static int build(actx *c, irp_answers *as, const irp_node *root)
{
    if (root->kind != IRP_NODE_MAP) {
        ERR(c, root, "an answers file is a mapping of step or instance ids to answers");
        return IRP_EINVAL;
    }
    as->v = calloc(root->count ? root->count : 1, sizeof *as->v);
    if (!as->v)
        return IRP_ENOMEM;
    for (size_t i = 0; i < root->count; i++) {
        const irp_node *k = root->u.map.pairs[i].key, *v = root->u.map.pairs[i].value;
        irp_answer *a = &as->v[as->n];
        *a = (irp_answer){ .key = k->u.scalar.s, .line = k->line, .col = k->col };
        if (!(a->step = key_step(c, k, &a->is_instance)))
            continue;
        if (v->kind == IRP_NODE_SCALAR)
            set_answer(c, a, v);
        else if (v->kind == IRP_NODE_MAP)
            from_map(c, a, v);
        else
            ERR(c, v, "an answer is a text or a mapping with answer and note");
        as->n++;
    }
    return c->bad ? IRP_EINVAL : 0;
}

int irp_answers_load(const irp_playbook *pb, const char *file, irp_diag_list *diags,
                     irp_answers **out)
{
    *out = NULL;
    char *buf;
    size_t len;
    int rc = irp_file_read(file, IRP_YAML_MAX_BYTES, &buf, &len);
    if (rc) {
        irp_diag_error(diags, file, 0, 0, "cannot read the answers file: %s", irp_strerror(rc));
        return rc;
    }
    irp_answers *as = calloc(1, sizeof *as);
    if (!as) {
        free(buf);
        return IRP_ENOMEM;
    }
    as->file = file;
    irp_arena_init(&as->arena, 0);
    irp_node *root = NULL;
    actx c = { .pb = pb, .file = file, .diags = diags };
    rc = irp_yaml_parse(&as->arena, file, buf, len, NULL, diags, &root) ? IRP_EINVAL
                                                                         : build(&c, as, root);
    free(buf);
    if (rc) {
        irp_answers_free(as);
        return rc;
    }
    *out = as;
    return 0;
}

void irp_answers_free(irp_answers *a)
{
    if (!a)
        return;
    irp_arena_release(&a->arena);
    free(a->v);
    free(a);
}

const irp_answer *irp_answers_find(irp_answers *a, const char *instance, const char *step)
{
    if (!a)
        return NULL;
    irp_answer *by_step = NULL;
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->v[i].key, instance) == 0) {
            a->v[i].used = true;
            return &a->v[i];
        }
        if (!by_step && strcmp(a->v[i].key, step) == 0)
            by_step = &a->v[i];
    }
    if (by_step)
        by_step->used = true;
    return by_step;
}

size_t irp_answers_count(const irp_answers *a) { return a ? a->n : 0; }
const irp_answer *irp_answers_at(const irp_answers *a, size_t i) { return &a->v[i]; }
const char *irp_answers_file(const irp_answers *a) { return a ? a->file : NULL; }
