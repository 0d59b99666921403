/* irp — libcurl's multi interface on a libuv loop (include/irp/curl_uv.h).
 *
 * The wiring follows curl's docs/examples/multi-uv.c:
 *   socket callback   CURL_POLL_IN/OUT/INOUT → uv_poll_start on a poll
 *                     handle made for that socket (curl_multi_assign keeps
 *                     it with the socket); CURL_POLL_REMOVE → close it;
 *   timer callback    -1 → uv_timer_stop; otherwise uv_timer_start, with
 *                     0 ms made 1 ms (curl must not be re-entered from
 *                     inside its own callback);
 *   loop callbacks    socket readiness or the timer → curl_multi_socket_
 *                     action, then drain curl_multi_info_read.
 * Unlike the example, every allocation and libuv call is checked: a socket
 * that cannot be watched fails its transfer instead of stalling it.
 *
 * Per-loop state lives in a small registry keyed by the loop pointer (as
 * proc.c does), so loop->data stays the caller's.  A poll handle's memory
 * is freed in its close callback; the loop state is freed when the last
 * of its handles has closed after irp_curl_shutdown().
 */
#include <pthread.h>
#include <stdlib.h>

#include "irp/curl_uv.h"
#include "irp/error.h"

/* Connections open at once per loop; more transfers wait in libcurl's
 * queue, so a fan-out of a thousand notifications cannot exhaust the
 * process's descriptors (their timeouts keep running while they wait). */
#define MAX_CONNECTIONS 64L

typedef struct curl_loop curl_loop;

typedef struct curl_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    curl_loop *cl;
    struct curl_sock *prev, *next;   /* in cl->socks until its close begins */
} curl_sock;

struct curl_loop {
    curl_loop *next;                 /* registry */
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    curl_sock *socks;                /* open poll handles */
    irp_curl_xfer *xfers;            /* transfers in the multi */
    int open_handles;                /* the timer and poll handles not yet closed */
    bool any_broken;                 /* some xfer has `broken` set */
    bool closing;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static curl_loop *registry;

/* ---- handles ------------------------------------------------------- */

static void loop_maybe_free(curl_loop *cl)
{
    if (cl->closing && cl->open_handles == 0)
        free(cl);
}

static void on_sock_closed(uv_handle_t *h)
{
    curl_sock *s = h->data;
    curl_loop *cl = s->cl;
    free(s);
    cl->open_handles--;
    loop_maybe_free(cl);
}

static void on_timer_closed(uv_handle_t *h)
{
    curl_loop *cl = h->data;
    cl->open_handles--;
    loop_maybe_free(cl);
}

static void sock_close(curl_sock *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        s->cl->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void xfer_unlink(irp_curl_xfer *x)
{
    curl_loop *cl = x->cl;
    if (x->prev)
        x->prev->next = x->next;
    else
        cl->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
    curl_multi_remove_handle(cl->multi, x->easy);
    x->cl = NULL;
}

static irp_curl_xfer *xfer_of(CURL *easy)
{
    char *p = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &p);
    return (irp_curl_xfer *)(void *)p;
}

/* ---- completions --------------------------------------------------- */

static void finish(irp_curl_xfer *x, CURLcode result)
{
    xfer_unlink(x);
    x->broken = false;
    x->done(x, result);   /* may free x */
}

/* After every curl_multi_socket_action: hand each ended transfer to its
 * owner.  A callback may start or stop transfers; curl_multi_info_read
 * stays valid across that. */
static void drain(curl_loop *cl)
{
    CURLMsg *m;
    int left;
    while (!cl->closing && (m = curl_multi_info_read(cl->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURLcode result = m->data.result;
        irp_curl_xfer *x = xfer_of(m->easy_handle);
        if (x && x->cl == cl)
            finish(x, result);
    }
    while (cl->any_broken && !cl->closing) {
        irp_curl_xfer *x = cl->xfers;
        while (x && !x->broken)
            x = x->next;
        if (!x) {
            cl->any_broken = false;
            break;
        }
        finish(x, CURLE_OUT_OF_MEMORY);   /* restart: the list may have changed */
    }
}

static void act(curl_loop *cl, curl_socket_t fd, int flags)
{
    int running = 0;
    curl_multi_socket_action(cl->multi, fd, flags, &running);
    drain(cl);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    curl_sock *s = h->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    act(s->cl, s->fd, flags);
}

static void on_timer(uv_timer_t *t)
{
    act(t->data, CURL_SOCKET_TIMEOUT, 0);
}

/* ---- libcurl's callbacks ------------------------------------------- */

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    curl_loop *cl = userp;
    if (cl->closing)
        return 0;
    if (timeout_ms < 0) {
        uv_timer_stop(&cl->timer);
        return 0;
    }
    /* 0 means "as soon as possible", but not from inside this callback. */
    return uv_timer_start(&cl->timer, on_timer, timeout_ms ? (uint64_t)timeout_ms : 1, 0) ? -1 : 0;
}

static curl_sock *sock_new(curl_loop *cl, curl_socket_t fd)
{
    curl_sock *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (uv_poll_init_socket(cl->loop, &s->poll, fd) != 0) {
        free(s);   /* a failed init leaves no handle to close */
        return NULL;
    }
    s->fd = fd;
    s->cl = cl;
    s->poll.data = s;
    s->next = cl->socks;
    if (cl->socks)
        cl->socks->prev = s;
    cl->socks = s;
    cl->open_handles++;
    return s;
}

/* A socket that cannot be watched would leave its transfer waiting
 * forever: mark the transfer, and drain() fails it. */
static int sock_broken(curl_loop *cl, CURL *easy)
{
    irp_curl_xfer *x = easy ? xfer_of(easy) : NULL;
    if (x && x->cl == cl) {
        x->broken = true;
        cl->any_broken = true;
    }
    return -1;
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    curl_loop *cl = userp;
    curl_sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            if (!cl->closing)
                curl_multi_assign(cl->multi, fd, NULL);
            sock_close(s);
        }
        return 0;
    }
    if (cl->closing)
        return 0;
    if (!s) {
        s = sock_new(cl, fd);
        if (!s)
            return sock_broken(cl, easy);
        curl_multi_assign(cl->multi, fd, s);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    if (uv_poll_start(&s->poll, events, on_poll) != 0)
        return sock_broken(cl, easy);
    return 0;
}

/* ---- per-loop registry --------------------------------------------- */

static curl_loop *registry_find(uv_loop_t *loop)
{
    for (curl_loop *cl = registry; cl; cl = cl->next)
        if (cl->loop == loop)
            return cl;
    return NULL;
}

static int loop_create(uv_loop_t *loop, curl_loop **out)
{
    curl_loop *cl = calloc(1, sizeof *cl);
    if (!cl)
        return IRP_ENOMEM;
    cl->loop = loop;
    cl->multi = curl_multi_init();
    if (!cl->multi || uv_timer_init(loop, &cl->timer) != 0) {
        if (cl->multi)
            curl_multi_cleanup(cl->multi);
        free(cl);
        return IRP_ENOMEM;
    }
    cl->timer.data = cl;
    cl->open_handles = 1;
    if (curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, socket_cb) != CURLM_OK ||
        curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl) != CURLM_OK ||
        curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, timer_cb) != CURLM_OK ||
        curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl) != CURLM_OK ||
        curl_multi_setopt(cl->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, MAX_CONNECTIONS) !=
            CURLM_OK) {
        curl_multi_cleanup(cl->multi);
        cl->multi = NULL;
        cl->closing = true;
        uv_close((uv_handle_t *)&cl->timer, on_timer_closed);
        return IRP_EINTERNAL;
    }
    cl->next = registry;
    registry = cl;
    *out = cl;
    return 0;
}

static int loop_get(uv_loop_t *loop, curl_loop **out)
{
    pthread_mutex_lock(&registry_lock);
    int err = 0;
    *out = registry_find(loop);
    if (!*out)
        err = loop_create(loop, out);
    pthread_mutex_unlock(&registry_lock);
    return err;
}

/* ---- public -------------------------------------------------------- */

int irp_curl_start(uv_loop_t *loop, irp_curl_xfer *x)
{
    if (!x || !x->easy || !x->done || x->cl)
        return IRP_EINVAL;
    curl_loop *cl;
    int rc = loop_get(loop, &cl);
    if (rc)
        return rc;
    if (curl_easy_setopt(x->easy, CURLOPT_PRIVATE, (void *)x) != CURLE_OK)
        return IRP_EINVAL;
    x->broken = false;
    x->cl = cl;
    x->prev = NULL;
    x->next = cl->xfers;
    if (cl->xfers)
        cl->xfers->prev = x;
    cl->xfers = x;
    CURLMcode mc = curl_multi_add_handle(cl->multi, x->easy);
    if (mc != CURLM_OK) {
        if (x->next)
            x->next->prev = NULL;
        cl->xfers = x->next;
        x->next = NULL;
        x->cl = NULL;
        return mc == CURLM_OUT_OF_MEMORY ? IRP_ENOMEM : IRP_EINVAL;
    }
    return 0;
}

void irp_curl_stop(irp_curl_xfer *x)
{
    if (x && x->cl)
        xfer_unlink(x);
}

bool irp_curl_active(const irp_curl_xfer *x)
{
    return x && x->cl;
}

void irp_curl_shutdown(uv_loop_t *loop)
{
    pthread_mutex_lock(&registry_lock);
    curl_loop *cl = registry_find(loop);
    for (curl_loop **pp = &registry; cl && *pp; pp = &(*pp)->next) {
        if (*pp == cl) {
            *pp = cl->next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    if (!cl)
        return;
    while (cl->xfers)
        xfer_unlink(cl->xfers);
    cl->closing = true;
    /* Cleanup may still report sockets removed; socket_cb closes them. */
    curl_multi_cleanup(cl->multi);
    cl->multi = NULL;
    while (cl->socks)
        sock_close(cl->socks);
    uv_close((uv_handle_t *)&cl->timer, on_timer_closed);
}
