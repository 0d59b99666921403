/* irp — one error space.
 *
 * Every function that can fail returns 0 or a negative IRP_E* code.
 * Codes from libraries (libyaml's 1/0, libuv's negative errno, CURLcode,
 * errno) are converted at the boundary where they are received, so the
 * rest of irp speaks only this language.  Users never see these codes:
 * what they see is a located diagnostic (diag.h) and an exit status
 * chosen by the command line.
 */
#ifndef IRP_ERROR_H
#define IRP_ERROR_H

/* X(name, value, message) */
#define IRP_ERRNO_MAP(X)                                              \
    X(NOMEM,    -1,  "out of memory")                                 \
    X(INVAL,    -2,  "invalid argument")                              \
    X(IO,       -3,  "input/output error")                            \
    X(NOENT,    -4,  "no such file or directory")                     \
    X(PARSE,    -5,  "syntax error")                                  \
    X(LIMIT,    -6,  "limit exceeded")                                \
    X(TYPE,     -7,  "type error")                                    \
    X(UNDEF,    -8,  "undefined reference")                           \
    X(RANGE,    -9,  "value out of range")                            \
    X(EXISTS,   -10, "already exists")                                \
    X(BUSY,     -11, "resource busy")                                 \
    X(CORRUPT,  -12, "data is damaged")                               \
    X(CANCELED, -13, "operation canceled")                            \
    X(TIMEDOUT, -14, "timed out")                                     \
    X(NOSPC,    -15, "no space left on device")                       \
    X(ACCES,    -16, "permission denied")                             \
    X(INTERNAL, -17, "internal error")

typedef enum {
#define IRP_ERR_ENUM(name, val, msg) IRP_E##name = (val),
    IRP_ERRNO_MAP(IRP_ERR_ENUM)
#undef IRP_ERR_ENUM
} irp_err;

/* Static text for an IRP_E* code (or "success" for 0); never NULL. */
const char *irp_strerror(int err);

/* Convert a positive errno value to the closest IRP_E* code. */
int irp_err_from_errno(int errnum);

#endif
