/* Internal: starting irp's few helper threads. */
#ifndef IRP_THREAD_H
#define IRP_THREAD_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>

/* Starts fn(arg) on a new thread with every signal blocked: signals are
 * the loop's to handle, on the thread that runs it (libuv's own pool
 * threads block them too).  False if no thread could be made. */
static inline bool irp_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    bool ok = pthread_create(t, NULL, fn, arg) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ok;
}

#endif
