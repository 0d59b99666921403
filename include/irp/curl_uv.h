/* irp — libcurl's multi interface driven by a libuv loop.
 *
 * Each loop gets one CURLM (made on first use) whose sockets are watched
 * by uv_poll_t handles and whose timeout is one uv_timer_t, as in curl's
 * docs/examples/multi-uv.c.  A transfer therefore never blocks the loop:
 * any number of them run at once beside child processes and timers.
 *
 * A transfer is an irp_curl_xfer embedded in its owner's struct: the
 * owner makes and configures the easy handle, starts it here, and hears
 * once, through `done`, how it ended.  `done` runs on the loop, outside
 * any libcurl callback, after the easy handle has left the multi handle,
 * so it may free the easy handle and the struct holding the xfer, and
 * start or stop other transfers.
 *
 * Everything runs on the loop's thread.  Before uv_loop_close(), call
 * irp_curl_shutdown() and run the loop so the handles' close callbacks
 * complete.  libcurl itself must be loaded and initialised once per
 * process (irp_curl_load, irp/curl_lib.h) before the first transfer.
 */
#ifndef IRP_CURL_UV_H
#define IRP_CURL_UV_H

#include <curl/curl.h>
#include <stdbool.h>
#include <uv.h>

typedef struct irp_curl_xfer irp_curl_xfer;

/* `result` is CURLE_OK or the failure; the easy handle's error buffer (if
 * the owner set CURLOPT_ERRORBUFFER) holds the details. */
typedef void (*irp_curl_done_cb)(irp_curl_xfer *x, CURLcode result);

struct irp_curl_xfer {
    CURL *easy;               /* the owner's: set before irp_curl_start */
    irp_curl_done_cb done;    /* the owner's: required */
    void *data;               /* the owner's; never touched here */
    /* Private. */
    struct curl_loop *cl;     /* set while the transfer is in the multi */
    irp_curl_xfer *prev, *next;
    bool broken;              /* a socket of it could not be watched */
};

/* Add x->easy to the loop's multi handle; the transfer begins on the next
 * loop turn.  The easy handle's CURLOPT_PRIVATE is taken.  0, IRP_ENOMEM,
 * or IRP_EINVAL (no easy handle or callback, x already started, or the
 * loop is shutting down).  On error nothing was started and `done` will
 * not be called. */
int irp_curl_start(uv_loop_t *loop, irp_curl_xfer *x);

/* Take a started transfer out of the multi handle; `done` is not called.
 * A no-op when x is not started (never, or already done). */
void irp_curl_stop(irp_curl_xfer *x);

/* True from irp_curl_start until `done` is called or irp_curl_stop. */
bool irp_curl_active(const irp_curl_xfer *x);

/* Stop the loop's transfers still running (their `done` is not called),
 * clean up the multi handle and close the loop's poll and timer handles;
 * their memory is freed by the close callbacks, so run the loop before
 * uv_loop_close().  A no-op when the loop never started a transfer. */
void irp_curl_shutdown(uv_loop_t *loop);

#endif
