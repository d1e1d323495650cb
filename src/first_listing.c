/* first_listing.c - grain 0's ListSnapshotBlocks page, listed on a thread
 * while image_open mounts with a short one (first_listing.h).
 *
 * The thread lists, then waits for image_open's decision (the index to give
 * the page to, and how; or none, when the open failed), then installs the
 * page and ends.  first_listing_end() joins it.
 */
#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block_index.h"
#include "ebs.h"
#include "first_listing.h"
#include "log.h"

enum decision { UNDECIDED, DROP, PRELOAD, FINISH };

struct first_listing {
  struct ebs_client *client;
  char snapshot_id[EBS_SNAPSHOT_ID_MAX + 1];
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  enum decision what;                   /* guarded by lock */
  struct block_index *idx;              /* with PRELOAD or FINISH */
};

static void
decide(struct first_listing *fl, enum decision what, struct block_index *idx)
{
  pthread_mutex_lock(&fl->lock);
  if (fl->what == UNDECIDED) {
    fl->what = what;
    fl->idx = idx;
  }
  pthread_cond_signal(&fl->cond);
  pthread_mutex_unlock(&fl->lock);
}

static void *
run(void *arg)
{
  struct first_listing *fl = arg;
  struct ebs_block_page page;
  struct ebs_error lerr, err;
  enum decision what;
  char msg[800];
  int rc;

  memset(&page, 0, sizeof page);
  memset(&lerr, 0, sizeof lerr);
  memset(&err, 0, sizeof err);
  rc = ebs_list_snapshot_blocks(fl->client, fl->snapshot_id, NULL, 0,
                                (int) BLOCK_INDEX_GRAIN, &page, &lerr);
  if (rc > 0)
    rc = -rc;

  pthread_mutex_lock(&fl->lock);
  while (fl->what == UNDECIDED)
    pthread_cond_wait(&fl->cond, &fl->lock);
  what = fl->what;
  pthread_mutex_unlock(&fl->lock);

  switch (what) {
  case FINISH:
    if (rc < 0)
      log_warn("%s: listing the first blocks: %s", fl->snapshot_id,
               ebs_error_string(&lerr, msg, sizeof msg));
    /* A failure to list more of grain 0 is logged by the index's lister. */
    (void) block_index_finish_preload(fl->idx, rc == 0 ? &page : NULL, rc, &lerr, &err);
    break;
  case PRELOAD:
    /* The short page was grain 0 already, or was refused: this one is
     * installed only if grain 0 is still unlisted. */
    if (rc == 0 && block_index_preload(fl->idx, &page, &err) < 0)
      log_debug(LOG_SUB_INDEX, "%s: grain 0's page: %s", fl->snapshot_id,
                ebs_error_string(&err, msg, sizeof msg));
    break;
  case DROP:
  case UNDECIDED:
    break;
  }
  ebs_block_page_free(&page);           /* emptied when the index took it */
  return NULL;
}

struct first_listing *
first_listing_start(struct ebs_client *client, const char *snapshot_id)
{
  struct first_listing *fl = calloc(1, sizeof *fl);
  int e;

  if (fl == NULL)
    return NULL;
  fl->client = client;
  snprintf(fl->snapshot_id, sizeof fl->snapshot_id, "%s", snapshot_id);
  fl->what = UNDECIDED;
  if (pthread_mutex_init(&fl->lock, NULL) != 0) {
    free(fl);
    return NULL;
  }
  if (pthread_cond_init(&fl->cond, NULL) != 0) {
    pthread_mutex_destroy(&fl->lock);
    free(fl);
    return NULL;
  }
  if ((e = pthread_create(&fl->thread, NULL, run, fl)) != 0) {
    log_debug(LOG_SUB_INDEX, "%s: no thread for grain 0's page: %s", snapshot_id, strerror(e));
    pthread_cond_destroy(&fl->cond);
    pthread_mutex_destroy(&fl->lock);
    free(fl);
    return NULL;
  }
  return fl;
}

void
first_listing_attach(struct first_listing *fl, struct block_index *idx, bool head)
{
  if (fl)
    decide(fl, head ? FINISH : PRELOAD, idx);
}

void
first_listing_end(struct first_listing *fl)
{
  if (fl == NULL)
    return;
  decide(fl, DROP, NULL);               /* no effect once attached */
  pthread_join(fl->thread, NULL);
  pthread_cond_destroy(&fl->cond);
  pthread_mutex_destroy(&fl->lock);
  free(fl);
}
