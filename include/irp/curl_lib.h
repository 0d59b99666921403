/* irp — libcurl, loaded when a run needs it.
 *
 * libcurl brings some 30 shared libraries with it (TLS, Kerberos, LDAP,
 * SSH, IDN, ...), and loading them cost every irp command about 4 ms at
 * start, three times what all its other libraries cost; only a run with
 * a notification uses it.  So irp is not linked with libcurl:
 * irp_curl_load() opens libcurl.so.4 with dlopen, and curl_lib.c
 * defines the curl_* functions irp calls, with curl.h's own prototypes
 * (and so its type checks of curl_easy_setopt), as calls into it.
 * Before a successful load they fail as libcurl does when it cannot
 * start: NULL, CURLE_FAILED_INIT, CURLM_INTERNAL_ERROR.
 */
#ifndef IRP_CURL_LIB_H
#define IRP_CURL_LIB_H

#include <stdbool.h>

/* Open libcurl and call curl_global_init, once per process and before
 * the threads that could use it start.  0, or IRP_ENOENT (no libcurl
 * that has what irp calls) or IRP_EINTERNAL (its initialisation
 * failed), and irp_curl_load_error() says what; a failed load is not
 * tried again. */
int irp_curl_load(void);
bool irp_curl_loaded(void);
/* Why the load failed ("libcurl.so.4: cannot open shared object file:
 * ..."), or NULL.  Static storage. */
const char *irp_curl_load_error(void);

#endif
