/* irp check's reports: JUnit XML for CI systems, JSON for tools
 * (docs/ci.md).
 *
 * JUnit: one <testsuite> per playbook, named after the file as given; in
 * it one <testcase> per kind of check (check.h) and one per failure path.
 * A test case fails when its check found errors: <failure> holds every
 * error as FILE:LINE:COL: error: message, warnings go to <system-out>, and
 * a check that could not run is <skipped> with the reason.  Each suite
 * states the playbook's TLP marking as a property.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "irp/check.h"
#include "irp/error.h"
#include "irp/jsonutil.h"
#include "rundir.h"

/* ---- XML ------------------------------------------------------------ */

/* Length of the UTF-8 sequence at p that XML 1.0 allows, or 0 for a byte
 * that starts none (invalid UTF-8, a surrogate, U+FFFE, U+FFFF). */
static size_t xml_char(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    size_t n = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
    if (!n || p[0] > 0xf4)
        return 0;
    unsigned cp = p[0] & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    bool shortest = (n == 2 && cp >= 0x80) || (n == 3 && cp >= 0x800) || (n == 4 && cp >= 0x10000);
    if (!shortest || (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff ||
        cp > 0x10ffff)
        return 0;
    return n;
}

/* Text or an attribute value: markup characters as entities, line breaks
 * and tabs as character references (attribute values would fold them),
 * other control characters removed, invalid UTF-8 as U+FFFD. */
static void xml_text(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        switch (*p) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        case '\n': fputs("&#10;", f); break;
        case '\r': fputs("&#13;", f); break;
        case '\t': fputs("&#9;", f); break;
        default: {
            if (*p < 0x20 || *p == 0x7f)
                break;   /* XML 1.0 cannot hold it */
            size_t n = xml_char(p);
            if (!n) {
                fputs("\xef\xbf\xbd", f);
                n = 1;
            } else {
                fwrite(p, 1, n, f);
            }
            p += n;
            continue;
        }
        }
        p++;
    }
}

static void xml_attr(FILE *f, const char *name, const char *value)
{
    fprintf(f, " %s=\"", name);
    xml_text(f, value);
    fputc('"', f);
}

static void xml_count(FILE *f, const char *name, size_t n)
{
    fprintf(f, " %s=\"%zu\"", name, n);
}

/* "FILE:LINE:COL: error: message", as on the terminal. */
static void diag_line(FILE *f, const irp_diag *d)
{
    char head[64] = "";
    if (d->line)
        snprintf(head, sizeof head, ":%u:%u", d->line, d->col ? d->col : 1);
    char *line = NULL;
    if (asprintf(&line, "%s%s: %s: %s\n", d->file ? d->file : "<input>", head,
                 d->sev == IRP_DIAG_ERROR ? "error" : d->sev == IRP_DIAG_WARNING ? "warning"
                                                                              : "note",
                 d->msg) < 0)
        return;
    xml_text(f, line);
    free(line);
}

/* What one suite holds, counted before it is written. */
typedef struct suite_counts { size_t tests, failures, skipped; } suite_counts;

static suite_counts count_suite(const irp_check_result *r)
{
    suite_counts n = { 0 };
    for (int k = 0; k < IRP_CHECK_NKINDS; k++) {
        n.tests++;
        if (r->diags[k].errors)
            n.failures++;
        else if (r->skipped[k])
            n.skipped++;
    }
    for (size_t i = 0; i < r->n_paths; i++) {
        n.tests++;
        n.failures += r->paths[i].n_problems > 0;
    }
    return n;
}

static void kind_case(FILE *f, const irp_check_result *r, irp_check_kind k)
{
    const irp_diag_list *l = &r->diags[k];
    fputs("    <testcase", f);
    xml_attr(f, "classname", r->file);
    xml_attr(f, "name", irp_check_kind_name(k));
    fputs(">\n", f);
    if (l->errors) {
        char msg[64];
        snprintf(msg, sizeof msg, "%zu error%s", l->errors, l->errors == 1 ? "" : "s");
        fputs("      <failure", f);
        xml_attr(f, "message", msg);
        xml_attr(f, "type", "error");
        fputc('>', f);
        for (size_t i = 0; i < l->n; i++)
            if (l->items[i].sev == IRP_DIAG_ERROR)
                diag_line(f, &l->items[i]);
        fputs("</failure>\n", f);
    } else if (r->skipped[k]) {
        fputs("      <skipped", f);
        xml_attr(f, "message", r->skipped[k]);
        fputs("/>\n", f);
    }
    if (l->warnings) {
        fputs("      <system-out>", f);
        for (size_t i = 0; i < l->n; i++)
            if (l->items[i].sev != IRP_DIAG_ERROR)
                diag_line(f, &l->items[i]);
        fputs("</system-out>\n", f);
    }
    fputs("    </testcase>\n", f);
}

static void path_case(FILE *f, const irp_check_result *r, const irp_check_path *p)
{
    char name[600];
    if (p->failing)
        snprintf(name, sizeof name, "path: when '%s' fails", p->failing);
    else
        snprintf(name, sizeof name, "path: when nothing is forced to fail");
    fputs("    <testcase", f);
    xml_attr(f, "classname", r->file);
    xml_attr(f, "name", name);
    if (!p->n_problems) {
        fputs("/>\n", f);
        return;
    }
    fputs(">\n      <failure", f);
    xml_attr(f, "message", p->problems[0]);
    xml_attr(f, "type", "path");
    fputc('>', f);
    for (size_t i = 0; i < p->n_problems; i++) {
        xml_text(f, p->problems[i]);
        xml_text(f, "\n");
    }
    fputs("</failure>\n    </testcase>\n", f);
}

static void suite(FILE *f, const irp_check_result *r)
{
    suite_counts n = count_suite(r);
    fputs("  <testsuite", f);
    xml_attr(f, "name", r->file);
    xml_count(f, "tests", n.tests);
    xml_count(f, "failures", n.failures);
    xml_count(f, "errors", 0);
    xml_count(f, "skipped", n.skipped);
    fputs(">\n    <properties>\n", f);
    if (r->pb) {
        const char *props[][2] = {
            { "tlp", rundir_tlp_label(r->pb->tlp) },
            { "playbook", r->pb->id ? r->pb->id : "" },
        };
        for (size_t i = 0; i < 2; i++) {
            fputs("      <property", f);
            xml_attr(f, "name", props[i][0]);
            xml_attr(f, "value", props[i][1]);
            fputs("/>\n", f);
        }
    }
    fputs("    </properties>\n", f);
    for (int k = 0; k < IRP_CHECK_NKINDS; k++)
        kind_case(f, r, (irp_check_kind)k);
    for (size_t i = 0; i < r->n_paths; i++)
        path_case(f, r, &r->paths[i]);
    fputs("  </testsuite>\n", f);
}

static int finish_file(FILE *f, const char *path, char *err, size_t errlen)
{
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno ? errno : EIO));
        return IRP_EIO;
    }
    return 0;
}

static FILE *open_report(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "we");
    if (!f)
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return f;
}

int irp_check_write_junit(const char *path, const irp_check_result *rs, size_t n, char *err,
                          size_t errlen)
{
    FILE *f = open_report(path, err, errlen);
    if (!f)
        return IRP_EIO;
    suite_counts all = { 0 };
    for (size_t i = 0; i < n; i++) {
        suite_counts c = count_suite(&rs[i]);
        all.tests += c.tests;
        all.failures += c.failures;
        all.skipped += c.skipped;
    }
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites", f);
    xml_attr(f, "name", "irp check");
    xml_count(f, "tests", all.tests);
    xml_count(f, "failures", all.failures);
    xml_count(f, "errors", 0);
    xml_count(f, "skipped", all.skipped);
    fputs(">\n", f);
    for (size_t i = 0; i < n; i++)
        suite(f, &rs[i]);
    fputs("</testsuites>\n", f);
    return finish_file(f, path, err, errlen);
}

/* ---- JSON ----------------------------------------------------------- */

static json_t *text(const char *s)
{
    return irp_json_text(s ? s : "", s ? strlen(s) : 0);
}

static json_t *diag_json(const irp_diag *d, irp_check_kind k)
{
    json_t *o = json_object();
    json_object_set_new(o, "file", text(d->file));
    json_object_set_new(o, "line", json_integer(d->line));
    json_object_set_new(o, "col", json_integer(d->col));
    json_object_set_new(o, "severity", json_string(d->sev == IRP_DIAG_ERROR ? "error"
                                                   : d->sev == IRP_DIAG_WARNING ? "warning"
                                                                                : "note"));
    json_object_set_new(o, "check", json_string(irp_check_kind_name(k)));
    json_object_set_new(o, "message", text(d->msg));
    return o;
}

typedef struct tagged { const irp_diag *d; irp_check_kind k; size_t i; } tagged;

/* By position; on a tie, by check, then as found. */
static int tagged_cmp(const void *a, const void *b)
{
    const tagged *x = a, *y = b;
    if (x->d->line != y->d->line)
        return x->d->line < y->d->line ? -1 : 1;
    if (x->d->col != y->d->col)
        return x->d->col < y->d->col ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* Diagnostics in file order, each with the check that found it. */
static json_t *diags_json(const irp_check_result *r)
{
    size_t n = 0;
    for (int k = 0; k < IRP_CHECK_NKINDS; k++)
        n += r->diags[k].n;
    tagged *t = malloc((n ? n : 1) * sizeof *t);
    json_t *a = json_array();
    if (!t || !a) {
        free(t);
        return a;
    }
    size_t m = 0;
    for (int k = 0; k < IRP_CHECK_NKINDS; k++)
        for (size_t i = 0; i < r->diags[k].n; i++, m++)
            t[m] = (tagged){ &r->diags[k].items[i], (irp_check_kind)k, m };
    qsort(t, m, sizeof *t, tagged_cmp);
    for (size_t i = 0; i < m; i++)
        json_array_append_new(a, diag_json(t[i].d, t[i].k));
    free(t);
    return a;
}

static json_t *checks_json(const irp_check_result *r)
{
    json_t *o = json_object();
    for (int k = 0; k < IRP_CHECK_NKINDS; k++) {
        json_t *c = json_object();
        json_object_set_new(c, "errors", json_integer((json_int_t)r->diags[k].errors));
        json_object_set_new(c, "warnings", json_integer((json_int_t)r->diags[k].warnings));
        json_object_set_new(c, "skipped", r->skipped[k] ? json_string(r->skipped[k]) : json_null());
        json_object_set_new(o, irp_check_kind_name((irp_check_kind)k), c);
    }
    return o;
}

static json_t *paths_json(const irp_check_result *r)
{
    json_t *a = json_array();
    for (size_t i = 0; i < r->n_paths; i++) {
        const irp_check_path *p = &r->paths[i];
        json_t *o = json_object(), *probs = json_array();
        json_object_set_new(o, "failing", p->failing ? text(p->failing) : json_null());
        json_object_set_new(o, "instance", json_boolean(p->instance));
        json_object_set_new(o, "took_effect", json_boolean(p->took_effect));
        json_object_set_new(o, "ok", json_boolean(p->n_problems == 0));
        for (size_t k = 0; k < p->n_problems; k++)
            json_array_append_new(probs, text(p->problems[k]));
        json_object_set_new(o, "problems", probs);
        json_array_append_new(a, o);
    }
    return a;
}

static json_t *playbook_json(const irp_check_result *r)
{
    json_t *o = json_object();
    json_object_set_new(o, "file", text(r->file));
    json_object_set_new(o, "id", r->pb && r->pb->id ? text(r->pb->id) : json_null());
    json_object_set_new(o, "tlp", r->pb ? json_string(irp_tlp_name(r->pb->tlp)) : json_null());
    json_object_set_new(o, "readable", json_boolean(!irp_check_unreadable(r)));
    json_object_set_new(o, "errors", json_integer((json_int_t)r->errors));
    json_object_set_new(o, "warnings", json_integer((json_int_t)r->warnings));
    json_object_set_new(o, "diagnostics", diags_json(r));
    json_object_set_new(o, "checks", checks_json(r));
    json_object_set_new(o, "paths", paths_json(r));
    json_object_set_new(o, "paths_possible", json_integer((json_int_t)r->paths_possible));
    return o;
}

int irp_check_write_json(const char *path, const irp_check_result *rs, size_t n, char *err,
                         size_t errlen)
{
    json_t *root = json_object(), *list = json_array();
    if (!root || !list) {
        json_decref(root);
        json_decref(list);
        snprintf(err, errlen, "cannot write %s: out of memory", path);
        return IRP_ENOMEM;
    }
    json_object_set_new(root, "tool", json_string("irp check"));
    json_object_set_new(root, "version", json_string(IRP_VERSION));
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, playbook_json(&rs[i]));
    json_object_set_new(root, "playbooks", list);
    FILE *f = open_report(path, err, errlen);
    if (!f) {
        json_decref(root);
        return IRP_EIO;
    }
    int rc = json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0 ? 0 : IRP_EIO;
    fputc('\n', f);
    json_decref(root);
    int frc = finish_file(f, path, err, errlen);
    if (rc && !frc)
        snprintf(err, errlen, "cannot write %s: out of memory", path);
    return rc ? rc : frc;
}
