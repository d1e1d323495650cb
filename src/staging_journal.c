/* staging_journal.c - framing, writing and reading journal lines
 * (staging_journal.h); the encoding of free text in a field. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "staging_journal.h"

static uint32_t
fnv32(const char *s, size_t n)
{
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char) s[i];
    h *= 16777619u;
  }
  return h;
}

int
journal_write(int fd, const char *record)
{
  char line[JOURNAL_RECORD_MAX + 16];
  size_t n = strlen(record);
  int m;
  ssize_t w;

  if (n > JOURNAL_RECORD_MAX || memchr(record, '\n', n))
    return -EINVAL;
  memcpy(line, record, n);
  m = snprintf(line + n, sizeof line - n, " #%08" PRIx32 "\n", fnv32(record, n));
  if (m < 0)
    return -EIO;
  n += (size_t) m;
  /* One write(2) of a short line to an O_APPEND file: a crash leaves it
   * whole or cut short, and a short one is dropped when read. */
  do
    w = write(fd, line, n);
  while (w < 0 && errno == EINTR);
  if (w < 0)
    return -errno;
  return (size_t) w == n ? 0 : -EIO;
}

/* The record of a whole line, NUL-terminated in place, or NULL when the
 * line is cut short or fails its hash. */
static char *
check_line(char *line, size_t n)
{
  char *hash;
  uint32_t want;

  if (n < 12 || line[n - 1] != '\n')
    return NULL;
  hash = strrchr(line, '#');
  if (hash == NULL || hash == line || hash[-1] != ' ' ||
      sscanf(hash + 1, "%8" SCNx32, &want) != 1 ||
      fnv32(line, (size_t) (hash - line - 1)) != want)
    return NULL;
  hash[-1] = '\0';
  return line;
}

int
journal_read(int fd, int (*apply)(void *arg, char *record), void *arg,
             struct journal_scan *scan)
{
  FILE *f;
  char *line = NULL;
  size_t cap = 0;
  off_t pos = 0;
  ssize_t n;
  int dfd, rc = 0;

  memset(scan, 0, sizeof *scan);
  dfd = dup(fd);                        /* fclose must not close the caller's fd */
  if (dfd < 0)
    return -errno;
  f = fdopen(dfd, "r");
  if (f == NULL) {
    rc = -errno;
    close(dfd);
    return rc;
  }
  rewind(f);
  while ((n = getline(&line, &cap, f)) > 0) {
    char *rec = check_line(line, (size_t) n);

    if (rec == NULL) {
      /* Only acceptable as the last line: what a crash mid-append leaves. */
      scan->torn = true;
      if (getline(&line, &cap, f) > 0)
        rc = -EIO;
      break;
    }
    rc = apply(arg, rec);
    if (rc < 0)
      break;
    pos += n;
    scan->lines++;
    scan->good_end = pos;
  }
  free(line);
  fclose(f);
  return rc;
}

/* ---- free text in a field ----------------------------------------------------- */

void
staging_encode(const char *in, char *out, size_t cap)
{
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;

  if (cap == 0)
    return;
  if (*in == '\0' || strcmp(in, "-") == 0) {
    snprintf(out, cap, "%s", *in ? "%2D" : "-");
    return;
  }
  for (const unsigned char *p = (const unsigned char *) in; *p && o + 4 <= cap; p++) {
    if (*p > ' ' && *p < 0x7f && *p != '%' && *p != '#') {
      out[o++] = (char) *p;
    } else {
      out[o++] = '%';
      out[o++] = hex[*p >> 4];
      out[o++] = hex[*p & 15];
    }
  }
  out[o] = '\0';
}

static int
hexval(char c)
{
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

int
staging_decode(const char *in, char *out, size_t cap)
{
  size_t o = 0;

  if (strcmp(in, "-") == 0) {
    if (cap)
      out[0] = '\0';
    return 0;
  }
  for (const char *p = in; *p; p++) {
    int c = (unsigned char) *p;
    if (c == '%') {
      int h = hexval(p[1]), l = h < 0 ? -1 : hexval(p[2]);
      if (h < 0 || l < 0)
        return -EINVAL;
      c = h * 16 + l;
      p += 2;
    }
    if (o + 1 >= cap)
      return -ENAMETOOLONG;
    out[o++] = (char) c;
  }
  out[o] = '\0';
  return 0;
}
