/* What expressions see at run time: inputs, vars, env, secrets, item,
 * index, steps.*, run.*. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "irp/error.h"
#include "irp/template.h"
#include "irp/timeutil.h"
#include "irp/validate.h"

static irp_value *time_value(int64_t ms)
{
    if (ms <= 0)
        return irp_value_new_null();
    char buf[IRP_TIME_BUFSZ];
    irp_time_format(ms, buf);
    return irp_value_new_cstring(buf);
}

/* One field of one instance, a new reference. */
static irp_value *inst_field(const inst *in, const char *field, const char *key)
{
    if (strcmp(field, "outputs") == 0) {
        irp_value *v = in->outputs ? irp_value_map_get(in->outputs, key, strlen(key)) : NULL;
        return v ? irp_value_ref(v) : irp_value_new_null();
    }
    if (strcmp(field, "stdout") == 0)
        return in->stdout_v ? irp_value_ref(in->stdout_v) : irp_value_new_null();
    if (strcmp(field, "exit_code") == 0)
        return in->exit_code >= 0 && irp_state_ended(in->state) && in->attempt
                   ? irp_value_new_number(in->exit_code) : irp_value_new_null();
    return irp_value_new_null();
}

irp_value *engine_step_value(irp_engine *e, const sstate *st, const char *field, const char *key)
{
    if (strcmp(field, "status") == 0)
        return irp_value_new_cstring(irp_state_name(st->state));
    if (strcmp(field, "ok") == 0) {
        bool ok = st->state == IRP_ST_SUCCEEDED ||
                  ((st->state == IRP_ST_FAILED || st->state == IRP_ST_TIMED_OUT) &&
                   st->def->on_failure == IRP_FAIL_IGNORE);
        return irp_value_new_bool(ok);
    }
    if (strcmp(field, "started_at") == 0)
        return time_value(st->started_wall);
    if (strcmp(field, "finished_at") == 0)
        return time_value(st->finished_wall);
    if (strcmp(field, "duration") == 0)
        return st->finished_wall && st->started_wall
                   ? irp_value_new_number((double)(st->finished_wall - st->started_wall) / 1000.0)
                   : irp_value_new_null();
    if (strcmp(field, "instances") == 0) {
        irp_value *list = irp_value_new_list();
        for (size_t i = 0; list && i < st->n; i++) {
            irp_value *m = irp_value_new_map();
            irp_value_map_set(m, "id", 2, irp_value_new_cstring(st->insts[i].id));
            irp_value_map_set(m, "status", 6,
                              irp_value_new_cstring(irp_state_name(st->insts[i].state)));
            irp_value_list_append(list, m);
        }
        return list;
    }
    if (!st->def->has_for_each)
        return st->n ? inst_field(&st->insts[0], field, key) : irp_value_new_null();
    /* With for_each, outputs, stdout and exit codes are lists in item
     * order. */
    irp_value *list = irp_value_new_list();
    for (size_t i = 0; list && i < st->n; i++)
        irp_value_list_append(list, inst_field(&st->insts[i], field, key));
    return list;
}

static int run_field(irp_engine *e, const char *f, irp_value **out)
{
    const irp_engine_opts *o = &e->o;
    if (strcmp(f, "id") == 0)
        *out = irp_value_new_cstring(o->run_id);
    else if (strcmp(f, "mode") == 0)
        *out = irp_value_new_cstring(o->mode);
    else if (strcmp(f, "status") == 0)
        *out = irp_value_new_cstring(!e->finally_started ? "running"
                                     : e->interrupted ? "interrupted"
                                     : irp_engine_status(e) == IRP_RUN_FAILED ? "failed"
                                                                              : "succeeded");
    else if (strcmp(f, "started_at") == 0)
        *out = time_value(e->started_wall);
    else if (strcmp(f, "detected_at") == 0)
        *out = time_value(o->detected_at_ms >= 0 ? o->detected_at_ms : e->started_wall);
    else if (strcmp(f, "operator") == 0)
        *out = irp_value_new_cstring(o->operator_name);
    else
        /* irp check's dry runs keep no journal: a head of zeros. */
        *out = irp_value_new_cstring(o->journal ? irp_journal_head(o->journal)
                                                : "0000000000000000000000000000000000000000000000000000000000000000");
    return *out ? 0 : IRP_ENOMEM;
}

static int getenv_value(const char *name, bool secret, irp_value **out, char *err, size_t errlen)
{
    const char *v = getenv(name);
    if (!v && secret) {
        snprintf(err, errlen, "secret '%s' is not set in the environment", name);
        return IRP_EUNDEF;
    }
    *out = v ? irp_value_new_cstring(v) : irp_value_new_null();
    if (*out && secret)
        irp_value_taint(*out);
    return *out ? 0 : IRP_ENOMEM;
}

static int map_member(irp_value *map, const char *key, irp_value **out)
{
    irp_value *v = map ? irp_value_map_get(map, key, strlen(key)) : NULL;
    *out = v ? irp_value_ref(v) : irp_value_new_null();
    return *out ? 0 : IRP_ENOMEM;
}

int engine_lookup(void *ctx, const char *const *seg, size_t n, irp_value **out,
                  char *err, size_t errlen)
{
    struct scope_ctx *sc = ctx;
    irp_engine *e = sc->e;
    const char *root = seg[0];
    *out = NULL;
    if (strcmp(root, "inputs") == 0 && n >= 2)
        return map_member(e->o.inputs, seg[1], out);
    if (strcmp(root, "vars") == 0 && n >= 2)
        return map_member(e->vars, seg[1], out);
    if (strcmp(root, "env") == 0 && n >= 2)
        return getenv_value(seg[1], false, out, err, errlen);
    if (strcmp(root, "secrets") == 0 && n >= 2)
        return getenv_value(seg[1], true, out, err, errlen);
    if (strcmp(root, "item") == 0 || strcmp(root, "index") == 0) {
        if (!sc->in || !sc->in->item) {
            snprintf(err, errlen, "'%s' is only defined in a step with for_each", root);
            return IRP_EUNDEF;
        }
        if (root[1] == 'n') {
            *out = irp_value_new_number((double)inst_index(sc->in));
            return *out ? 0 : IRP_ENOMEM;
        }
        irp_value *v = sc->in->item;
        for (size_t i = 1; i < n && v; i++)
            v = irp_value_type_of(v) == IRP_VALUE_MAP ? irp_value_map_get(v, seg[i], strlen(seg[i]))
                                                       : NULL;
        *out = v ? irp_value_ref(v) : irp_value_new_null();
        return *out ? 0 : IRP_ENOMEM;
    }
    if (strcmp(root, "steps") == 0 && n >= 3) {
        size_t i = irp_playbook_step_index(e->o.pb, seg[1]);
        if (i == (size_t)-1) {
            snprintf(err, errlen, "no step '%s'", seg[1]);
            return IRP_EUNDEF;
        }
        *out = engine_step_value(e, &e->steps[i], seg[2], n > 3 ? seg[3] : "");
        return *out ? 0 : IRP_ENOMEM;
    }
    if (strcmp(root, "run") == 0 && n == 2)
        return run_field(e, seg[1], out);
    if (strcmp(root, "deadlines") == 0 && n == 3) {
        int rc = engine_deadline_value(e, seg[1], seg[2], out);
        if (rc == IRP_EUNDEF)
            snprintf(err, errlen, "no deadline field deadlines.%s.%s", seg[1], seg[2]);
        return rc;
    }
    snprintf(err, errlen, "'%s' cannot be read by irp run yet", root);
    return IRP_EUNDEF;
}

static int eval_var(irp_engine *e, const irp_var *var, irp_value **out, char *err, size_t errlen)
{
    switch (var->kind) {
    case IRP_VAR_NULL:
        *out = irp_value_new_null();
        return *out ? 0 : IRP_ENOMEM;
    case IRP_VAR_BOOL:
        *out = irp_value_new_bool(var->b);
        return *out ? 0 : IRP_ENOMEM;
    case IRP_VAR_STR:
        return irp_render_str(&var->str, &e->run_scope, out, err, errlen);
    default:
        break;
    }
    irp_value *list = irp_value_new_list();
    if (!list)
        return IRP_ENOMEM;
    for (size_t i = 0; i < var->n_items; i++) {
        irp_value *v = NULL;
        int rc = irp_render_str(&var->items[i], &e->run_scope, &v, err, errlen);
        if (!rc)
            rc = irp_value_list_append(list, v);
        if (rc) {
            irp_value_unref(list);
            return rc;
        }
    }
    *out = list;
    return 0;
}

int engine_eval_vars(irp_engine *e, char *err, size_t errlen)
{
    e->vars = irp_value_new_map();
    if (!e->vars)
        return IRP_ENOMEM;
    for (size_t i = 0; i < e->o.pb->n_vars; i++) {
        const irp_var *var = &e->o.pb->vars[i];
        irp_value *v = NULL;
        char msg[256] = "";
        int rc = eval_var(e, var, &v, msg, sizeof msg);
        if (!rc)
            rc = irp_value_map_set(e->vars, var->name, strlen(var->name), v);
        if (rc) {
            snprintf(err, errlen, "var '%s': %s", var->name, msg[0] ? msg : irp_strerror(rc));
            return rc;
        }
    }
    return 0;
}
