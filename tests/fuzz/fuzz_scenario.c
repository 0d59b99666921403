/* Fuzz target: tabletop scenarios -- a `--scenario` file through
 * irp_scenario_load() against a fixed playbook declaring a var of every
 * kind (boolean, null, text, one expression, list), `for_each` steps whose
 * literal lists name their instances by item and by index, one whose list
 * is known only at run time, and plain steps.  The step and var names are
 * those of playbooks/intrusion.yaml that playbooks/scenarios/ uses, so the
 * project's scenarios load.
 *
 * Input: the bytes of the scenario file.
 *
 * Invariants checked beyond "no crash, no leak, no hang":
 *   - load returns 0 exactly when it reported no error, and then a
 *     scenario, else none;
 *   - the scenario has a plain id; injects are numbered in file order;
 *   - each inject has exactly one action; `at` is >= 0;
 *   - a `fail` names a step of the playbook, or an instance of a step with
 *     a for_each: for a literal list, one of its items when every item is
 *     a distinct `[A-Za-z0-9._:@-]{1,64}` string, else an index
 *     (SPEC §1.3);
 *   - a `set` names declared vars, each once, with a value of the var's
 *     type (a list of texts for a list var; anything as written for a var
 *     whose type is known only at run time).
 */
#include <string.h>

#include "fuzz_common.h"
#include "irp/error.h"
#include "irp/model.h"
#include "irp/scenario.h"

static const char PLAYBOOK[] =
    "irp: 1\n"
    "id: fuzz-scenario\n"
    "inputs:\n"
    "  flag: { type: boolean, default: false }\n"
    "  hosts: { type: list, default: [dms-01] }\n"
    "vars:\n"
    "  exfiltration: false\n"
    "  nothing: null\n"
    "  case_dir: /srv/ir/cases/${{ inputs.flag }}\n"
    "  derived: ${{ inputs.flag }}\n"
    "  targets: [dms-01, 'ws-${{ inputs.flag }}']\n"
    "steps:\n"
    "  - id: volatile-state\n"
    "    run: [echo, '${{ vars.case_dir }}', '${{ vars.derived }}', '${{ vars.targets }}',\n"
    "          '${{ vars.nothing }}']\n"
    "  - id: isolate-edr\n"
    "    for_each: [dms-01, ws-017, fs-02]\n"
    "    run: [echo, '${{ item }}']\n"
    "  - id: by-index\n"
    "    for_each: [a b, c, c]\n"
    "    run: [echo, '${{ item }}']\n"
    "  - id: by-input\n"
    "    for_each: ${{ inputs.hosts }}\n"
    "    run: [echo, '${{ item }}']\n"
    "  - id: protect-persons\n"
    "    when: ${{ vars.exfiltration }}\n"
    "    run: [echo, protect]\n"
    "  - id: report\n"
    "    run: [echo, report]\n";

/* The instances of each step, as SPEC §1.3 names them; NULL: the step has
 * no for_each; "*": any (its list is known only at run time). */
static const struct {
    const char *step;
    const char *const instances[4];
} INSTANCES[] = {
    { "isolate-edr", { "dms-01", "ws-017", "fs-02", NULL } },
    { "by-index", { "0", "1", "2", NULL } },
    { "by-input", { "*", NULL } },
};

/* The value types a `set` may give each var. */
#define T(t) (1u << (t))
static const struct {
    const char *var;
    unsigned types;
} VAR_TYPES[] = {
    { "exfiltration", T(IRP_VALUE_BOOL) },
    { "nothing", T(IRP_VALUE_BOOL) | T(IRP_VALUE_NUMBER) | T(IRP_VALUE_STRING) |
                     T(IRP_VALUE_LIST) },
    { "case_dir", T(IRP_VALUE_STRING) },
    { "derived", T(IRP_VALUE_BOOL) | T(IRP_VALUE_NUMBER) | T(IRP_VALUE_STRING) |
                     T(IRP_VALUE_LIST) },
    { "targets", T(IRP_VALUE_LIST) },
};

static const irp_playbook *playbook(void)
{
    static irp_playbook *pb;
    if (pb)
        return pb;
    irp_diag_list diags = IRP_DIAG_LIST_INIT;
    if (irp_playbook_load_mem("fuzz-scenario.yaml", PLAYBOOK, sizeof PLAYBOOK - 1, &diags,
                              &pb)) {
        irp_diag_print(&diags, stderr, false);
        fuzz_fail("the fixed playbook does not load");
    }
    irp_diag_list_release(&diags);
    if (pb->n_vars != sizeof VAR_TYPES / sizeof *VAR_TYPES)
        fuzz_fail("the fixed playbook has %zu vars", pb->n_vars);
    return pb;
}

static bool plain_id(const char *s)
{
    return ((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')) &&
           strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == strlen(s);
}

static void check_fail(const irp_playbook *pb, const irp_inject *in)
{
    const char *s = in->fail;
    const char *br = strchr(s, '[');
    size_t len = br ? (size_t)(br - s) : strlen(s);
    for (size_t k = 0; k < pb->n_steps; k++) {
        const char *id = pb->steps[k].id;
        if (strlen(id) != len || strncmp(id, s, len) != 0)
            continue;
        if (!br)
            return;
        size_t blen = strlen(br);
        FUZZ_CHECK(blen >= 3 && br[blen - 1] == ']', "inject %zu: fail '%s' is no instance id",
                   in->index, s);
        for (size_t j = 0; j < sizeof INSTANCES / sizeof *INSTANCES; j++) {
            if (strcmp(INSTANCES[j].step, id) != 0)
                continue;
            for (const char *const *n = INSTANCES[j].instances; *n; n++)
                if (strcmp(*n, "*") == 0 ||
                    (strlen(*n) == blen - 2 && strncmp(*n, br + 1, blen - 2) == 0))
                    return;
            fuzz_fail("inject %zu: fail '%s' names no instance of step '%s'", in->index, s, id);
        }
        fuzz_fail("inject %zu: fail '%s' names an instance of '%s', which has no for_each",
                  in->index, s, id);
    }
    fuzz_fail("inject %zu: fail '%s' names no step", in->index, s);
}

static void check_set(const irp_playbook *pb, const irp_inject *in)
{
    for (size_t i = 0; i < in->n_set; i++) {
        const char *name = in->set_names[i];
        const irp_value *v = in->set_values[i];
        FUZZ_CHECK(name && irp_playbook_var(pb, name), "inject %zu: set of an undeclared var",
                   in->index);
        for (size_t k = 0; k < i; k++)
            FUZZ_CHECK(strcmp(in->set_names[k], name) != 0, "inject %zu: var '%s' set twice",
                       in->index, name);
        irp_value_type t = irp_value_type_of(v);
        unsigned types = 0;
        for (size_t k = 0; k < sizeof VAR_TYPES / sizeof *VAR_TYPES; k++)
            if (strcmp(VAR_TYPES[k].var, name) == 0)
                types = VAR_TYPES[k].types;
        FUZZ_CHECK(v && (types & T(t)), "inject %zu: var '%s' set to a %s", in->index, name,
                   irp_value_type_name(t));
        if (t == IRP_VALUE_LIST)
            for (size_t k = 0; k < irp_value_list_len(v); k++)
                FUZZ_CHECK(irp_value_type_of(irp_value_list_at(v, k)) == IRP_VALUE_STRING,
                           "inject %zu: var '%s': item %zu is not a text", in->index, name, k);
    }
}

static void check_scenario(const irp_playbook *pb, const irp_scenario *sc, const char *path)
{
    FUZZ_CHECK(sc->file == path, "the scenario forgot its file");
    FUZZ_CHECK(sc->id && plain_id(sc->id), "scenario id '%s'", sc->id ? sc->id : "(none)");
    for (size_t i = 0; i < sc->n_injects; i++) {
        const irp_inject *in = &sc->injects[i];
        FUZZ_CHECK(in->index == i, "inject %zu has index %zu", i, in->index);
        FUZZ_CHECK(in->at_ms >= 0, "inject %zu: at %lld ms", i, (long long)in->at_ms);
        FUZZ_CHECK(in->line >= 1 && in->col >= 1, "inject %zu at %u:%u", i, (unsigned)in->line,
                   (unsigned)in->col);
        int actions = (in->message != NULL) + (in->fail != NULL) + (in->n_set > 0);
        FUZZ_CHECK(actions == 1, "inject %zu has %d actions", i, actions);
        if (in->fail)
            check_fail(pb, in);
        check_set(pb, in);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const irp_playbook *pb = playbook();
    char path[4200];
    fuzz_write_file("scenario.yaml", data, size, path, sizeof path);

    irp_diag_list diags = IRP_DIAG_LIST_INIT;
    irp_scenario *sc = NULL;
    int rc = irp_scenario_load(pb, path, &diags, &sc);
    FUZZ_CHECK((rc == 0) == (diags.errors == 0), "load gave %d with %zu errors", rc,
               diags.errors);
    for (size_t i = 0; i < diags.n; i++)
        FUZZ_CHECK(diags.items[i].msg[0], "empty diagnostic");
    if (rc == 0) {
        FUZZ_CHECK(sc, "load succeeded and gave no scenario");
        check_scenario(pb, sc, path);
    } else {
        FUZZ_CHECK(sc == NULL, "load failed and gave a scenario");
        FUZZ_CHECK(rc == IRP_EINVAL || rc == IRP_ENOMEM, "load gave %s", irp_strerror(rc));
    }
    irp_scenario_free(sc);
    irp_diag_print(&diags, fuzz_devnull(), false);
    irp_diag_list_release(&diags);
    return 0;
}
