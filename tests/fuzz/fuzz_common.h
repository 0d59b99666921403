/* Helpers shared by the fuzz targets (tests/fuzz/fuzz_*.c).
 *
 * A target is one LLVMFuzzerTestOneInput().  It is linked either with
 * libFuzzer (a clang build with IRP_FUZZ=ON, see fuzz.cmake) or with
 * driver.c, which replays files given on the command line, in every build.
 *
 * Targets stay quiet (printing slows fuzzing down) and write only inside
 * one private temporary directory, removed at exit.  A broken invariant is
 * reported with fuzz_fail(), which prints one line and aborts, so both
 * libFuzzer and the replay driver count it as a crash.
 */
#ifndef IRP_FUZZ_COMMON_H
#define IRP_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The target's temporary directory ($TMPDIR or /tmp, irp-fuzz-XXXXXX;
 * tests/fuzz/run.sh points TMPDIR at a tmpfs when there is one),
 * created on first use and removed, with the files in it, at exit. */
const char *fuzz_tmpdir(void);

/* Write data[0..size) to the file `name` in fuzz_tmpdir(), replacing it,
 * and put its path in path[0..pathlen).  Aborts when it cannot: without
 * the file there is nothing to test. */
void fuzz_write_file(const char *name, const void *data, size_t size, char *path,
                     size_t pathlen);

/* /dev/null, opened once: for code that prints. */
FILE *fuzz_devnull(void);

/* A copy of data[0..size) with a NUL after it; caller frees. */
char *fuzz_strndup(const void *data, size_t size);

/* Report a broken invariant and abort. */
_Noreturn void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define FUZZ_CHECK(cond, ...) \
    do { if (!(cond)) fuzz_fail(__VA_ARGS__); } while (0)

#endif
