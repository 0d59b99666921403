/* irp — input values: typed by their spec, checked against its pattern.
 *
 * An input's value comes from `-i KEY=VALUE`, an `--inputs` file, or the
 * spec's `default` (`irp check`: `example`), in that order of precedence.
 * Each source is converted to the declared type here, so a wrong value
 * is reported the same way wherever it came from.
 */
#ifndef IRP_INPUTS_H
#define IRP_INPUTS_H

#include <stddef.h>

#include "irp/model.h"
#include "irp/value.h"

/* Convert a YAML node to the input's type: string (any scalar, as
 * written), list (a sequence of scalars, or one scalar as a one-item
 * list), number, boolean (true/false), time (RFC 3339 with an offset,
 * normalised to UTC with milliseconds).  Returns 0 and a new reference,
 * or IRP_ETYPE with a message in err. */
int irp_input_from_node(const irp_input_spec *in, const irp_node *n, irp_value **out,
                        char *err, size_t errlen);

/* Convert the text of `-i KEY=VALUE`: a string as written, a number as
 * JSON, true/false, a time, a list as a YAML flow sequence (`[a,b]`) or
 * else a one-item list (repeated -i options append). */
int irp_input_from_text(const irp_input_spec *in, const char *text, irp_value **out,
                        char *err, size_t errlen);

/* The spec's `pattern` must match the whole value (each item of a list).
 * Returns 0, or IRP_EINVAL with a message naming the offending item. */
int irp_input_check_pattern(const irp_input_spec *in, const irp_value *v, char *err,
                            size_t errlen);


#ifndef IRP_INPUTS_RESOLVE
#define IRP_INPUTS_RESOLVE
#include "irp/diag.h"

/* Resolve every declared input: `-i KEY=VALUE` (args, repeatable; a list
 * input collects repeats), then an --inputs file (YAML or JSON mapping;
 * may be NULL), then `default` (and `example` when use_example).  Checks
 * types, patterns and required inputs; unknown names are errors.
 * Problems are added to diags (file positions for the inputs file,
 * "command line" otherwise).  Returns 0 and a new map in *out, or
 * IRP_EINVAL when any error was reported. */
int irp_inputs_resolve(const irp_playbook *pb, char *const *args, size_t nargs,
                       const char *inputs_file, bool use_example, irp_diag_list *diags,
                       irp_value **out);
#endif

#endif
