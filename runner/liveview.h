/* Internal: the live view of a run on a terminal -- every active step
 * with its state and elapsed time, redrawn in place. */
#ifndef IRP_LIVEVIEW_H
#define IRP_LIVEVIEW_H

#include <stdbool.h>
#include <stdio.h>

#include "irp/engine.h"

typedef struct liveview liveview;

/* Draws to `out` (a terminal) every 250 ms and on liveview_poke(). */
liveview *liveview_new(uv_loop_t *loop, FILE *out, bool color, const irp_playbook *pb,
                       const char *run_id, irp_clock *clock);
void liveview_attach(liveview *lv, irp_engine *e);
/* Something changed: redraw soon. */
void liveview_poke(liveview *lv);
/* While a question is on the terminal the view holds still; when it
 * resumes it draws below what was written meanwhile. */
void liveview_pause(liveview *lv, bool paused);
/* A simulation's clock was paused or resumed (shown in the header). */
void liveview_clock_paused(liveview *lv, bool paused);
/* Last frame, then the view is gone (freed after its timer closes). */
void liveview_finish(liveview *lv);

#endif
