#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "irp/error.h"
#include "irp/journal.h"
#include "rundir.h"
#include "thread.h"

void rundir_make_id(const char *playbook_id, char *buf, size_t len)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    unsigned char r[2] = { 0, 0 };
    if (RAND_bytes(r, sizeof r) != 1) {
        r[0] = (unsigned char)getpid();
        r[1] = (unsigned char)(getpid() >> 8);
    }
    snprintf(buf, len, "%04d%02d%02dT%02d%02d%02dZ-%s-%02x%02x", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, playbook_id, r[0], r[1]);
}

int rundir_write(const char *dir, const char *name, const char *bytes, size_t len, bool sync)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return irp_err_from_errno(errno);
    size_t off = 0;
    int rc = 0;
    while (off < len && !rc) {
        ssize_t n = write(fd, bytes + off, len - off);
        if (n < 0 && errno != EINTR)
            rc = irp_err_from_errno(errno);
        else if (n > 0)
            off += (size_t)n;
    }
    if (!rc && sync && fsync(fd) != 0)
        rc = irp_err_from_errno(errno);
    if (close(fd) != 0 && !rc)
        rc = irp_err_from_errno(errno);
    return rc;
}

struct rundir_copy {
    pthread_t thread;
    char *dir;
    const char *src;
    size_t len;
    int err;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool hashed;
    char sha[IRP_SHA256_HEX];
};

static void *copy_thread(void *arg)
{
    rundir_copy *c = arg;
    char part[4096], path[4096], sha[IRP_SHA256_HEX];
    irp_sha256_hex(c->src, c->len, sha);
    pthread_mutex_lock(&c->mu);
    memcpy(c->sha, sha, sizeof sha);
    c->hashed = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    snprintf(part, sizeof part, "%s/playbook.yaml.part", c->dir);
    snprintf(path, sizeof path, "%s/playbook.yaml", c->dir);
    /* fsynced before it takes its name: after a crash, playbook.yaml is
     * whole or absent, never the prefix a resume would refuse.  Here it
     * costs the run nothing, and leaves the end's sync little to do. */
    c->err = rundir_write(c->dir, "playbook.yaml.part", c->src, c->len, true);
    if (!c->err && rename(part, path) != 0)
        c->err = irp_err_from_errno(errno);
    return NULL;
}

int rundir_copy_start(const char *dir, const char *src, size_t len, rundir_copy **out)
{
    rundir_copy *c = calloc(1, sizeof *c);
    *out = NULL;
    if (!c || !(c->dir = strdup(dir))) {
        free(c);
        return IRP_ENOMEM;
    }
    c->src = src;
    c->len = len;
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c->dir);
        free(c);
        return IRP_ENOMEM;
    }
    bool cv = pthread_cond_init(&c->cv, NULL) == 0;
    if (!cv || !irp_thread_start(&c->thread, copy_thread, c)) {
        if (cv)
            pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
        free(c->dir);
        free(c);
        return IRP_ENOMEM;
    }
    *out = c;
    return 0;
}

void rundir_copy_sha256(rundir_copy *c, char out[IRP_SHA256_HEX])
{
    pthread_mutex_lock(&c->mu);
    while (!c->hashed)
        pthread_cond_wait(&c->cv, &c->mu);
    memcpy(out, c->sha, IRP_SHA256_HEX);
    pthread_mutex_unlock(&c->mu);
}

int rundir_copy_finish(rundir_copy *c)
{
    if (!c)
        return 0;
    pthread_join(c->thread, NULL);
    int rc = c->err;
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c->dir);
    free(c);
    return rc;
}

static int sync_file(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return irp_err_from_errno(errno);
    int rc = fsync(fd) != 0 ? irp_err_from_errno(errno) : 0;
    close(fd);
    return rc;
}

int rundir_sync_inputs(const char *dir)
{
    return sync_file(dir, "inputs.json");
}

int rundir_create(const char *runs, const char *run_id, const irp_playbook *pb,
                  const irp_value *inputs, bool sync, char **path, char *err,
                  size_t errlen)
{
    *path = NULL;
    if (mkdir(runs, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", runs, strerror(errno));
        return irp_err_from_errno(errno);
    }
    /* Absolute, so IRP_RUN_DIR and IRP_OUTPUT hold in a step's own cwd. */
    char *abs = realpath(runs, NULL);
    if (!abs) {
        snprintf(err, errlen, "cannot resolve %s: %s", runs, strerror(errno));
        return irp_err_from_errno(errno);
    }
    char *dir = NULL;
    int n = asprintf(&dir, "%s/%s", abs, run_id);
    free(abs);
    if (n < 0)
        return IRP_ENOMEM;
    char logs[4096];
    snprintf(logs, sizeof logs, "%s/logs", dir);
    if (mkdir(dir, 0700) != 0 || mkdir(logs, 0700) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        int rc = irp_err_from_errno(errno);
        free(dir);
        return rc;
    }
    int rc = sync ? rundir_write(dir, "playbook.yaml", pb->src, pb->src_len, true) : 0;
    if (!rc) {
        json_t *j = irp_value_to_json(inputs, IRP_VALUE_JSON_REDACT);
        char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        rc = text ? rundir_write(dir, "inputs.json", text, strlen(text), sync) : IRP_ENOMEM;
        free(text);
        json_decref(j);
    }
    if (rc) {
        snprintf(err, errlen, "cannot write to %s: %s", dir, irp_strerror(rc));
        free(dir);
        return rc;
    }
    *path = dir;
    return 0;
}

int rundir_lock(const char *dir, long *holder)
{
    char path[4096];
    *holder = 0;
    snprintf(path, sizeof path, "%s/lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return irp_err_from_errno(errno);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        char buf[32] = "";
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        if (n > 0)
            *holder = strtol(buf, NULL, 10);
        close(fd);
        return err == EWOULDBLOCK ? IRP_EBUSY : irp_err_from_errno(err);
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
        int rc = irp_err_from_errno(errno);
        close(fd);
        return rc;
    }
    /* Deliberately left open: the lock lasts as long as this process. */
    return 0;
}

const char *rundir_tlp_label(irp_tlp t)
{
    static const char *const labels[] = { "TLP:CLEAR", "TLP:GREEN", "TLP:AMBER",
                                          "TLP:AMBER+STRICT", "TLP:RED" };
    return labels[t];
}
