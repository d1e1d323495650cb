/* staging_journal.h - the line format of the staging journal (staging.c).
 *
 * A record is one line of space-separated fields followed by " #" and the
 * FNV-1a 32-bit hash of the record in hex: "W 42 #1c9d0b7f\n".  Appends are
 * single write(2)s to an O_APPEND file, so a crash leaves the last line
 * whole or cut short; the reader tells a cut-short (torn) last line, which
 * the caller drops, from damage further up, which it must refuse.  What the
 * records mean is staging.c's business.
 */
#ifndef EBSFS_STAGING_JOURNAL_H
#define EBSFS_STAGING_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define JOURNAL_RECORD_MAX 12288        /* longest record (three encoded 1 KiB texts fit) */

/* Append record (no newline) to fd.  0 or -errno. */
int journal_write(int fd, const char *record);

struct journal_scan {
  size_t lines;                 /* whole, good lines applied */
  off_t good_end;               /* offset just past the last good line */
  bool torn;                    /* the last line is cut short or fails its hash */
};

/* Read fd from its start, calling apply(arg, record) for each good line
 * (the record NUL-terminated, without its hash; apply may modify it).
 * Returns 0 (scan filled; a torn last line is reported, not applied),
 * apply's negative return, -EIO when a bad line is followed by more lines
 * (damage), or another -errno. */
int journal_read(int fd, int (*apply)(void *arg, char *record), void *arg,
                 struct journal_scan *scan);

/* Free text in a field: %XX-encoded so it holds no space, '#', '%' or
 * control byte; "" is written "-" (and "-" itself "%2D"). */
void staging_encode(const char *in, char *out, size_t cap);
int staging_decode(const char *in, char *out, size_t cap);

#endif
