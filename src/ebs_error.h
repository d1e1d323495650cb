/* ebs_error.h - filling struct ebs_error (internal to the transport).
 *
 * The public half (ebs_error_errno, ebs_error_string, ebs_error_is) is
 * declared in ebs.h; this is how the transport builds the errors.
 */
#ifndef EBSFS_EBS_ERROR_H
#define EBSFS_EBS_ERROR_H

#include <stddef.h>

#include "ebs.h"

void ebs_error_clear(struct ebs_error *e);
/* A local failure (no service answer): message and errno. */
void ebs_error_set(struct ebs_error *e, int errnum, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
/* A service error answer: code from the x-amzn-ErrorType header (text before
 * ':'; may be NULL), else from the body's code/Code/__type (text after '#');
 * Message/message and Reason from the JSON body (which may be anything: it
 * is parsed defensively and never trusted to be JSON).  Sets errnum. */
void ebs_error_from_response(struct ebs_error *e, int http_status,
                             const char *error_type_header,
                             const char *body, size_t body_len,
                             const char *request_id);

#endif
