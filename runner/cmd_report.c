/* irp report RUN_DIR [--format md|json|junit] [-o FILE]: the after-action
 * report, rebuilt from the journal (report.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "irp/cli.h"
#include "irp/error.h"
#include "irp/report.h"

typedef struct report_args {
    const char *dir, *output;
    irp_report_format fmt;
} report_args;

static int set_format(report_args *a, const char *val)
{
    if (irp_report_format_parse(val, &a->fmt) != 0)
        return irp_cli_usage_error("report", "unknown format '%s' (md, json or junit)", val);
    return 0;
}

static int parse_args(int argc, char **argv, report_args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (strncmp(s, "--format=", 9) == 0) {
            rc = set_format(a, s + 9);
        } else if (strcmp(s, "--format") == 0 || strcmp(s, "-f") == 0) {
            if (!val)
                return irp_cli_usage_error("report", "%s needs a value", s);
            rc = set_format(a, val);
            i++;
        } else if (strcmp(s, "-o") == 0 || strcmp(s, "--output") == 0) {
            if (!val)
                return irp_cli_usage_error("report", "%s needs a file name", s);
            a->output = val;
            i++;
        } else if (s[0] == '-' && s[1]) {
            return irp_cli_usage_error("report", "unknown option '%s'", s);
        } else if (a->dir) {
            return irp_cli_usage_error("report", "one run directory at a time ('%s' and '%s')",
                                       a->dir, s);
        } else {
            a->dir = s;
        }
        if (rc)
            return rc;
    }
    if (!a->dir)
        return irp_cli_usage_error("report", "no run directory given");
    return 0;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return irp_err_from_errno(errno);
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reports carry the TLP-marked record of an incident: files are 0600. */
static int write_output(const char *path, const char *text, size_t len)
{
    if (!path) {
        int rc = write_all(STDOUT_FILENO, text, len);
        if (rc)
            fprintf(stderr, "irp report: cannot write the report: %s\n", irp_strerror(rc));
        return rc ? IRP_EXIT_INTERNAL : IRP_EXIT_OK;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "irp report: cannot write %s: %s\n", path, strerror(errno));
        return IRP_EXIT_USAGE;
    }
    int rc = write_all(fd, text, len);
    if (close(fd) != 0 && !rc)
        rc = irp_err_from_errno(errno);
    if (rc) {
        fprintf(stderr, "irp report: cannot write %s: %s\n", path, irp_strerror(rc));
        return IRP_EXIT_USAGE;
    }
    return IRP_EXIT_OK;
}

int irp_cmd_report(int argc, char **argv, const irp_cli_common *common)
{
    report_args a = { .fmt = IRP_REPORT_MD };
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc;
    irp_runlog *log = NULL;
    char err[1024];
    rc = irp_runlog_load(a.dir, &log, err, sizeof err);
    if (rc && !log) {
        fprintf(stderr, "irp report: %s\n", err);
        return rc == IRP_ENOMEM ? IRP_EXIT_INTERNAL
               : rc == IRP_ELIMIT ? IRP_EXIT_FAILED : IRP_EXIT_USAGE;
    }
    int damaged = rc == IRP_ECORRUPT;
    char *text = NULL;
    size_t len = 0;
    rc = irp_report_render(log, a.fmt, &text, &len);
    irp_runlog_free(log);
    if (rc) {
        fprintf(stderr, "irp report: %s\n", irp_strerror(rc));
        return IRP_EXIT_INTERNAL;
    }
    int status = write_output(a.output, text, len);
    free(text);
    /* A report of a damaged journal is made, marked, and fails. */
    if (damaged) {
        fprintf(stderr, "irp report: the journal is damaged: %s; the report covers the lines "
                "before it\n", err);
        if (status == IRP_EXIT_OK)
            status = IRP_EXIT_FAILED;
    }
    return status;
}
