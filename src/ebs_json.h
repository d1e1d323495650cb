/* ebs_json.h - the EBS response bodies parsed into ebs.h's structs.
 *
 * Bodies come from the network, so every parser here assumes a hostile
 * server: sizes are capped (the body itself by the transport's struct buf,
 * entry counts and token lengths here), types are checked, and a page's
 * tokens are copied into ONE storage block per page (no per-entry malloc:
 * a 10,000-entry page is two allocations).  Returns 0, or -EPROTO with a
 * reason in err for a body that is not what the API defines.
 */
#ifndef EBSFS_EBS_JSON_H
#define EBSFS_EBS_JSON_H

#include <stddef.h>

#include "ebs.h"

#define EBS_JSON_MAX_PAGE_BODY (16u * 1024 * 1024)  /* a 10,000-entry page is ~3 MiB */
#define EBS_JSON_MAX_SMALL_BODY (256u * 1024)       /* StartSnapshot, CompleteSnapshot, errors */
#define EBS_JSON_MAX_ENTRIES 10000                  /* maxResults' upper bound */
#define EBS_JSON_MAX_TOKEN 1024                     /* API says <= 256; some slack, then refuse */

int ebs_json_block_page(const char *body, size_t len, struct ebs_block_page *out,
                        char *err, size_t errlen);
int ebs_json_changed_page(const char *body, size_t len, struct ebs_changed_page *out,
                          char *err, size_t errlen);
int ebs_json_snapshot_info(const char *body, size_t len, struct ebs_snapshot_info *out,
                           char *err, size_t errlen);
/* {"Status": "completed"} -> status (>= 16 bytes). */
int ebs_json_status(const char *body, size_t len, char *status, size_t statuslen,
                    char *err, size_t errlen);

#endif
