/* irp — libcurl, loaded when a run needs it (include/irp/curl_lib.h).
 *
 * The functions below are the libcurl API irp uses, forwarded to the
 * library dlopen() found.  curl_easy_setopt and the other variadic ones
 * read their one argument by the type its option number says (the
 * CURLOPTTYPE_ ranges, as libcurl reads it itself) and pass it on.
 */
#define CURL_DISABLE_TYPECHECK   /* the definitions, not calls, are here */
#include <curl/curl.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "irp/curl_lib.h"
#include "irp/error.h"

/* libcurl's ABI has kept this name since 7.16 (2006). */
#define CURL_SONAME "libcurl.so.4"

typedef void (*any_fn)(void);

static struct curl_api {
    CURLcode (*global_init)(long);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    const char *(*easy_strerror)(CURLcode);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_cleanup)(CURLM *);
    CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
    CURLMcode (*multi_assign)(CURLM *, curl_socket_t, void *);
    CURLMcode (*multi_add_handle)(CURLM *, CURL *);
    CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
    CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
    CURLMsg *(*multi_info_read)(CURLM *, int *);
} fn;

#define SYM(name) { "curl_" #name, offsetof(struct curl_api, name) }
static const struct { const char *name; size_t at; } syms[] = {
    SYM(global_init), SYM(easy_init), SYM(easy_cleanup), SYM(easy_setopt),
    SYM(easy_getinfo), SYM(easy_strerror), SYM(slist_append), SYM(slist_free_all),
    SYM(multi_init), SYM(multi_cleanup), SYM(multi_setopt), SYM(multi_assign),
    SYM(multi_add_handle), SYM(multi_remove_handle), SYM(multi_socket_action),
    SYM(multi_info_read),
};

static bool loaded;
static int load_rc;
static char load_err[300];

static int load_failed(int rc, const char *what, const char *why)
{
    snprintf(load_err, sizeof load_err, "%s%s%s", what, why ? ": " : "", why ? why : "");
    memset(&fn, 0, sizeof fn);
    return load_rc = rc;
}

int irp_curl_load(void)
{
    if (loaded || load_rc)
        return load_rc;
    void *lib = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return load_failed(IRP_ENOENT, dlerror(), NULL);
    for (size_t i = 0; i < sizeof syms / sizeof *syms; i++) {
        void *p = dlsym(lib, syms[i].name);
        if (!p) {
            char what[80];
            snprintf(what, sizeof what, CURL_SONAME " has no %s", syms[i].name);
            dlclose(lib);
            return load_failed(IRP_ENOENT, what, NULL);
        }
        /* POSIX: a function's address from dlsym, stored as one. */
        memcpy((char *)&fn + syms[i].at, &p, sizeof p);
    }
    CURLcode c = fn.global_init(CURL_GLOBAL_DEFAULT);
    if (c != CURLE_OK) {
        const char *why = fn.easy_strerror(c);
        return load_failed(IRP_EINTERNAL, "curl_global_init failed", why);
    }
    /* Never closed: libcurl stays until the process ends. */
    loaded = true;
    return 0;
}

bool irp_curl_loaded(void) { return loaded; }
const char *irp_curl_load_error(void) { return load_rc ? load_err : NULL; }

/* ---- the API, forwarded ------------------------------------------------ */

CURL *curl_easy_init(void) { return loaded ? fn.easy_init() : NULL; }

void curl_easy_cleanup(CURL *h)
{
    if (loaded)
        fn.easy_cleanup(h);
}

/* The value of an option by its type, as libcurl's own setopt reads it. */
#define FORWARD_OPTION(call, opt, ap)                                   \
    ((opt) < CURLOPTTYPE_OBJECTPOINT     ? call(va_arg(ap, long))        \
     : (opt) < CURLOPTTYPE_FUNCTIONPOINT ? call(va_arg(ap, void *))      \
     : (opt) < CURLOPTTYPE_OFF_T         ? call(va_arg(ap, any_fn))      \
     : (opt) < CURLOPTTYPE_BLOB          ? call(va_arg(ap, curl_off_t))  \
                                         : call(va_arg(ap, void *)))

CURLcode curl_easy_setopt(CURL *h, CURLoption opt, ...)
{
    if (!loaded)
        return CURLE_FAILED_INIT;
    va_list ap;
    va_start(ap, opt);
#define EASY_SET(v) fn.easy_setopt(h, opt, v)
    CURLcode c = FORWARD_OPTION(EASY_SET, opt, ap);
#undef EASY_SET
    va_end(ap);
    return c;
}

/* Every CURLINFO takes a pointer to where the answer goes. */
CURLcode curl_easy_getinfo(CURL *h, CURLINFO info, ...)
{
    if (!loaded)
        return CURLE_FAILED_INIT;
    va_list ap;
    va_start(ap, info);
    CURLcode c = fn.easy_getinfo(h, info, va_arg(ap, void *));
    va_end(ap);
    return c;
}

const char *curl_easy_strerror(CURLcode c)
{
    return loaded ? fn.easy_strerror(c) : "libcurl is not loaded";
}

struct curl_slist *curl_slist_append(struct curl_slist *l, const char *s)
{
    return loaded ? fn.slist_append(l, s) : NULL;
}

void curl_slist_free_all(struct curl_slist *l)
{
    if (loaded)
        fn.slist_free_all(l);
}

CURLM *curl_multi_init(void) { return loaded ? fn.multi_init() : NULL; }

CURLMcode curl_multi_cleanup(CURLM *m)
{
    return loaded ? fn.multi_cleanup(m) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_setopt(CURLM *m, CURLMoption opt, ...)
{
    if (!loaded)
        return CURLM_INTERNAL_ERROR;
    va_list ap;
    va_start(ap, opt);
#define MULTI_SET(v) fn.multi_setopt(m, opt, v)
    CURLMcode c = FORWARD_OPTION(MULTI_SET, opt, ap);
#undef MULTI_SET
    va_end(ap);
    return c;
}

CURLMcode curl_multi_assign(CURLM *m, curl_socket_t s, void *p)
{
    return loaded ? fn.multi_assign(m, s, p) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_add_handle(CURLM *m, CURL *h)
{
    return loaded ? fn.multi_add_handle(m, h) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_remove_handle(CURLM *m, CURL *h)
{
    return loaded ? fn.multi_remove_handle(m, h) : CURLM_INTERNAL_ERROR;
}

CURLMcode curl_multi_socket_action(CURLM *m, curl_socket_t s, int ev, int *running)
{
    return loaded ? fn.multi_socket_action(m, s, ev, running) : CURLM_INTERNAL_ERROR;
}

CURLMsg *curl_multi_info_read(CURLM *m, int *left)
{
    if (!loaded) {
        *left = 0;
        return NULL;
    }
    return fn.multi_info_read(m, left);
}
