/* kernel_readahead.c - read_ahead_kb of our FUSE mount (kernel_readahead.h). */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_readahead.h"

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void
unescape(char *s)
{
  char *out = s;

  while (*s) {
    if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
        s[3] >= '0' && s[3] <= '7') {
      *out++ = (char) ((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
      s += 4;
    } else {
      *out++ = *s++;
    }
  }
  *out = '\0';
}

/* The "MAJ:MIN" of the last fuse.ebsfs mount at mountpoint: the newest one
 * is ours when several are stacked there. */
static int
find_device(const char *mountpoint, char *dev, size_t devlen)
{
  FILE *f = fopen("/proc/self/mountinfo", "re");
  char *line = NULL;
  size_t cap = 0;
  int found = -ENOENT;

  if (f == NULL)
    return -errno;
  while (getline(&line, &cap, f) > 0) {
    /* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE ... */
    char *save = NULL, *id, *parent, *majmin, *root, *mnt, *sep;

    sep = strstr(line, " - ");
    if (sep == NULL || strncmp(sep + 3, "fuse.ebsfs ", 11) != 0)
      continue;
    id = strtok_r(line, " ", &save);
    parent = strtok_r(NULL, " ", &save);
    majmin = strtok_r(NULL, " ", &save);
    root = strtok_r(NULL, " ", &save);
    mnt = strtok_r(NULL, " ", &save);
    if (id == NULL || parent == NULL || majmin == NULL || root == NULL || mnt == NULL)
      continue;
    unescape(mnt);
    if (strcmp(mnt, mountpoint) == 0 && strlen(majmin) < devlen) {
      strcpy(dev, majmin);
      found = 0;
    }
  }
  free(line);
  fclose(f);
  return found;
}

int
kernel_readahead_set(const char *mountpoint, unsigned kb)
{
  char dev[32], path[96];
  FILE *f;
  int r = find_device(mountpoint, dev, sizeof dev);

  if (r < 0)
    return r;
  snprintf(path, sizeof path, "/sys/class/bdi/%s/read_ahead_kb", dev);
  f = fopen(path, "we");
  if (f == NULL)
    return -errno;
  if (fprintf(f, "%u\n", kb) < 0) {
    r = -EIO;
    fclose(f);
    return r;
  }
  if (fclose(f) != 0)
    return -errno;
  return 0;
}
