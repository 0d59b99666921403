/* irp — the command line: subcommands, options, exit codes.
 *
 * Exit codes live here and nowhere else (SPEC §2): 0 success; 1 a step
 * failed, validate/check found errors, verify found damage; 2 bad usage,
 * unreadable file, invalid playbook for run/simulate/resume; 3
 * interrupted; 4 journal could not be written; 70 internal error.
 */
#ifndef IRP_CLI_H
#define IRP_CLI_H

#include <stdbool.h>
#include <stdio.h>

enum {
    IRP_EXIT_OK = 0,
    IRP_EXIT_FAILED = 1,
    IRP_EXIT_USAGE = 2,
    IRP_EXIT_INTERRUPTED = 3,
    IRP_EXIT_JOURNAL = 4,
    IRP_EXIT_INTERNAL = 70,
};

/* Options every command takes. */
typedef struct irp_cli_common {
    bool color;        /* stderr is a TTY, no NO_COLOR, no --no-color */
    bool quiet;
    bool verbose;
} irp_cli_common;

typedef struct irp_cli_command {
    const char *name;
    const char *summary;     /* one line, for `irp --help` */
    const char *usage;       /* full text, for `irp NAME --help` */
    int (*main)(int argc, char **argv, const irp_cli_common *common);
} irp_cli_command;

int irp_cli_main(int argc, char **argv);

/* Commands (cmd_*.c).  argv[0] is the command name; common options have
 * been removed. */
int irp_cmd_validate(int argc, char **argv, const irp_cli_common *common);
int irp_cmd_run(int argc, char **argv, const irp_cli_common *common);
int irp_cmd_resume(int argc, char **argv, const irp_cli_common *common);
int irp_cmd_simulate(int argc, char **argv, const irp_cli_common *common);
int irp_cmd_check(int argc, char **argv, const irp_cli_common *common);
int irp_cmd_answer(int argc, char **argv, const irp_cli_common *common);
int irp_cmd_verify(int argc, char **argv, const irp_cli_common *common);
int irp_cmd_note(int argc, char **argv, const irp_cli_common *common);
int irp_cmd_status(int argc, char **argv, const irp_cli_common *common);
int irp_cmd_report(int argc, char **argv, const irp_cli_common *common);

/* Print "irp: " and the message to stderr; returns IRP_EXIT_USAGE. */
int irp_cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
