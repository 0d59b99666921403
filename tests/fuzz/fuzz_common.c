/* Helpers shared by the fuzz targets; see fuzz_common.h. */
#include "fuzz_common.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[4096];
static FILE *devnull;

/* Remove the files a target left and the directory.  Targets create only
 * plain files directly inside it. */
static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    if (d) {
        struct dirent *e;
        char path[sizeof tmpdir + 256];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(tmpdir);
}

const char *fuzz_tmpdir(void)
{
    if (tmpdir[0])
        return tmpdir;
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s/irp-fuzz-XXXXXX", base);
    if (!mkdtemp(tmpdir))
        fuzz_fail("cannot create a temporary directory under %s", base);
    atexit(remove_tmpdir);
    return tmpdir;
}

void fuzz_write_file(const char *name, const void *data, size_t size, char *path,
                     size_t pathlen)
{
    snprintf(path, pathlen, "%s/%s", fuzz_tmpdir(), name);
    /* A new file rather than O_TRUNC: ext4 flushes a file truncated to
     * zero and rewritten when it is closed, which would make each input
     * cost a disk write. */
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        fuzz_fail("cannot create %s", path);
    const char *p = data;
    while (size > 0) {
        ssize_t n = write(fd, p, size);
        if (n <= 0)
            fuzz_fail("cannot write %s", path);
        p += n;
        size -= (size_t)n;
    }
    close(fd);
}

FILE *fuzz_devnull(void)
{
    if (!devnull && !(devnull = fopen("/dev/null", "w")))
        fuzz_fail("cannot open /dev/null");
    return devnull;
}

char *fuzz_strndup(const void *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        fuzz_fail("out of memory");
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    fputs("fuzz invariant broken: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}
