/* Fuzz target: answers given in advance -- an `--answers` file through
 * irp_answers_load() against a fixed playbook holding every kind of step
 * an answer can name (a confirmation, a confirmation on a `for_each`, a
 * manual step with its own choices, a manual step with the default
 * choices and a confirmation) and one that asks nothing, then
 * irp_answers_find() for each entry and for an instance nobody named.
 *
 * Input: the bytes of the answers file.
 *
 * Invariants checked beyond "no crash, no leak, no hang":
 *   - load returns 0 exactly when it reported no error, and then a set of
 *     answers, else none;
 *   - every entry names, by its key (`ID` or `ID[...]`), a step of the
 *     playbook that asks something; an instance key only for a step with
 *     a for_each;
 *   - a confirmation is "yes" or "no", and only for a step with confirm;
 *     a manual answer is one of that step's choices, and only for a
 *     manual step; every entry answers something;
 *   - irp_answers_find() on each key gives an entry with that key, and for
 *     an instance no key names, the entry of its step when there is one
 *     (the first one with the instance's key otherwise).
 */
#include <string.h>

#include "fuzz_common.h"
#include "irp/answers.h"
#include "irp/error.h"
#include "irp/model.h"

static const char PLAYBOOK[] =
    "irp: 1\n"
    "id: fuzz-answers\n"
    "steps:\n"
    "  - id: gate\n"
    "    confirm: true\n"
    "    run: [echo, gate]\n"
    "  - id: isolate\n"
    "    for_each: [ws-017, ws-018, fs-02]\n"
    "    confirm: Isolate ${{ item }}?\n"
    "    run: [echo, '${{ item }}']\n"
    "  - id: assess\n"
    "    manual:\n"
    "      prompt: Assess the risk to the people in the data.\n"
    "      choices: [unlikely, risk, high-risk]\n"
    "  - id: contain-fs\n"
    "    confirm: Take the file server off the network?\n"
    "    manual: Pull the file server's network cable.\n"
    "  - id: collect\n"
    "    run: [echo, collect]\n";

/* An instance id that no key of the seeds uses; a fuzzed file may. */
#define UNKNOWN_ITEM "[fuzz-unnamed]"

static const irp_playbook *playbook(void)
{
    static irp_playbook *pb;
    if (pb)
        return pb;
    irp_diag_list diags = IRP_DIAG_LIST_INIT;
    if (irp_playbook_load_mem("fuzz-answers.yaml", PLAYBOOK, sizeof PLAYBOOK - 1, &diags,
                              &pb)) {
        irp_diag_print(&diags, stderr, false);
        fuzz_fail("the fixed playbook does not load");
    }
    irp_diag_list_release(&diags);
    return pb;
}

static bool is_choice(const irp_step *st, const char *s)
{
    const irp_manual_action *m = st->act.manual;
    for (size_t i = 0; i < m->n_choices; i++)
        if (strcmp(m->choices[i], s) == 0)
            return true;
    return false;
}

/* The step a key names, read from the key itself: `ID` or `ID[...]`. */
static const irp_step *step_of_key(const irp_playbook *pb, const char *key, bool *is_instance)
{
    const char *br = strchr(key, '[');
    *is_instance = br != NULL;
    size_t len = br ? (size_t)(br - key) : strlen(key);
    char id[256];
    if (len >= sizeof id)
        return NULL;
    memcpy(id, key, len);
    id[len] = '\0';
    return irp_playbook_step(pb, id);
}

static void check_entry(const irp_playbook *pb, const irp_answer *a)
{
    FUZZ_CHECK(a->key && a->step, "an entry without key or step");
    bool inst;
    const irp_step *st = step_of_key(pb, a->key, &inst);
    FUZZ_CHECK(st == a->step, "key '%s' names step '%s', the entry says '%s'", a->key,
               st ? st->id : "(none)", a->step->id);
    FUZZ_CHECK(inst == a->is_instance, "key '%s': is_instance %d", a->key, a->is_instance);
    FUZZ_CHECK(st->confirm || st->action == IRP_ACT_MANUAL, "key '%s': step '%s' asks nothing",
               a->key, st->id);
    if (inst) {
        size_t klen = strlen(a->key), idlen = strlen(st->id);
        FUZZ_CHECK(st->has_for_each, "key '%s': step '%s' has no for_each", a->key, st->id);
        FUZZ_CHECK(klen >= idlen + 3 && a->key[klen - 1] == ']',
                   "key '%s' is not an instance id", a->key);
    }
    FUZZ_CHECK(a->confirm || a->answer, "key '%s' answers nothing", a->key);
    if (a->confirm) {
        FUZZ_CHECK(strcmp(a->confirm, "yes") == 0 || strcmp(a->confirm, "no") == 0,
                   "key '%s': confirmation '%s'", a->key, a->confirm);
        FUZZ_CHECK(st->confirm, "key '%s': a confirmation for step '%s', which has no confirm",
                   a->key, st->id);
    }
    if (a->answer) {
        FUZZ_CHECK(st->action == IRP_ACT_MANUAL, "key '%s': an answer for a non-manual step",
                   a->key);
        FUZZ_CHECK(is_choice(st, a->answer), "key '%s': '%s' is not a choice of step '%s'",
                   a->key, a->answer, st->id);
    }
    FUZZ_CHECK(a->line >= 1 && a->col >= 1, "key '%s' at %u:%u", a->key, a->line, a->col);
}

/* What irp_answers_find() must give: the first entry keyed by the
 * instance, else the first keyed by its step, else none. */
static const irp_answer *expected(const irp_answers *as, const char *instance,
                                  const char *step)
{
    const irp_answer *by_step = NULL;
    for (size_t i = 0; i < irp_answers_count(as); i++) {
        const irp_answer *a = irp_answers_at(as, i);
        if (strcmp(a->key, instance) == 0)
            return a;
        if (!by_step && strcmp(a->key, step) == 0)
            by_step = a;
    }
    return by_step;
}

static void check_lookups(const irp_playbook *pb, irp_answers *as)
{
    for (size_t i = 0; i < irp_answers_count(as); i++) {
        const irp_answer *a = irp_answers_at(as, i);
        const irp_answer *f = irp_answers_find(as, a->key, a->step->id);
        FUZZ_CHECK(f && strcmp(f->key, a->key) == 0, "find('%s') gave '%s'", a->key,
                   f ? f->key : "(none)");
        FUZZ_CHECK(f->used, "find('%s') did not mark the entry used", a->key);
    }
    for (size_t k = 0; k < pb->n_steps; k++) {
        const char *id = pb->steps[k].id;
        char instance[256];
        snprintf(instance, sizeof instance, "%s%s", id, UNKNOWN_ITEM);
        const irp_answer *want = expected(as, instance, id);
        const irp_answer *got = irp_answers_find(as, instance, id);
        FUZZ_CHECK(got == want, "find('%s') gave '%s', not '%s'", instance,
                   got ? got->key : "(none)", want ? want->key : "(none)");
    }
    FUZZ_CHECK(irp_answers_find(NULL, "gate", "gate") == NULL, "find in no answers");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const irp_playbook *pb = playbook();
    char path[4200];
    fuzz_write_file("answers.yaml", data, size, path, sizeof path);

    irp_diag_list diags = IRP_DIAG_LIST_INIT;
    irp_answers *as = NULL;
    int rc = irp_answers_load(pb, path, &diags, &as);
    FUZZ_CHECK((rc == 0) == (diags.errors == 0), "load gave %d with %zu errors", rc,
               diags.errors);
    for (size_t i = 0; i < diags.n; i++)
        FUZZ_CHECK(diags.items[i].msg[0], "empty diagnostic");
    if (rc == 0) {
        FUZZ_CHECK(as, "load succeeded and gave no answers");
        FUZZ_CHECK(irp_answers_file(as) == path, "the answers forgot their file");
        for (size_t i = 0; i < irp_answers_count(as); i++)
            check_entry(pb, irp_answers_at(as, i));
        check_lookups(pb, as);
    } else {
        FUZZ_CHECK(as == NULL, "load failed and gave answers");
        FUZZ_CHECK(rc == IRP_EINVAL || rc == IRP_ENOMEM, "load gave %s", irp_strerror(rc));
    }
    irp_answers_free(as);
    irp_diag_print(&diags, fuzz_devnull(), false);
    irp_diag_list_release(&diags);
    return 0;
}
