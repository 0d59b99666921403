/* Internal: a growable NULL-terminated vector of malloc'd strings, for
 * argv and environments. */
#ifndef IRP_STRVEC_H
#define IRP_STRVEC_H

#include <stddef.h>

typedef struct strvec {
    char **v;        /* NULL-terminated once anything was pushed */
    size_t n, cap;
} strvec;

#define STRVEC_INIT { NULL, 0, 0 }

int strvec_push(strvec *sv, const char *s);       /* copies s */
int strvec_push_owned(strvec *sv, char *s);       /* takes s (freed on failure) */
void strvec_release(strvec *sv);

#endif
