/* irp validate PLAYBOOK...: schema and reference checks only. */
#include <stdio.h>
#include <string.h>

#include "irp/cli.h"
#include "irp/error.h"
#include "irp/model.h"

int irp_cmd_validate(int argc, char **argv, const irp_cli_common *common)
{
    if (argc < 2)
        return irp_cli_usage_error("validate", "no playbook given");
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1])
            return irp_cli_usage_error("validate", "unknown option '%s'", argv[i]);
    int status = IRP_EXIT_OK;
    for (int i = 1; i < argc; i++) {
        irp_diag_list diags = IRP_DIAG_LIST_INIT;
        irp_playbook *pb = NULL;
        int rc = irp_playbook_load(argv[i], &diags, &pb);
        irp_diag_sort(&diags);
        if (!common->quiet || diags.errors)
            irp_diag_print(&diags, stderr, common->color);
        if (rc == IRP_ENOMEM) {
            fprintf(stderr, "irp: %s: out of memory\n", argv[i]);
            status = IRP_EXIT_INTERNAL;
        } else if (rc && rc != IRP_EPARSE && rc != IRP_ELIMIT) {
            /* Unreadable: usage-class, but later files are still checked. */
            if (status < IRP_EXIT_USAGE)
                status = IRP_EXIT_USAGE;
        } else if (diags.errors && status == IRP_EXIT_OK) {
            status = IRP_EXIT_FAILED;
        }
        if (!rc && !diags.errors && common->verbose)
            fprintf(stderr, "%s: ok (%zu steps)\n", argv[i], pb->n_steps);
        irp_playbook_free(pb);
        irp_diag_list_release(&diags);
    }
    return status;
}
