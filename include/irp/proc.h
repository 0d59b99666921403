/* irp — child processes on the event loop.
 *
 * Children are started with vfork (not fork: fork's cost grows with the
 * parent's memory, and a 100,000-step playbook makes the parent large),
 * each in a new process group so a timeout can signal the whole tree.
 * stdout and stderr are pipes read from the libuv loop and streamed to
 * the log file (never held whole in memory); the first `stdout_keep`
 * bytes of stdout are also kept.  Secret values are redacted from the log
 * as it streams.  A child is finished only when its exit status has been
 * reaped AND both pipes reached EOF (tmux job.c); then on_exit runs once.
 * Each child starts with stdin on /dev/null, no descriptor but 0-2, an
 * empty signal mask and default signal dispositions.
 *
 * Exits are noticed through one SIGCHLD watcher per loop (uv_signal_t)
 * and waitid(pid, WNOHANG|WNOWAIT) on each child not yet seen to exit;
 * the zombie is reaped just before on_exit, so until then its pid, which
 * is also the process group id, cannot be reused.  Per-loop state lives
 * in a registry keyed by the loop pointer: loop->data stays the caller's.
 * Every function here must be called on the loop's thread.
 */
#ifndef IRP_PROC_H
#define IRP_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

typedef struct irp_proc irp_proc;

typedef struct irp_proc_result {
    int exit_status;          /* valid when term_signal == 0; -1 when the
                                 status was lost (reaped elsewhere) */
    int term_signal;          /* the signal that ended it, or 0 */
    char *stdout_head;        /* first stdout_keep bytes (NUL-terminated), NULL
                                 when stdout_keep is 0; raw, not redacted;
                                 owned by the proc: copy it in on_exit */
    size_t stdout_head_len;
    uint64_t stdout_bytes;    /* total, before redaction */
    uint64_t log_bytes;       /* bytes this child's output added to the log */
    char log_sha256[65];      /* of those bytes (the whole file when it was
                                 new), "" without log */
    int log_error;            /* 0, or the first IRP_E* that stopped the log (disk
                                 full), on_stdout's non-zero return, or an
                                 error that made irp SIGKILL the child (output
                                 that could not be read or kept: IRP_ENOMEM) */
} irp_proc_result;

typedef void (*irp_proc_exit_cb)(irp_proc *p, const irp_proc_result *r, void *data);
/* Raw stdout bytes as they arrive (before redaction), e.g. to hash and
 * store evidence.  Return non-zero to stop the child (SIGKILL to its
 * group) -- the result then says what the callback reported in log_error. */
typedef int (*irp_proc_stdout_cb)(const char *buf, size_t len, void *data);

typedef struct irp_proc_opts {
    const char *const *argv;      /* argv[0] looked up in irp's PATH (not envp's)
                                     when it has no '/'; a relative path with '/'
                                     is taken from cwd */
    const char *const *envp;      /* the child's whole environment; NULL: irp's */
    const char *cwd;              /* NULL: irp's own */
    const char *log_path;         /* stdout and stderr appended here (0600, opened
                                     O_NOFOLLOW); NULL: none */
    int log_fd;                   /* with has_log_fd, instead of log_path: a
                                     descriptor (>= 0) open for appending, taken
                                     over -- closed by the proc, or by
                                     irp_proc_spawn when it fails */
    bool has_log_fd;
    size_t stdout_keep;           /* bytes of stdout to keep in memory (0: none) */
    const char *const *redact;    /* strings replaced by *** in the log; NULL-terminated;
                                     copied; those under 6 bytes are ignored (SPEC
                                     §1.2); overlapping matches become one *** */
    bool stdout_to_log;           /* false: stdout goes only to on_stdout (evidence) */
    irp_proc_stdout_cb on_stdout; /* may be NULL */
    irp_proc_exit_cb on_exit;     /* required; runs once, on the loop */
    void *data;
} irp_proc_opts;

/* Start a child.  Returns 0 and *out (owned by the loop until on_exit has
 * run: do not free it; it is freed after on_exit returns).  IRP_EBUSY when
 * out of file descriptors or processes (EMFILE/ENFILE/EAGAIN): nothing
 * was started, try again when another child ends.  IRP_ENOENT when the
 * command (or cwd) is not found, IRP_EACCES when it cannot be executed or
 * log_path is a symlink (a command that exists but fails to exec is
 * reported through on_exit with status 127 instead where the exec error
 * cannot travel back: it can on Linux, except under valgrind).  The
 * strings of opts are borrowed for the call only. */
int irp_proc_spawn(uv_loop_t *loop, const irp_proc_opts *opts, irp_proc **out);

pid_t irp_proc_pid(const irp_proc *p);

/* Signal the child's whole process group (SIGTERM, SIGKILL).  Until
 * on_exit the group is signalled even after the child itself exited: a
 * grandchild holding stdout keeps the proc unfinished, and this is how a
 * timeout ends it.  A no-op from within on_exit; ESRCH is not an error. */
int irp_proc_kill(irp_proc *p, int sig);

/* Number of children started but not finished on this loop. */
size_t irp_proc_live(uv_loop_t *loop);

/* Close the SIGCHLD watcher of this loop: now if no child is live, else
 * when the last one finishes.  Run the loop afterwards so the close
 * completes, then uv_loop_close. */
void irp_proc_shutdown(uv_loop_t *loop);

#endif
