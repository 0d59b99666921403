/* Fuzz target: input values -- an `--inputs` file (YAML or JSON), `-i
 * KEY=VALUE` arguments, `default` and `example` -- through
 * irp_inputs_resolve() against a fixed playbook declaring an input of
 * every type, with and without patterns, and irp_input_from_text() for
 * every declared input.
 *
 * Input: the bytes of the inputs file.  Its lines that hold a `=` are also
 * given as `-i` arguments (at most 32), and the text up to the first NUL
 * is converted for each input as `-i` would.
 *
 * Invariants checked beyond "no crash, no leak, no hang":
 *   - resolve returns 0 exactly when it reported no error, and then a map
 *     holding, for each declared input, a value of its type (or null when
 *     optional and not given), every list item a string, every time
 *     normalised to UTC with ms;
 *   - a value irp_input_from_text() accepts has the declared type.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "irp/error.h"
#include "irp/inputs.h"
#include "irp/model.h"

static const char PLAYBOOK[] =
    "irp: 1\n"
    "id: fuzz-inputs\n"
    "inputs:\n"
    "  incident_id: { required: true, pattern: '^INC-[0-9]{4}-[0-9]{4}$', example: INC-2026-0042 }\n"
    "  note:\n"
    "  host: { type: string, pattern: '[a-z]+(-[0-9]+)?' }\n"
    "  hosts: { type: list, pattern: '^[A-Za-z0-9.-]+$', default: [ws-017, ws-018] }\n"
    "  tags: { type: list }\n"
    "  count: { type: number, default: 3 }\n"
    "  dry_run: { type: boolean, default: false }\n"
    "  detected_at: { type: time, example: '2026-11-28T12:00:00+01:00' }\n"
    "steps:\n"
    "  - id: show\n"
    "    run: [echo, '${{ inputs.incident_id }}', '${{ inputs.note }}', '${{ inputs.host }}',\n"
    "          '${{ inputs.hosts }}', '${{ inputs.tags }}', '${{ inputs.count }}',\n"
    "          '${{ inputs.dry_run }}', '${{ inputs.detected_at }}']\n";

#define MAX_ARGS 32

static const irp_playbook *playbook(void)
{
    static irp_playbook *pb;
    if (pb)
        return pb;
    irp_diag_list diags = IRP_DIAG_LIST_INIT;
    if (irp_playbook_load_mem("fuzz-inputs.yaml", PLAYBOOK, sizeof PLAYBOOK - 1, &diags, &pb)) {
        irp_diag_print(&diags, stderr, false);
        fuzz_fail("the fixed playbook does not load");
    }
    irp_diag_list_release(&diags);
    return pb;
}

static bool is_utc_ms(const char *s, size_t len)
{
    static const char form[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (len != sizeof form - 1)
        return false;
    for (size_t i = 0; i < len; i++)
        if (form[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != form[i])
            return false;
    return true;
}

static void check_typed(const irp_input_spec *in, const irp_value *v)
{
    irp_value_type t = irp_value_type_of(v);
    size_t len;
    /* An optional input nobody gave is null. */
    if (t == IRP_VALUE_NULL && !in->required)
        return;
    switch (in->type) {
    case IRP_TYPE_STRING:
        FUZZ_CHECK(t == IRP_VALUE_STRING, "input '%s': a %s", in->name, irp_value_type_name(t));
        break;
    case IRP_TYPE_NUMBER:
        FUZZ_CHECK(t == IRP_VALUE_NUMBER, "input '%s': a %s", in->name, irp_value_type_name(t));
        break;
    case IRP_TYPE_BOOLEAN:
        FUZZ_CHECK(t == IRP_VALUE_BOOL, "input '%s': a %s", in->name, irp_value_type_name(t));
        break;
    case IRP_TYPE_TIME:
        FUZZ_CHECK(t == IRP_VALUE_STRING, "input '%s': a %s", in->name, irp_value_type_name(t));
        {
            const char *s = irp_value_string(v, &len);
            FUZZ_CHECK(is_utc_ms(s, len), "input '%s': time '%s' is not UTC with ms", in->name,
                       s);
        }
        break;
    case IRP_TYPE_LIST:
        FUZZ_CHECK(t == IRP_VALUE_LIST, "input '%s': a %s", in->name, irp_value_type_name(t));
        for (size_t i = 0; i < irp_value_list_len(v); i++)
            FUZZ_CHECK(irp_value_type_of(irp_value_list_at(v, i)) == IRP_VALUE_STRING,
                       "input '%s': item %zu is not a string", in->name, i);
        break;
    }
}

static void resolve(const irp_playbook *pb, char *const *args, size_t nargs, const char *file,
                    bool use_example)
{
    irp_diag_list diags = IRP_DIAG_LIST_INIT;
    irp_value *out = NULL;
    int rc = irp_inputs_resolve(pb, args, nargs, file, use_example, &diags, &out);
    FUZZ_CHECK((rc == 0) == (diags.errors == 0), "resolve gave %d with %zu errors", rc,
               diags.errors);
    for (size_t i = 0; i < diags.n; i++)
        FUZZ_CHECK(diags.items[i].msg[0], "empty diagnostic");
    if (rc == 0) {
        FUZZ_CHECK(irp_value_type_of(out) == IRP_VALUE_MAP, "resolve gave no map");
        for (size_t i = 0; i < irp_value_map_len(out); i++) {
            size_t klen;
            const char *key = irp_value_map_key_at(out, i, &klen);
            const irp_input_spec *in = irp_playbook_input(pb, key);
            FUZZ_CHECK(in, "resolve gave an undeclared input '%s'", key);
            check_typed(in, irp_value_map_value_at(out, i));
        }
        FUZZ_CHECK(irp_value_map_len(out) == pb->n_inputs, "%zu values for %zu inputs",
                   irp_value_map_len(out), pb->n_inputs);
    } else {
        FUZZ_CHECK(out == NULL, "resolve failed and gave a map");
    }
    irp_value_unref(out);
    irp_diag_print(&diags, fuzz_devnull(), false);
    irp_diag_list_release(&diags);
}

/* Lines holding a `=`, as -i arguments: copies in one buffer. */
static size_t split_args(const char *text, char **args)
{
    size_t n = 0;
    for (char *line = (char *)text; line && *line && n < MAX_ARGS;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (strchr(line, '='))
            args[n++] = line;
        line = nl ? nl + 1 : NULL;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const irp_playbook *pb = playbook();
    char path[4200];
    fuzz_write_file("inputs.yaml", data, size, path, sizeof path);

    resolve(pb, NULL, 0, path, true);

    char *text = fuzz_strndup(data, size);
    for (size_t k = 0; k < pb->n_inputs; k++) {
        const irp_input_spec *in = &pb->inputs[k];
        irp_value *v = NULL;
        char err[512] = "";
        if (irp_input_from_text(in, text, &v, err, sizeof err) == 0) {
            check_typed(in, v);
            irp_input_check_pattern(in, v, err, sizeof err);
        } else {
            FUZZ_CHECK(v == NULL && err[0], "input '%s': failed without a message", in->name);
        }
        irp_value_unref(v);
    }

    char *args[MAX_ARGS];
    size_t nargs = split_args(text, args);
    if (nargs)
        resolve(pb, args, nargs, path, false);
    free(text);
    return 0;
}
