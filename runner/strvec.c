#include <stdlib.h>
#include <string.h>

#include "irp/error.h"
#include "strvec.h"

int strvec_push_owned(strvec *sv, char *s)
{
    if (!s)
        return IRP_ENOMEM;
    if (sv->n + 2 > sv->cap) {
        size_t cap = sv->cap ? sv->cap * 2 : 16;
        char **v = realloc(sv->v, cap * sizeof *v);
        if (!v) {
            free(s);
            return IRP_ENOMEM;
        }
        sv->v = v;
        sv->cap = cap;
    }
    sv->v[sv->n++] = s;
    sv->v[sv->n] = NULL;
    return 0;
}

int strvec_push(strvec *sv, const char *s)
{
    return strvec_push_owned(sv, strdup(s));
}

void strvec_release(strvec *sv)
{
    for (size_t i = 0; i < sv->n; i++)
        free(sv->v[i]);
    free(sv->v);
    sv->v = NULL;
    sv->n = sv->cap = 0;
}
