/* The `notify` executor: a webhook (HTTP(S) POST), an e-mail (SMTP) or a
 * line appended to a file.
 *
 * Webhooks and e-mails go through libcurl's multi interface on the loop
 * (curl_uv.h), so a slow receiver never holds up other steps; the file is
 * written and fsync'd on libuv's thread pool for the same reason.  Every
 * attempt ends with one `notify.sent` event (sent or not) before its
 * step.finished.
 *
 * Each instance has one idempotency key, derived from the run id and the
 * instance id, so it is the same on every retry and after a resume
 * without being stored anywhere: the webhook's `Idempotency-Key` header
 * and the e-mail's Message-ID.
 *
 * Redirects are never followed: a 3xx is a failure that records where it
 * pointed.  A notification carries bearer tokens and incident details;
 * sending them wherever a receiver says is not what the playbook's author
 * approved.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "irp/curl_lib.h"
#include "irp/curl_uv.h"
#include "irp/error.h"
#include "irp/exec.h"
#include "irp/journal.h"
#include "irp/jsonutil.h"
#include "strvec.h"

#define RESPONSE_KEEP 1024      /* bytes of a response kept in notify.sent */
#define REDACT_MIN 6            /* SPEC §1.2: shorter secrets are not searched for */
#define KEY_LEN 32              /* hex digits of the idempotency key */

static const char *const via_names[] = { "webhook", "email", "file" };

/* A file append in flight on the thread pool.  It outlives the attempt
 * when the attempt stops waiting for it (a timeout cannot interrupt a
 * write): `job` is then NULL and the after-work callback only frees it. */
typedef struct file_work {
    uv_work_t req;
    irp_job *job;
    char *path;
    char *msg;
    size_t len;
    int err;                    /* errno of the failed call, 0: written */
    const char *what;           /* the call that failed */
} file_work;

typedef struct notify_job {
    irp_job *job;
    char key[KEY_LEN + 1];
    bool finished;

    /* Rendered in prepare. */
    char *url;                  /* webhook url, or e-mail server */
    char *target_shown;         /* url or file path, secrets *** */
    json_t *to_shown;           /* e-mail recipients, secrets *** */
    char *subject, *body, *content_type, *from, *username, *password, *ca_file;
    strvec to;                  /* e-mail recipients; file: the path */
    strvec headers;             /* "Name: value" */
    char *payload;              /* what is sent */
    size_t payload_len, payload_off;

    /* The transfer. */
    irp_curl_xfer xfer;
    struct curl_slist *hdr_list, *rcpt_list;
    char *resp;                 /* the response's first bytes */
    size_t resp_len, resp_cap;
    char errbuf[CURL_ERROR_SIZE];
    file_work *fw;
} notify_job;

/* ---- small helpers -------------------------------------------------- */

/* One key per instance: hex of SHA-256("run_id\ninstance"), shortened. */
static void make_key(const irp_job *job, char key[KEY_LEN + 1])
{
    char *text = NULL;
    char hex[IRP_SHA256_HEX] = "";
    if (asprintf(&text, "%s\n%s", job->run_id, job->instance) >= 0) {
        irp_sha256_hex(text, strlen(text), hex);
        free(text);
    }
    /* The first KEY_LEN digits (none if hashing failed). */
    snprintf(key, KEY_LEN + 1, "%.*s", KEY_LEN, hex);
}

static size_t longest_secret(const char *const *redact)
{
    size_t m = 0;
    for (; redact && *redact; redact++)
        if (strlen(*redact) > m)
            m = strlen(*redact);
    return m;
}

/* A copy of s[0..len) with every secret value of REDACT_MIN bytes or more
 * replaced by ***; *hit says whether one was found.  NULL when out of
 * memory. */
static char *redact_text(const char *s, size_t len, const char *const *redact, size_t *outlen,
                         bool *hit)
{
    size_t cap = len + 1, n = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    *hit = false;
    for (size_t i = 0; i < len;) {
        size_t best = 0;
        for (const char *const *r = redact; r && *r; r++) {
            size_t rl = strlen(*r);
            if (rl >= REDACT_MIN && rl > best && rl <= len - i && memcmp(s + i, *r, rl) == 0)
                best = rl;
        }
        if (best) {
            /* "***" is never longer than the secret it replaces. */
            memcpy(out + n, "***", 3);
            n += 3;
            i += best;
            *hit = true;
        } else {
            out[n++] = s[i++];
        }
    }
    out[n] = '\0';
    if (outlen)
        *outlen = n;
    return out;
}

/* How a rendered value is shown: as is, or *** when it derives from a
 * secret. */
static json_t *shown(const char *text, bool secret)
{
    return secret ? json_string("***") : irp_json_text(text, strlen(text));
}

/* A URL may carry a secret (a token in the path): the journal gets the
 * URL with the secret values written ***, or *** entirely when the value
 * derives from a secret in a way that cannot be found in it. */
static char *shown_url(const char *url, bool secret, const char *const *redact)
{
    bool hit = false;
    char *r = redact_text(url, strlen(url), redact, NULL, &hit);
    if (r && secret && !hit) {
        free(r);
        r = strdup("***");
    }
    return r;
}

static bool has_line_break(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

static bool header_name_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *s)))
            return false;
    return true;
}

static bool scheme_is(const char *url, const char *const *schemes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(schemes[i]);
        if (strncasecmp(url, schemes[i], l) == 0 && strncmp(url + l, "://", 3) == 0)
            return true;
    }
    return false;
}

/* Render an optional playbook string; *out stays NULL when absent. */
static int render_opt(irp_job *job, const irp_str *s, char **out, bool *secret, char *err,
                      size_t errlen)
{
    if (secret)
        *secret = false;
    if (!s->s)
        return 0;
    return irp_render_text(s, job->scope, out, secret, err, errlen);
}

static int lookup_text(irp_job *job, const char *root, const char *field, char **out)
{
    const char *seg[] = { root, field };
    irp_value *v = NULL;
    char err[128];
    int rc = job->scope->lookup(job->scope->ctx, seg, 2, &v, err, sizeof err);
    if (rc)
        return rc;
    rc = irp_value_render(v, out, NULL);
    irp_value_unref(v);
    return rc;
}

/* ---- prepare -------------------------------------------------------- */

static int prepare_common(irp_job *job, notify_job *n, json_t *a, char *err, size_t errlen)
{
    const irp_notify_action *na = job->step->act.notify;
    bool sec = false;
    int rc = render_opt(job, &na->subject, &n->subject, &sec, err, errlen);
    if (rc)
        return rc;
    if (n->subject)
        json_object_set_new(a, "subject", shown(n->subject, sec));
    rc = render_opt(job, &na->body, &n->body, &sec, err, errlen);
    if (rc)
        return rc;
    if (!n->body && !(n->body = strdup("")))
        return IRP_ENOMEM;
    json_object_set_new(a, "body", shown(n->body, sec));
    return 0;
}

static int prepare_tls(irp_job *job, notify_job *n, json_t *a, char *err, size_t errlen)
{
    const irp_notify_action *na = job->step->act.notify;
    json_object_set_new(a, "tls_verify", json_boolean(na->tls_verify));
    bool sec = false;
    int rc = render_opt(job, &na->ca_file, &n->ca_file, &sec, err, errlen);
    if (!rc && n->ca_file)
        json_object_set_new(a, "ca_file", shown(n->ca_file, sec));
    return rc;
}

/* The default webhook body: who sends, about what, and the message. */
static int webhook_json(irp_job *job, notify_job *n)
{
    static const char *const run_fields[] = { "id", "mode", "started_at", "detected_at",
                                              "operator" };
    json_t *run = json_object(), *doc = json_object();
    json_object_set_new(doc, "run", run);
    for (size_t i = 0; i < sizeof run_fields / sizeof *run_fields; i++) {
        char *text = NULL;
        if (lookup_text(job, "run", run_fields[i], &text) == 0)
            json_object_set_new(run, run_fields[i], irp_json_text(text, strlen(text)));
        free(text);
    }
    /* The run id is "<UTC time>-<playbook id>-<4 hex>" (SPEC §3). */
    size_t idlen = strlen(job->run_id);
    if (idlen > 22)
        json_object_set_new(doc, "playbook", json_stringn(job->run_id + 17, idlen - 22));
    json_object_set_new(doc, "step", json_string(job->step->id));
    json_object_set_new(doc, "instance", json_string(job->instance));
    json_object_set_new(doc, "idempotency_key", json_string(n->key));
    json_object_set_new(doc, "subject", n->subject ? irp_json_text(n->subject, strlen(n->subject))
                                                   : json_null());
    json_object_set_new(doc, "body", irp_json_text(n->body, strlen(n->body)));
    n->payload = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!n->payload)
        return IRP_ENOMEM;
    n->payload_len = strlen(n->payload);
    return 0;
}

static int prepare_webhook(irp_job *job, notify_job *n, json_t *a, char *err, size_t errlen)
{
    const irp_notify_action *na = job->step->act.notify;
    bool sec = false;
    int rc = irp_render_text(&na->url, job->scope, &n->url, &sec, err, errlen);
    if (rc)
        return rc;
    if (!(n->target_shown = shown_url(n->url, sec, job->redact)))
        return IRP_ENOMEM;
    json_object_set_new(a, "url", irp_json_text(n->target_shown, strlen(n->target_shown)));
    json_t *hs = json_object();
    json_object_set_new(a, "headers", hs);
    for (size_t i = 0; i < na->n_headers; i++) {
        char *text = NULL;
        rc = irp_render_text(&na->headers[i].value, job->scope, &text, &sec, err, errlen);
        if (rc)
            return rc;
        json_object_set_new(hs, na->headers[i].key, shown(text, sec));
        char *line = NULL;
        int len = asprintf(&line, "%s: %s", na->headers[i].key, text);
        free(text);
        if (len < 0 || strvec_push_owned(&n->headers, line))
            return IRP_ENOMEM;
    }
    rc = render_opt(job, &na->content_type, &n->content_type, &sec, err, errlen);
    if (rc)
        return rc;
    if (n->content_type)
        json_object_set_new(a, "content_type", shown(n->content_type, sec));
    rc = prepare_common(job, n, a, err, errlen);
    if (!rc)
        rc = prepare_tls(job, n, a, err, errlen);
    if (rc)
        return rc;
    if (n->content_type) {
        n->payload = strdup(n->body);
        n->payload_len = strlen(n->body);
        return n->payload ? 0 : IRP_ENOMEM;
    }
    return webhook_json(job, n);
}

/* An element of `to` that is exactly one template giving a list adds
 * one recipient per item. */
static int add_recipient(notify_job *n, const irp_value *v)
{
    char *text = NULL;
    int rc = irp_value_render(v, &text, NULL);
    if (rc)
        return rc;
    json_array_append_new(n->to_shown, shown(text, irp_value_is_secret(v)));
    return strvec_push_owned(&n->to, text);
}

static int prepare_email(irp_job *job, notify_job *n, json_t *a, char *err, size_t errlen)
{
    const irp_notify_action *na = job->step->act.notify;
    bool sec = false;
    int rc = irp_render_text(&na->server, job->scope, &n->url, &sec, err, errlen);
    if (rc)
        return rc;
    if (!(n->target_shown = shown_url(n->url, sec, job->redact)))
        return IRP_ENOMEM;
    json_object_set_new(a, "server", irp_json_text(n->target_shown, strlen(n->target_shown)));
    rc = irp_render_text(&na->from, job->scope, &n->from, &sec, err, errlen);
    if (rc)
        return rc;
    json_object_set_new(a, "from", shown(n->from, sec));
    n->to_shown = json_array();
    json_object_set_new(a, "to", json_incref(n->to_shown));
    for (size_t i = 0; i < na->n_to; i++) {
        irp_value *v = NULL;
        rc = irp_render_str(&na->to[i], job->scope, &v, err, errlen);
        if (rc)
            return rc;
        if (irp_value_type_of(v) == IRP_VALUE_LIST) {
            for (size_t k = 0; k < irp_value_list_len(v) && !rc; k++)
                rc = add_recipient(n, irp_value_list_at(v, k));
        } else {
            rc = add_recipient(n, v);
        }
        irp_value_unref(v);
        if (rc)
            return rc;
    }
    rc = render_opt(job, &na->username, &n->username, &sec, err, errlen);
    if (rc)
        return rc;
    if (n->username)
        json_object_set_new(a, "username", shown(n->username, sec));
    rc = render_opt(job, &na->password, &n->password, NULL, err, errlen);
    if (rc)
        return rc;
    json_object_set_new(a, "starttls",
                        json_string(na->starttls == IRP_STARTTLS_NONE ? "none" : "required"));
    rc = prepare_common(job, n, a, err, errlen);
    return rc ? rc : prepare_tls(job, n, a, err, errlen);
}

static int prepare_file(irp_job *job, notify_job *n, json_t *a, char *err, size_t errlen)
{
    const irp_notify_action *na = job->step->act.notify;
    bool sec = false;
    char *path = NULL;
    int rc = irp_render_text(&na->to[0], job->scope, &path, &sec, err, errlen);
    if (rc)
        return rc;
    rc = strvec_push_owned(&n->to, path);
    if (rc)
        return rc;
    if (!(n->target_shown = shown_url(path, sec, job->redact)))
        return IRP_ENOMEM;
    json_object_set_new(a, "to", irp_json_text(n->target_shown, strlen(n->target_shown)));
    return prepare_common(job, n, a, err, errlen);
}

static int notify_prepare(irp_job *job, json_t **action, char *err, size_t errlen)
{
    const irp_notify_action *na = job->step->act.notify;
    notify_job *n = calloc(1, sizeof *n);
    if (!n)
        return IRP_ENOMEM;
    job->priv = n;
    n->job = job;
    make_key(job, n->key);
    json_t *a = json_object();
    *action = a;
    json_object_set_new(a, "via", json_string(via_names[na->via]));
    json_object_set_new(a, "idempotency_key", json_string(n->key));
    switch (na->via) {
    case IRP_VIA_WEBHOOK: return prepare_webhook(job, n, a, err, errlen);
    case IRP_VIA_EMAIL: return prepare_email(job, n, a, err, errlen);
    default: return prepare_file(job, n, a, err, errlen);
    }
}

/* ---- the outcome ---------------------------------------------------- */

/* The first RESPONSE_KEEP bytes of what the receiver said, secrets ***,
 * cut on a character boundary. */
static json_t *response_json(const notify_job *n)
{
    if (!n->resp_len)
        return json_string("");
    size_t len = 0;
    bool hit;
    char *r = redact_text(n->resp, n->resp_len, n->job->redact, &len, &hit);
    if (!r)
        return json_string("");
    if (len > RESPONSE_KEEP) {
        len = RESPONSE_KEEP;
        for (int k = 0; k < 3 && len > 0 && ((unsigned char)r[len] & 0xC0) == 0x80; k++)
            len--;
    }
    json_t *j = irp_json_text(r, len);
    free(r);
    return j;
}

/* An error message may quote a host or a URL: secrets ***. */
static void set_error(notify_job *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(notify_job *n, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    bool hit;
    char *r = redact_text(buf, strlen(buf), n->job->redact, NULL, &hit);
    snprintf(n->job->error, sizeof n->job->error, "%s", r ? r : "out of memory");
    free(r);
}

/* Journal notify.sent, then end the attempt.  `status` 0: none. */
static void conclude(notify_job *n, bool ok, long status, const char *location)
{
    irp_job *job = n->job;
    const irp_notify_action *na = job->step->act.notify;
    n->finished = true;
    json_t *ev = json_object();
    json_object_set_new(ev, "via", json_string(via_names[na->via]));
    json_object_set_new(ev, "target", na->via == IRP_VIA_EMAIL
                                          ? json_incref(n->to_shown)
                                          : irp_json_text(n->target_shown,
                                                          strlen(n->target_shown)));
    json_object_set_new(ev, "idempotency_key", json_string(n->key));
    if (status > 0)
        json_object_set_new(ev, "status", json_integer(status));
    if (na->via != IRP_VIA_FILE)
        json_object_set_new(ev, "response", response_json(n));
    if (location) {
        bool hit;
        char *r = redact_text(location, strlen(location), job->redact, NULL, &hit);
        if (r)
            json_object_set_new(ev, "location", irp_json_text(r, strlen(r)));
        free(r);
    }
    json_object_set_new(ev, "ok", json_boolean(ok));
    if (!ok)
        json_object_set_new(ev, "error", json_string(job->error));
    job->emit(job, "notify.sent", ev);

    job->outcome = ok ? IRP_JOB_SUCCEEDED : IRP_JOB_FAILED;
    irp_value *out = irp_value_new_map();
    if (out) {
        char code[32];
        snprintf(code, sizeof code, "%ld", status);
        irp_value_map_set(out, "idempotency_key", 15, irp_value_new_cstring(n->key));
        if (status > 0)
            irp_value_map_set(out, "status", 6, irp_value_new_cstring(code));
    }
    job->outputs = out;
    irp_job_finish(job);
}

static void transfer_done(irp_curl_xfer *x, CURLcode result)
{
    notify_job *n = x->data;
    const irp_notify_action *na = n->job->step->act.notify;
    long code = 0;
    char *location = NULL;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    const char *why = n->errbuf[0] ? n->errbuf : curl_easy_strerror(result);
    bool ok = false;
    if (na->via == IRP_VIA_EMAIL) {
        ok = result == CURLE_OK;
        if (!ok && code > 0)
            set_error(n, "e-mail via %s: %s (SMTP %ld)", n->target_shown, why, code);
        else if (!ok)
            set_error(n, "e-mail via %s: %s", n->target_shown, why);
    } else if (result != CURLE_OK) {
        set_error(n, "webhook %s: %s", n->target_shown, why);
    } else if (code >= 300 && code < 400) {
        curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_URL, &location);
        set_error(n, "webhook %s answered HTTP %ld, a redirect to %s, which is not followed",
                  n->target_shown, code, location ? location : "(no Location)");
    } else {
        ok = code >= 200 && code < 300;
        if (!ok)
            set_error(n, "webhook %s answered HTTP %ld", n->target_shown, code);
    }
    conclude(n, ok, code, location);
}

/* ---- transfers ------------------------------------------------------ */

/* Keep the first bytes of the response, with room for a secret that
 * straddles the cut so it can still be found and masked. */
static size_t keep_response(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    notify_job *n = userdata;
    size_t len = size * nmemb;
    size_t cap = RESPONSE_KEEP + longest_secret(n->job->redact);
    if (n->resp_len < cap) {
        if (!n->resp) {
            n->resp = malloc(cap);
            n->resp_cap = n->resp ? cap : 0;
        }
        size_t take = len < n->resp_cap - n->resp_len ? len : n->resp_cap - n->resp_len;
        if (take)
            memcpy(n->resp + n->resp_len, ptr, take);
        n->resp_len += take;
    }
    return len;
}

static size_t read_payload(char *buf, size_t size, size_t nitems, void *userdata)
{
    notify_job *n = userdata;
    size_t left = n->payload_len - n->payload_off;
    size_t take = size * nitems < left ? size * nitems : left;
    memcpy(buf, n->payload + n->payload_off, take);
    n->payload_off += take;
    return take;
}

/* Options both kinds of transfer share. */
static CURLcode setup_common(notify_job *n, CURL *e, const char *protocols)
{
    const irp_notify_action *na = n->job->step->act.notify;
    CURLcode c = curl_easy_setopt(e, CURLOPT_URL, n->url);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_ERRORBUFFER, n->errbuf);
#if LIBCURL_VERSION_NUM >= 0x075500
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, protocols);
#else
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_PROTOCOLS,
                             strcmp(protocols, "http,https") == 0
                                 ? (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS)
                                 : (long)(CURLPROTO_SMTP | CURLPROTO_SMTPS));
#endif
    /* Each notification stands alone: no idle connection outlives it. */
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700
    /* A transfer stopped while its name is still being resolved must not
     * wait for the resolver thread: a hung DNS server would block the
     * loop for as long as getaddrinfo takes. */
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
#endif
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, na->tls_verify ? 1L : 0L);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, na->tls_verify ? 2L : 0L);
    if (!c && n->ca_file)
        c = curl_easy_setopt(e, CURLOPT_CAINFO, n->ca_file);
    return c;
}

static bool has_header(const notify_job *n, const char *name)
{
    size_t l = strlen(name);
    for (size_t i = 0; i < n->headers.n; i++)
        if (strncasecmp(n->headers.v[i], name, l) == 0 && n->headers.v[i][l] == ':')
            return true;
    return false;
}

static int append_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *l = curl_slist_append(*list, line);
    if (!l)
        return IRP_ENOMEM;
    *list = l;
    return 0;
}

/* Whether the webhook can be sent; if not, job->error says why. */
static bool webhook_valid(notify_job *n)
{
    static const char *const schemes[] = { "http", "https" };
    const irp_notify_action *na = n->job->step->act.notify;
    if (!scheme_is(n->url, schemes, 2)) {
        set_error(n, "webhook url %s: it must start with http:// or https://", n->target_shown);
        return false;
    }
    for (size_t i = 0; i < na->n_headers; i++) {
        const char *name = na->headers[i].key;
        if (!header_name_ok(name)) {
            set_error(n, "header '%s': not a valid header name", name);
            return false;
        }
        if (has_line_break(n->headers.v[i])) {
            set_error(n, "header '%s': the value holds a line break", name);
            return false;
        }
    }
    if (n->content_type && has_line_break(n->content_type)) {
        set_error(n, "content_type holds a line break");
        return false;
    }
    return true;
}

static CURLcode setup_webhook(notify_job *n, CURL *e)
{
    CURLcode c = setup_common(n, e, "http,https");
    int rc = 0;
    char *line = NULL;
    if (asprintf(&line, "Idempotency-Key: %s", n->key) < 0)
        return CURLE_OUT_OF_MEMORY;
    rc = append_header(&n->hdr_list, line);
    free(line);
    line = NULL;
    if (!rc && !has_header(n, "Content-Type")) {
        if (asprintf(&line, "Content-Type: %s",
                     n->content_type ? n->content_type : "application/json") < 0)
            return CURLE_OUT_OF_MEMORY;
        rc = append_header(&n->hdr_list, line);
        free(line);
    }
    /* No "Expect: 100-continue" round trip: the body is small. */
    if (!rc)
        rc = append_header(&n->hdr_list, "Expect:");
    for (size_t i = 0; i < n->headers.n && !rc; i++)
        rc = append_header(&n->hdr_list, n->headers.v[i]);
    if (rc)
        return CURLE_OUT_OF_MEMORY;
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_HTTPHEADER, n->hdr_list);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_POST, 1L);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_POSTFIELDS, n->payload);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)n->payload_len);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_USERAGENT, "irp/" IRP_VERSION);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, keep_response);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_WRITEDATA, n);
    return c;
}

/* ---- e-mail --------------------------------------------------------- */

/* The address inside "Name <addr>", or the whole text. */
static char *mailbox_address(const char *s)
{
    const char *lt = strrchr(s, '<'), *gt = lt ? strchr(lt, '>') : NULL;
    if (lt && gt)
        return strndup(lt + 1, (size_t)(gt - lt - 1));
    return strdup(s);
}

static bool is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

/* RFC 2047: non-ASCII text as "=?UTF-8?B?...?=" encoded-words of at most
 * 75 characters each (45 bytes of text, cut between characters), folded
 * onto continuation lines. */
static void put_encoded_words(FILE *f, const char *s)
{
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        size_t take = len - i < 45 ? len - i : 45;
        size_t whole = take;
        while (take < len - i && take > 0 && ((unsigned char)s[i + take] & 0xC0) == 0x80)
            take--;
        if (take == 0)   /* not UTF-8: cut anywhere rather than loop */
            take = whole;
        unsigned char b64[64];
        EVP_EncodeBlock(b64, (const unsigned char *)s + i, (int)take);
        fprintf(f, "%s=?UTF-8?B?%s?=", i ? "\r\n " : "", b64);
        i += take;
    }
}

/* Line breaks become CRLF; libcurl doubles a leading "." itself. */
static void put_crlf_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\r' && s[1] == '\n')
            continue;
        if (*s == '\r' || *s == '\n')
            fputs("\r\n", f);
        else
            fputc(*s, f);
    }
}

static void put_date(FILE *f, int64_t wall_ms)
{
    static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    fprintf(f, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n", days[tm.tm_wday], tm.tm_mday,
            months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int build_message(notify_job *n)
{
    FILE *f = open_memstream(&n->payload, &n->payload_len);
    if (!f)
        return IRP_ENOMEM;
    put_date(f, irp_clock_wall_ms(n->job->clock));
    fprintf(f, "From: %s\r\nTo: ", n->from);
    for (size_t i = 0; i < n->to.n; i++)
        fprintf(f, "%s%s", i ? ", " : "", n->to.v[i]);
    fputs("\r\nSubject: ", f);
    if (n->subject && is_ascii(n->subject))
        put_crlf_text(f, n->subject);
    else if (n->subject)
        put_encoded_words(f, n->subject);
    fprintf(f, "\r\nMessage-ID: <%s@irp>\r\nMIME-Version: 1.0\r\n"
               "Content-Type: text/plain; charset=utf-8\r\n"
               "Content-Transfer-Encoding: 8bit\r\n\r\n", n->key);
    put_crlf_text(f, n->body);
    size_t bl = strlen(n->body);
    if (bl == 0 || (n->body[bl - 1] != '\n' && n->body[bl - 1] != '\r'))
        fputs("\r\n", f);
    return fclose(f) == 0 ? 0 : IRP_ENOMEM;
}

/* Whether the e-mail can be sent; if not, job->error says why. */
static bool email_valid(notify_job *n)
{
    static const char *const schemes[] = { "smtp", "smtps" };
    if (!scheme_is(n->url, schemes, 2)) {
        set_error(n, "e-mail server %s: it must start with smtp:// or smtps://",
                  n->target_shown);
        return false;
    }
    if (!*n->from || has_line_break(n->from)) {
        set_error(n, "'from' is empty or holds a line break");
        return false;
    }
    if (n->to.n == 0) {
        set_error(n, "no recipient: 'to' rendered to an empty list");
        return false;
    }
    for (size_t i = 0; i < n->to.n; i++) {
        if (!*n->to.v[i] || has_line_break(n->to.v[i])) {
            set_error(n, "'to' holds an empty address or one with a line break");
            return false;
        }
    }
    /* A subject is one line; a line break in it would start a header. */
    for (char *p = n->subject; p && (p = strpbrk(p, "\r\n"));)
        *p = ' ';
    return true;
}

static CURLcode setup_email(notify_job *n, CURL *e)
{
    const irp_notify_action *na = n->job->step->act.notify;
    if (build_message(n))
        return CURLE_OUT_OF_MEMORY;
    char *from = mailbox_address(n->from);
    if (!from)
        return CURLE_OUT_OF_MEMORY;
    CURLcode c = setup_common(n, e, "smtp,smtps");
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_MAIL_FROM, from);
    free(from);
    for (size_t i = 0; i < n->to.n && !c; i++) {
        char *addr = mailbox_address(n->to.v[i]);
        if (!addr || append_header(&n->rcpt_list, addr))
            c = CURLE_OUT_OF_MEMORY;
        free(addr);
    }
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_MAIL_RCPT, n->rcpt_list);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_USE_SSL, na->starttls == IRP_STARTTLS_NONE
                                                     ? (long)CURLUSESSL_NONE
                                                     : (long)CURLUSESSL_ALL);
    if (!c && n->username)
        c = curl_easy_setopt(e, CURLOPT_USERNAME, n->username);
    if (!c && n->password)
        c = curl_easy_setopt(e, CURLOPT_PASSWORD, n->password);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_READFUNCTION, read_payload);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_READDATA, n);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)n->payload_len);
    /* SMTP replies reach the header callback: they are the response. */
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, keep_response);
    if (!c)
        c = curl_easy_setopt(e, CURLOPT_HEADERDATA, n);
    return c;
}

/* ---- file ----------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* On the thread pool: append, fsync, and fsync the folder of a file just
 * created so the file itself survives a crash. */
static void file_append(uv_work_t *req)
{
    file_work *fw = req->data;
    bool created = true;
    int fd = open(fw->path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
        created = false;
        fd = open(fw->path, O_WRONLY | O_APPEND | O_CLOEXEC);
    }
    if (fd < 0) {
        fw->err = errno;
        fw->what = "cannot open";
        return;
    }
    fw->err = write_all(fd, fw->msg, fw->len);
    fw->what = "cannot write";
    if (!fw->err && fsync(fd) != 0)
        fw->err = errno;
    if (close(fd) != 0 && !fw->err)
        fw->err = errno;
    if (fw->err || !created)
        return;
    char *dir = strdup(fw->path), *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dir);
}

static void file_free(file_work *fw)
{
    free(fw->path);
    free(fw->msg);
    free(fw);
}

static void file_appended(uv_work_t *req, int status)
{
    file_work *fw = req->data;
    irp_job *job = fw->job;
    if (!job) {   /* the attempt ended without it */
        file_free(fw);
        return;
    }
    notify_job *n = job->priv;
    n->fw = NULL;
    if (status == 0 && fw->err)
        set_error(n, "%s %s: %s", fw->what, n->target_shown, strerror(fw->err));
    else if (status != 0)
        set_error(n, "%s: %s", n->target_shown, uv_strerror(status));
    bool ok = status == 0 && !fw->err;
    file_free(fw);
    conclude(n, ok, 0, NULL);
}

static int start_file(notify_job *n)
{
    if (!*n->to.v[0]) {
        snprintf(n->job->error, sizeof n->job->error, "the file path rendered to nothing");
        conclude(n, false, 0, NULL);
        return 0;
    }
    file_work *fw = calloc(1, sizeof *fw);
    if (!fw)
        return IRP_ENOMEM;
    fw->path = strdup(n->to.v[0]);
    bool has_subject = n->subject && *n->subject;
    size_t bl = strlen(n->body);
    bool nl = bl > 0 && n->body[bl - 1] == '\n';
    int len = asprintf(&fw->msg, "%s%s%s%s", has_subject ? n->subject : "",
                       has_subject ? "\n\n" : "", n->body, nl ? "" : "\n");
    if (!fw->path || len < 0) {
        if (len < 0)
            fw->msg = NULL;
        file_free(fw);
        return IRP_ENOMEM;
    }
    fw->len = (size_t)len;
    fw->job = n->job;
    fw->req.data = fw;
    int e = uv_queue_work(n->job->loop, &fw->req, file_append, file_appended);
    if (e) {
        file_free(fw);
        return IRP_EINTERNAL;
    }
    n->fw = fw;
    return 0;
}

/* ---- start, cancel, release ----------------------------------------- */

static int notify_start(irp_job *job)
{
    notify_job *n = job->priv;
    const irp_notify_action *na = job->step->act.notify;
    if (na->via == IRP_VIA_FILE)
        return start_file(n);
    if (!(na->via == IRP_VIA_WEBHOOK ? webhook_valid(n) : email_valid(n))) {
        conclude(n, false, 0, NULL);
        return 0;
    }
    if (!irp_curl_loaded()) {
        set_error(n, "libcurl could not be loaded: %s",
                  irp_curl_load_error() ? irp_curl_load_error() : "irp_curl_load was not called");
        conclude(n, false, 0, NULL);
        return 0;
    }
    CURL *e = curl_easy_init();
    if (!e)
        return IRP_ENOMEM;
    n->xfer.easy = e;
    n->xfer.done = transfer_done;
    n->xfer.data = n;
    CURLcode c = na->via == IRP_VIA_WEBHOOK ? setup_webhook(n, e) : setup_email(n, e);
    if (c != CURLE_OK) {
        set_error(n, "cannot set up the transfer: %s", curl_easy_strerror(c));
        conclude(n, false, 0, NULL);
        return 0;
    }
    return irp_curl_start(job->loop, &n->xfer);
}

/* A timeout or Ctrl-C: stop waiting.  The engine tells timed_out from
 * cancelled by its own flags. */
static void notify_cancel(irp_job *job, int sig)
{
    notify_job *n = job->priv;
    if (!n || n->finished)
        return;
    if (irp_curl_active(&n->xfer)) {
        irp_curl_stop(&n->xfer);
    } else if (n->fw) {
        uv_cancel((uv_req_t *)&n->fw->req);
        n->fw->job = NULL;
        n->fw = NULL;
    } else {
        return;   /* not started yet */
    }
    snprintf(job->error, sizeof job->error,
             "stopped before the %s completed; the receiver may or may not have it",
             job->step->act.notify->via == IRP_VIA_FILE ? "write" : "send");
    conclude(n, false, 0, NULL);
}

static void notify_release(irp_job *job)
{
    notify_job *n = job->priv;
    if (!n)
        return;
    irp_curl_stop(&n->xfer);
    if (n->fw)
        n->fw->job = NULL;
    if (n->xfer.easy)
        curl_easy_cleanup(n->xfer.easy);
    curl_slist_free_all(n->hdr_list);
    curl_slist_free_all(n->rcpt_list);
    json_decref(n->to_shown);
    strvec_release(&n->to);
    strvec_release(&n->headers);
    free(n->url);
    free(n->target_shown);
    free(n->subject);
    free(n->body);
    free(n->content_type);
    free(n->from);
    free(n->username);
    if (n->password) {
        explicit_bzero(n->password, strlen(n->password));
        free(n->password);
    }
    free(n->ca_file);
    free(n->payload);
    free(n->resp);
    free(n);
    job->priv = NULL;
}

const irp_executor irp_exec_notify = {
    IRP_ACT_NOTIFY, false, notify_prepare, notify_start, notify_cancel, notify_release,
};
