/* stubs: symbols the linked modules take from the binaries' main.c, which
 * the unit tests leave out. No unit test reaches them. */
#include "../../worker/worker.h"

#include <stdio.h>
#include <stdlib.h>

/* worker/main.c: fetcher.c and runner.c call it when a job ends. */
void worker_maybe_exit(struct worker *w)
{
    (void)w;
    fprintf(stderr, "unit-tests: worker_maybe_exit called\n");
    abort();
}
