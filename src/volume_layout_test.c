/* volume_layout_test.c - the volume layout parser against real ext4 images
 * made by mkfs.ext4 -d from a tree whose every 4 KiB block names its file
 * and offset, so any range the parser lists can be read back and identified.
 * A hand-made fixture could only agree with the parser's own reading of the
 * format; mkfs.ext4 is the authority on where things lie.  Checked: every
 * directory's blocks and the journal superblock are listed, each large
 * file's ranges reproduce its data in order, the limits hold, and the
 * hints come before the reads; damaged, failing and foreign input is
 * volume_layout_test_damaged.c's.  Skips (77) without mkfs.ext4. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testing.h"
#include "volume_layout.h"
#include "volume_layout_test.h"

struct entry {
  const char *path, *name;
  uint64_t size;
  bool dir;
};

/* Parents before children.  Sizes straddle the 1 MiB default threshold
 * ("almost" is a block short of it, big01 exactly it), and big40 is longer
 * than the default 32 MiB file_bytes. */
static const struct entry tree[] = {
  { "dir00", "dir00", 0, true }, { "dir01", "dir01", 0, true },
  { "dir02", "dir02", 0, true }, { "dir03", "dir03", 0, true },
  { "dir04", "dir04", 0, true }, { "dir05", "dir05", 0, true },
  { "dir02/sub", "sub", 0, true },
  { "dir00/small0", "small0", 3000, false },
  { "dir01/small1", "small1", 12288, false },
  { "dir02/sub/almost", "almost", MIB - BLK, false },
  { "dir03/big01", "big01", MIB, false },
  { "big03", "big03", 3 * MIB, false },
  { "dir02/sub/big10", "big10", 10 * MIB, false },
  { "dir05/big40", "big40", 40 * MIB, false },
};
#define NTREE (sizeof tree / sizeof tree[0])
#define BIG40 (NTREE - 1)

static char tmpdir[256], srcdir[300], img1[300], img2[300], img3[300], mkfs[256];
static const char *cur_phase;
static int phase_failures;
static uint32_t listed_ranges[NTREE];   /* by check_files, per tree entry */

/* Names the case a failure came from: the same checks run on several
 * images, and CHECK gives only a line. */
void
phase(const char *name)
{
  if (cur_phase && test_failures > phase_failures)
    fprintf(stderr, "  ^ in: %s\n", cur_phase);
  cur_phase = name;
  phase_failures = test_failures;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  remove(path);
  return 0;
}

static void
cleanup(void)
{
  if (tmpdir[0] && nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
    perror(tmpdir);
}

uint64_t
min64(uint64_t a, uint64_t b)
{
  return a < b ? a : b;
}

void
put_le(uint8_t *p, uint64_t x, int n)
{
  for (int i = 0; i < n; i++)
    p[i] = (uint8_t) (x >> (8 * i));
}

static uint32_t
get_be32(const uint8_t *p)
{
  return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

uint64_t
splitmix(uint64_t x)
{
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* ---- volumes --------------------------------------------------------- */


int
vol_read(void *ctx, uint64_t off, void *buf, size_t len)
{
  struct vol *v = ctx;
  uint8_t *p = buf;

  /* The parser is told the volume's size: reading past it means a field
   * from the volume was used unchecked. */
  if (off > v->size || len > v->size - off) {
    v->oob++;
    return -EINVAL;
  }
  if (v->fail_after >= 0 && v->reads >= v->fail_after) {
    v->failed = true;
    return -EIO;
  }
  v->reads++;
  for (size_t i = 0; i < v->nhints; i++)
    if (off < v->hint_off[i] + v->hint_len[i] && v->hint_off[i] < off + len)
      v->hint_read[i] = true;
  if (v->kind == VOL_FD) {
    ssize_t n = pread(v->fd, p, len, (off_t) off);   /* short only at EOF */
    if (n < 0)
      return -errno;
    memset(p + n, 0, len - (size_t) n);
  } else if (v->kind == VOL_MEM) {
    size_t n = off < v->memlen ? (size_t) min64(len, v->memlen - off) : 0;
    if (n)
      memcpy(p, v->mem + off, n);
    memset(p + n, 0, len - n);
  } else {
    for (size_t i = 0; i < len; i++)
      p[i] = (uint8_t) (splitmix((off + i) / 8) >> (8 * ((off + i) % 8)));
  }
  return 0;
}

/* The parser's hints: inside the volume, each range once, before any read
 * of it (the window is what is hinted and not read yet). */
static void
vol_hint(void *ctx, uint64_t off, uint64_t len, enum layout_hint what)
{
  struct vol *v = ctx;
  uint64_t unread = 0;
  size_t i;

  if (len == 0 || off > v->size || len > v->size - off) {
    v->hint_problems++;
    return;
  }
  if (what == LAYOUT_HINT_META) {
    if (v->nmeta_hints < 64) {
      v->meta_hints[v->nmeta_hints].off = off;
      v->meta_hints[v->nmeta_hints].len = len;
    }
    v->nmeta_hints++;
    return;
  }
  if (v->nhints == 64) {
    v->hint_problems++;
    return;
  }
  for (i = 0; i < v->nhints; i++)
    if (off < v->hint_off[i] + v->hint_len[i] && v->hint_off[i] < off + len)
      v->hint_problems++;
  v->hint_off[i] = off;
  v->hint_len[i] = len;
  v->hint_at[i] = v->reads;
  v->hint_read[i] = false;
  v->nhints++;
  if (len > v->hint_max)
    v->hint_max = len;
  for (i = 0; i < v->nhints; i++)
    if (!v->hint_read[i])
      unread += v->hint_len[i];
  if (unread > v->hint_ahead)
    v->hint_ahead = unread;
}

/* ---- the source tree and the images ---------------------------------- */

/* The tree entry a block's header names, and its offset; -1 if none. */
static int
parse_hdr(const uint8_t *b, uint64_t *foff)
{
  char s[HDR_LEN + 1], name[9];
  unsigned long long o;

  memcpy(s, b, HDR_LEN);
  s[HDR_LEN] = '\0';
  if (s[HDR_LEN - 1] != '\n' || sscanf(s, "FILE %8s OFF %14llu", name, &o) != 2)
    return -1;
  for (size_t i = 0; i < NTREE; i++)
    if (!tree[i].dir && strcmp(tree[i].name, name) == 0) {
      *foff = o;
      return (int) i;
    }
  return -1;
}

static bool
write_file(const char *path, const struct entry *e)
{
  static uint8_t buf[MIB];
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

  if (fd < 0)
    return false;
  for (uint64_t off = 0; off < e->size; off += MIB) {
    size_t n = (size_t) min64(MIB, e->size - off);
    char hdr[64];

    for (size_t b = 0; b < n; b += BLK) {
      snprintf(hdr, sizeof hdr, "FILE %-8s OFF %014llu\n", e->name,
               (unsigned long long) (off + b));
      memset(buf + b, 'a' + (int) ((off + b) / BLK % 26), min64(BLK, n - b));
      memcpy(buf + b, hdr, min64(HDR_LEN, n - b));
    }
    if (write(fd, buf, n) != (ssize_t) n) {
      close(fd);
      return false;
    }
  }
  return close(fd) == 0;
}

static bool
build_tree(void)
{
  char path[512];

  if (mkdir(srcdir, 0755) != 0)
    return false;
  for (size_t i = 0; i < NTREE; i++) {
    snprintf(path, sizeof path, "%s/%s", srcdir, tree[i].path);
    if (tree[i].dir ? mkdir(path, 0755) != 0 : !write_file(path, &tree[i]))
      return false;
  }
  return true;
}

static bool
find_mkfs(void)
{
  const char *env = getenv("PATH");
  char dirs[4096], *save, *d;

  snprintf(dirs, sizeof dirs, "%s:/sbin:/usr/sbin", env ? env : "/bin:/usr/bin");
  for (d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
    snprintf(mkfs, sizeof mkfs, "%s/mkfs.ext4", d);
    if (access(mkfs, X_OK) == 0)
      return true;
  }
  return false;
}

/* A sparse image of size bytes holding an ext4 made from srcdir.  Image 2
 * (partitioned) has its filesystem at PART_OFF, without flex_bg and with
 * 32 MiB groups: each group then begins with its own bitmaps and inode
 * table, so big40 cannot lie in one piece and its ranges must be walked. */
static bool
make_image(char *path, uint64_t size, bool partitioned)
{
  char offopt[64], blocks[32];
  char *plain[] = { mkfs, "-q", "-F", "-d", srcdir, "-b", "4096", path, NULL };
  /* Image 3: 4 MiB groups of 8 inodes of 1 KiB (mkfs's least), so the
   * tree's 31 inodes lie in 4 groups, each group's used inodes a table of
   * its own.  Without meta_bg, which such small groups would bring. */
  char *spread[] = { mkfs, "-q", "-F", "-d", srcdir, "-b", "4096", "-g", "1024",
                     "-I", "1024", "-N", "256", "-O", "^meta_bg,^resize_inode", path, NULL };
  char *part[] = { mkfs, "-q", "-F", "-d", srcdir, "-b", "4096", "-O", "^flex_bg",
                   "-g", "8192", "-E", offopt, path, blocks, NULL };
  int fd, status;
  pid_t pid;

  snprintf(offopt, sizeof offopt, "offset=%llu", PART_OFF);
  snprintf(blocks, sizeof blocks, "%llu", PART_FS / BLK);    /* with -b: blocks */
  if ((fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644)) < 0)
    return false;
  if (ftruncate(fd, (off_t) size) != 0) {
    close(fd);
    return false;
  }
  if (close(fd) != 0 || (pid = fork()) < 0)
    return false;
  if (pid == 0) {
    execv(mkfs, partitioned ? part : size == IMG3_SIZE ? spread : plain);
    _exit(127);
  }
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* ---- checks ---------------------------------------------------------- */

static bool
in_vol(const struct layout_range *r, uint64_t size)
{
  return r->len > 0 && r->len <= size && r->off <= size - r->len;
}

/* What the header promises whatever the input; NULL, or what is wrong.
 * Meta may pass meta_bytes by a journal superblock per filesystem: the
 * limit is on directory bytes. */
const char *
layout_problem(const struct volume_layout *l, uint64_t size, const struct layout_limits *lim)
{
  uint64_t meta = 0;

  if ((l->nmeta && !l->meta) || (l->nfiles && !l->files) || (l->nranges && !l->ranges) ||
      (l->nsmall && !l->small))
    return "a count without its array";
  if (l->nsmall > lim->max_small)
    return "more small ranges than max_small";
  for (size_t i = 0; i < l->nsmall; i++) {
    if (!in_vol(&l->small[i], size))
      return "a small file's range outside the volume (or empty)";
    if (i > 0 && l->small[i].off < l->small[i - 1].off + l->small[i - 1].len)
      return "small ranges not sorted, or overlapping";
  }
  if (l->nfilesystems == 0 && (l->nmeta || l->nfiles || l->nsmall))
    return "hints without a filesystem";
  for (size_t i = 0; i < l->nmeta; i++) {
    if (!in_vol(&l->meta[i], size))
      return "a meta range outside the volume (or empty)";
    meta += l->meta[i].len;
  }
  if (meta > lim->meta_bytes + l->nfilesystems * 64 * KIB)
    return "meta ranges past meta_bytes";
  if (l->nfiles > lim->max_files)
    return "more files than max_files";
  for (size_t i = 0; i < l->nfiles; i++) {
    const struct layout_file *f = &l->files[i];
    uint64_t total = 0;

    if (i > 0 && f->start < l->files[i - 1].start)
      return "files not sorted by start";
    if (f->nranges == 0 || f->first_range > l->nranges || f->nranges > l->nranges - f->first_range)
      return "a file's ranges outside ranges[]";
    if (l->ranges[f->first_range].off != f->start)
      return "a file's first range is not at its start";
    for (uint32_t k = 0; k < f->nranges; k++) {
      if (!in_vol(&l->ranges[f->first_range + k], size))
        return "a file range outside the volume (or empty)";
      total += l->ranges[f->first_range + k].len;
    }
    if (total > lim->file_bytes)
      return "a file listed past file_bytes";
    /* Its last byte is in its last range, at the end. */
    if (f->end != 0 && f->end != l->ranges[f->first_range + f->nranges - 1].off
                                  + l->ranges[f->first_range + f->nranges - 1].len)
      return "a file's end is not where its last range ends";
  }
  return NULL;
}

/* Scans and checks those promises and that nothing was read outside the
 * volume; rc, or -10000 with out emptied when a promise is broken, so that
 * callers do not go on to read back a nonsensical layout. */
int
scan_checked(struct vol *v, const struct layout_limits *lim, struct volume_layout *l)
{
  const char *bad;
  int rc;

  v->oob = 0;
  v->nhints = 0;
  v->nmeta_hints = 0;
  v->hint_problems = 0;
  v->hint_ahead = 0;
  v->hint_max = 0;
  rc = volume_layout_scan_hinted(vol_read, vol_hint, v, v->size, lim, l);
  CHECK_INTEQ(v->oob, 0);
  CHECK_INTEQ(v->hint_problems, 0);
  /* Within the window, but for the range that crossed it; and every hint
   * was read (no fetch for nothing), unless a read failed. */
  CHECK(v->hint_ahead <= lim->hint_ahead_bytes + v->hint_max);
  /* Every meta range was hinted when found: the same list, in order. */
  if (rc == 0) {
    CHECK_INTEQ(v->nmeta_hints, l->nmeta);
    for (size_t i = 0; i < v->nmeta_hints && i < l->nmeta && i < 64; i++)
      CHECK(v->meta_hints[i].off == l->meta[i].off && v->meta_hints[i].len == l->meta[i].len);
  }
  for (size_t i = 0; i < v->nhints && !v->failed; i++)
    if (!v->hint_read[i]) {
      fprintf(stderr, "hinted %llu+%llu, never read\n", (unsigned long long) v->hint_off[i],
              (unsigned long long) v->hint_len[i]);
      test_failures++;
    }
  if ((bad = layout_problem(l, v->size, lim)) != NULL) {
    fprintf(stderr, "layout: %s\n", bad);
    test_failures++;
    volume_layout_free(l);
    return -10000;
  }
  return rc;
}

/* ext4 writes a directory entry as inode, rec_len, name_len, file type
 * (2 directory, 1 regular file), name. */
static bool
has_dirent(const uint8_t *b, size_t len, const char *name, bool dir)
{
  size_t n = strlen(name);

  for (size_t p = 8; p + n <= len; p++)
    if (b[p - 2] == n && b[p - 1] == (dir ? 2 : 1) && memcmp(b + p, name, n) == 0
        && (size_t) (b[p - 4] | b[p - 3] << 8) >= 8 + n)
      return true;
  return false;
}

/* Reads every meta range back: counts journal superblocks (jbd2 magic and
 * a superblock type), totals the rest as directory bytes, and marks each
 * tree entry whose directory entry some range holds. */
static void
read_meta(struct vol *v, const struct volume_layout *l, uint64_t min_start, bool found[NTREE],
          uint64_t *dir_bytes, unsigned *journals)
{
  memset(found, 0, NTREE * sizeof *found);
  *dir_bytes = 0;
  *journals = 0;
  for (size_t i = 0; i < l->nmeta; i++) {
    const struct layout_range *r = &l->meta[i];
    uint8_t *b;

    CHECK(r->off >= min_start);
    if (r->len > 64 * MIB || (b = malloc((size_t) r->len)) == NULL) {
      CHECK(!"meta range too long to read back");
      continue;
    }
    CHECK_INTEQ(vol_read(v, r->off, b, (size_t) r->len), 0);
    if (r->len >= 12 && get_be32(b) == 0xc03b3998u) {
      CHECK(get_be32(b + 4) == 3 || get_be32(b + 4) == 4);
      ++*journals;
    } else {
      *dir_bytes += r->len;
    }
    for (size_t k = 0; k < NTREE; k++)
      if (has_dirent(b, (size_t) r->len, tree[k].name, tree[k].dir))
        found[k] = true;
    free(b);
  }
}

/* Identifies each listed file by the header of its first block, then reads
 * the header of every 4 KiB of its ranges in order: each must name the
 * same file at the next offset, and together they must be its first
 * min(size, file_bytes) bytes; end is set when that is the whole file.
 * seen[i]: how often tree[i] was listed. */
static void
check_files(struct vol *v, const struct volume_layout *l, const struct layout_limits *lim,
            uint64_t min_start, int seen[NTREE])
{
  memset(seen, 0, NTREE * sizeof *seen);
  memset(listed_ranges, 0, sizeof listed_ranges);
  for (size_t i = 0; i < l->nfiles; i++) {
    const struct layout_file *f = &l->files[i];
    uint8_t b[HDR_LEN];
    uint64_t foff = 1, total = 0;
    bool bad = false;
    int idx = -1;

    CHECK(f->start >= min_start);
    if (vol_read(v, f->start, b, HDR_LEN) != 0 || (idx = parse_hdr(b, &foff)) < 0 || foff != 0) {
      fprintf(stderr, "files[%zu] at %llu: not the first block of a test file\n", i,
              (unsigned long long) f->start);
      test_failures++;
      continue;
    }
    seen[idx]++;
    listed_ranges[idx] = f->nranges;
    for (uint32_t k = 0; k < f->nranges && !bad; k++) {
      const struct layout_range *r = &l->ranges[f->first_range + k];

      for (uint64_t pos = 0; pos < r->len && !bad; pos += BLK)
        if (vol_read(v, r->off + pos, b, HDR_LEN) != 0 || parse_hdr(b, &foff) != idx
            || foff != total + pos) {
          fprintf(stderr, "%s: range %u (%llu+%llu) +%llu does not hold its offset %llu\n",
                  tree[idx].name, k, (unsigned long long) r->off, (unsigned long long) r->len,
                  (unsigned long long) pos, (unsigned long long) (total + pos));
          test_failures++;
          bad = true;
        }
      total += r->len;
    }
    if (!bad && total != min64(tree[idx].size, lim->file_bytes)) {
      fprintf(stderr, "%s: %llu bytes listed, expected %llu\n", tree[idx].name,
              (unsigned long long) total,
              (unsigned long long) min64(tree[idx].size, lim->file_bytes));
      test_failures++;
    } else if (!bad) {
      const struct layout_range *r = &l->ranges[f->first_range + f->nranges - 1];
      uint64_t end = total == tree[idx].size ? r->off + r->len : 0;

      if (f->end != end) {
        fprintf(stderr, "%s (%llu of %llu bytes listed): end %llu, expected %llu\n",
                tree[idx].name, (unsigned long long) total,
                (unsigned long long) tree[idx].size, (unsigned long long) f->end,
                (unsigned long long) end);
        test_failures++;
      }
    }
  }
}

/* Reads back every 4 KiB of every small file's range: each must be a block
 * of a test file of fewer than min_file_bytes, and bytes[i] totals what
 * was listed of tree[i]. */
static void
check_small(struct vol *v, const struct volume_layout *l, const struct layout_limits *lim,
            uint64_t min_start, uint64_t bytes[NTREE])
{
  memset(bytes, 0, NTREE * sizeof *bytes);
  for (size_t i = 0; i < l->nsmall; i++) {
    const struct layout_range *r = &l->small[i];

    CHECK(r->off >= min_start);
    for (uint64_t pos = 0; pos < r->len; pos += BLK) {
      uint8_t b[HDR_LEN];
      uint64_t foff = 0;
      int idx = -1;

      if (vol_read(v, r->off + pos, b, HDR_LEN) != 0 || (idx = parse_hdr(b, &foff)) < 0 ||
          tree[idx].size >= lim->min_file_bytes || foff >= tree[idx].size) {
        fprintf(stderr, "small[%zu] (%llu+%llu) +%llu: not a block of a small test file\n", i,
                (unsigned long long) r->off, (unsigned long long) r->len,
                (unsigned long long) pos);
        test_failures++;
        break;
      }
      bytes[idx] += BLK;
    }
  }
}

/* An image made from the tree, with default limits: one filesystem, its
 * journal superblock and every directory listed, every file of 1 MiB or
 * more listed once with its data, nothing before min_start (the
 * partition); big40 in at least min_big_ranges pieces. */
void
check_ext4(struct vol *v, uint64_t min_start, uint32_t min_big_ranges)
{
  struct layout_limits lim;
  struct volume_layout l;
  bool found[NTREE];
  int seen[NTREE], rc;
  uint64_t dir_bytes;
  unsigned journals;

  volume_layout_default_limits(&lim);
  CHECK_INTEQ(rc = scan_checked(v, &lim, &l), 0);
  if (rc == 0) {
    CHECK_INTEQ(l.nfilesystems, 1);
    CHECK(l.inodes_scanned > 0);
    read_meta(v, &l, min_start, found, &dir_bytes, &journals);
    CHECK_INTEQ(journals, 1);
    CHECK(dir_bytes > 0 && dir_bytes <= lim.meta_bytes);
    for (size_t i = 0; i < NTREE; i++)
      if (!found[i]) {
        fprintf(stderr, "no meta range holds the directory entry of %s\n", tree[i].path);
        test_failures++;
      }
    check_files(v, &l, &lim, min_start, seen);
    for (size_t i = 0; i < NTREE; i++)
      if (!tree[i].dir && seen[i] != (tree[i].size >= MIB)) {
        fprintf(stderr, "%s (%llu bytes) listed %d times\n", tree[i].path,
                (unsigned long long) tree[i].size, seen[i]);
        test_failures++;
      }
    CHECK_INTEQ(l.nfiles, 4);
    CHECK(listed_ranges[BIG40] >= min_big_ranges);
    /* Every file under 1 MiB: all its blocks, each once. */
    {
      uint64_t small_bytes[NTREE];

      check_small(v, &l, &lim, min_start, small_bytes);
      for (size_t i = 0; i < NTREE; i++)
        if (!tree[i].dir && tree[i].size < MIB &&
            small_bytes[i] != (tree[i].size + BLK - 1) / BLK * BLK) {
          fprintf(stderr, "%s (%llu bytes): %llu bytes listed as a small file's\n",
                  tree[i].path, (unsigned long long) tree[i].size,
                  (unsigned long long) small_bytes[i]);
          test_failures++;
        }
    }
  }
  volume_layout_free(&l);
}

/* ---- cases ----------------------------------------------------------- */

static void
limit_cases(struct vol *v)
{
  struct layout_limits def, lim;
  struct volume_layout l;
  bool found[NTREE];
  int seen[NTREE], rc;
  uint64_t dir_bytes;
  unsigned journals;

  volume_layout_default_limits(&def);
  CHECK_INTEQ(def.inode_bytes, 32 * MIB);
  CHECK_INTEQ(def.hint_ahead_bytes, 16 * MIB);
  CHECK_INTEQ(def.meta_bytes, 32 * MIB);
  CHECK_INTEQ(def.file_bytes, 32 * MIB);
  CHECK_INTEQ(def.min_file_bytes, MIB);
  CHECK_INTEQ(def.max_files, 65536);
  CHECK_INTEQ(def.max_small, 65536);

  /* Only big40 is 16 MiB or more. */
  lim = def;
  lim.min_file_bytes = 16 * MIB;
  CHECK_INTEQ(rc = scan_checked(v, &lim, &l), 0);
  check_files(v, &l, &lim, 0, seen);
  CHECK_INTEQ(l.nfiles, 1);
  CHECK_INTEQ(seen[BIG40], 1);
  volume_layout_free(&l);

  lim = def;
  lim.max_files = 1;
  CHECK_INTEQ(rc = scan_checked(v, &lim, &l), 0);
  check_files(v, &l, &lim, 0, seen);
  CHECK_INTEQ(l.nfiles, 1);
  volume_layout_free(&l);

  /* Under 16 MiB is small: big01, big03 and big10 join the small files,
   * those whose extents fit in the inode with all their blocks. */
  lim = def;
  lim.min_file_bytes = 16 * MIB;
  CHECK_INTEQ(rc = scan_checked(v, &lim, &l), 0);
  {
    uint64_t small_bytes[NTREE];

    check_small(v, &l, &lim, 0, small_bytes);
    for (size_t i = 0; i < NTREE; i++)
      if (!tree[i].dir && small_bytes[i] != 0)
        CHECK_INTEQ(small_bytes[i], (tree[i].size + BLK - 1) / BLK * BLK);
    CHECK(l.nsmall >= 4);
  }
  volume_layout_free(&l);

  lim = def;
  lim.max_small = 1;
  CHECK_INTEQ(rc = scan_checked(v, &lim, &l), 0);
  CHECK_INTEQ(l.nsmall, 1);
  volume_layout_free(&l);

  /* Only the first 5 MiB of each file: big01 and big03 whole. */
  lim = def;
  lim.file_bytes = 5 * MIB;
  CHECK_INTEQ(rc = scan_checked(v, &lim, &l), 0);
  check_files(v, &l, &lim, 0, seen);
  CHECK_INTEQ(l.nfiles, 4);
  volume_layout_free(&l);

  /* One block of directories at most; the journal superblock is no
   * directory and may come on top. */
  lim = def;
  lim.meta_bytes = BLK;
  CHECK_INTEQ(rc = scan_checked(v, &lim, &l), 0);
  read_meta(v, &l, 0, found, &dir_bytes, &journals);
  CHECK(dir_bytes <= BLK);
  CHECK(journals <= 1);
  volume_layout_free(&l);

  /* No inode table read: nothing known, but no error either. */
  lim = def;
  lim.inode_bytes = 0;
  CHECK_INTEQ(rc = scan_checked(v, &lim, &l), 0);
  CHECK_INTEQ(l.nfiles, 0);
  CHECK_INTEQ(l.nmeta, 0);
  CHECK_INTEQ(l.inodes_scanned, 0);
  volume_layout_free(&l);

  /* One block of inode table: 16 inodes of 256 bytes at most. */
  lim = def;
  lim.inode_bytes = BLK;
  CHECK_INTEQ(rc = scan_checked(v, &lim, &l), 0);
  CHECK(l.inodes_scanned <= 16);
  if (rc == 0)
    check_files(v, &l, &lim, 0, seen);
  volume_layout_free(&l);
}

/* Inodes in many groups: every directory is found, and every group's used
 * inodes are hinted before the first of them is read (with the default
 * 16 MiB window); a budget of a few groups hints only those. */
static void
spread_cases(struct vol *v)
{
  struct layout_limits lim;
  struct volume_layout l;
  bool found[NTREE];
  uint64_t dir_bytes;
  unsigned journals;
  int rc;

  volume_layout_default_limits(&lim);
  CHECK_INTEQ(rc = scan_checked(v, &lim, &l), 0);
  if (rc == 0) {
    CHECK(l.inodes_scanned >= NTREE + 11);
    read_meta(v, &l, 0, found, &dir_bytes, &journals);
    for (size_t i = 0; i < NTREE; i++)
      if (!found[i]) {
        fprintf(stderr, "spread: no meta range holds the entry of %s\n", tree[i].path);
        test_failures++;
      }
  }
  volume_layout_free(&l);
  CHECK(v->nhints >= 4);
  for (size_t i = 1; i < v->nhints; i++)
    CHECK_INTEQ(v->hint_at[i], v->hint_at[0]);

  /* A window of one inode: each group's table is hinted just before it
   * is read, one at a time. */
  lim.hint_ahead_bytes = 1;
  CHECK_INTEQ(rc = scan_checked(v, &lim, &l), 0);
  volume_layout_free(&l);
  CHECK(v->nhints >= 4 && v->hint_at[v->nhints - 1] > v->hint_at[0]);

  /* Budget: the descriptors (64 groups of 64 bytes) and 3 KiB of inodes. */
  volume_layout_default_limits(&lim);
  lim.inode_bytes = 64 * 64 + 3 * KIB;
  CHECK_INTEQ(rc = scan_checked(v, &lim, &l), 0);
  if (rc == 0)
    CHECK_INTEQ(l.inodes_scanned, 3);
  volume_layout_free(&l);
  CHECK_INTEQ(v->nhints, 1);
}

int
main(void)
{
  const char *t = getenv("TMPDIR");
  struct vol v1 = { .kind = VOL_FD, .fd = -1, .size = IMG1_SIZE, .fail_after = -1 };
  struct vol v2 = { .kind = VOL_FD, .fd = -1, .size = PART_IMG, .fail_after = -1 };
  struct vol v3 = { .kind = VOL_FD, .fd = -1, .size = IMG3_SIZE, .fail_after = -1 };

  if (!find_mkfs()) {
    fprintf(stderr, "mkfs.ext4 not found: skipped\n");
    return 77;
  }
  snprintf(tmpdir, sizeof tmpdir, "%s/volume_layout_test.XXXXXX", t && *t ? t : "/tmp");
  if (mkdtemp(tmpdir) == NULL) {
    perror("mkdtemp");
    tmpdir[0] = '\0';
    return 1;
  }
  atexit(cleanup);
  snprintf(srcdir, sizeof srcdir, "%s/src", tmpdir);
  snprintf(img1, sizeof img1, "%s/img1", tmpdir);
  snprintf(img2, sizeof img2, "%s/img2", tmpdir);
  snprintf(img3, sizeof img3, "%s/img3", tmpdir);
  if (!build_tree()) {
    perror("building the source tree");
    return 1;
  }

  phase("8 GiB ext4 image, default limits");
  if (!make_image(img1, IMG1_SIZE, false) || (v1.fd = open(img1, O_RDONLY)) < 0) {
    fprintf(stderr, "%s could not make %s\n", mkfs, img1);
    return 1;
  }
  check_ext4(&v1, 0, 1);
  phase("limits");
  limit_cases(&v1);
  phase("failing reads, free, reuse");
  failure_cases(&v1);
  phase("damaged metadata");
  fuzz(&v1);
  phase("two inodes sharing blocks");
  shared_blocks_case(&v1);
  CHECK_INTEQ(close(v1.fd), 0);

  if (!make_image(img2, PART_IMG, true) || (v2.fd = open(img2, O_RDWR)) < 0) {
    fprintf(stderr, "%s could not make %s\n", mkfs, img2);
    return 1;
  }
  partition_cases(&v2);
  CHECK_INTEQ(close(v2.fd), 0);

  phase("inodes in many groups");
  if (!make_image(img3, IMG3_SIZE, false) || (v3.fd = open(img3, O_RDONLY)) < 0) {
    fprintf(stderr, "%s could not make %s\n", mkfs, img3);
    return 1;
  }
  spread_cases(&v3);
  CHECK_INTEQ(close(v3.fd), 0);

  phase("not ext4");
  foreign_cases();
  phase(NULL);
  TEST_EXIT();
}
