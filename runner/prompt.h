/* Internal: questions to the operator on the controlling terminal
 * (/dev/tty), one at a time, in the order asked, while the run goes on. */
#ifndef IRP_PROMPT_H
#define IRP_PROMPT_H

#include <uv.h>

#include "irp/engine.h"
#include "liveview.h"

typedef struct prompter prompter;

prompter *prompter_new(uv_loop_t *loop, liveview *view);
/* The engine's interface to it. */
irp_prompter prompter_iface(prompter *p);
/* Lines typed while no question is open go to fn (a simulation's pause
 * key); the terminal is read from now on. */
void prompter_on_idle_line(prompter *p, void (*fn)(void *ctx, const char *line), void *ctx);
/* Closes the terminal; freed in its close callback. */
void prompter_close(prompter *p);

#endif
