/* buf.h - growable byte buffers with a hard cap.
 *
 * Anything a server can make us grow (response bodies, JSON pages, headers)
 * goes through a struct buf whose max is set by the caller: a hostile or
 * broken server gets -E2BIG, never unbounded memory.
 */
#ifndef EBSFS_BUF_H
#define EBSFS_BUF_H

#include <stddef.h>

struct buf {
  char *data;      /* always NUL-terminated when non-NULL (not counted in len) */
  size_t len;
  size_t cap;
  size_t max;      /* the most bytes len may reach */
};

void buf_init(struct buf *b, size_t max);
/* Append n bytes.  Returns 0, -E2BIG past max (buffer unchanged), or -ENOMEM. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_str(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_reset(struct buf *b);          /* len = 0, keeps memory */
/* Hand the data to the caller (who frees it) and leave b empty. */
char *buf_steal(struct buf *b);
void buf_free(struct buf *b);

#endif
