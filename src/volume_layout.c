/* volume_layout.c - partition tables and ext4 metadata, parsed for hints
 * (volume_layout.h).
 *
 * The on-disk formats are little-endian and documented in the kernel's
 * Documentation/filesystems/ext4/ and the UEFI specification (GPT).  We read
 * only what the hints need: the superblock, the group descriptors, the used
 * inodes of each group, and an inode's extent tree when it fits in the inode
 * (depth 0, at most 4 extents: nearly every directory and file written in
 * one go).  Anything else - indirect block maps, deeper extent trees,
 * inline data, META_BG - is skipped, which only means fewer hints.
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "volume_layout.h"

#define SECTOR 512u
#define MAX_CANDIDATES 8u               /* filesystems tried per volume */
#define GPT_MAX_ENTRIES 128u
#define CHUNK (64u * 1024u)             /* group descriptors and inodes read per call */

/* ext4 superblock fields (offsets into the 1024-byte superblock). */
#define SB_OFFSET 1024u
#define SB_SIZE 1024u
#define EXT4_MAGIC 0xEF53u
#define INCOMPAT_META_BG 0x0010u
#define INCOMPAT_64BIT 0x0080u
#define RO_COMPAT_GDT_CSUM 0x0010u
#define RO_COMPAT_METADATA_CSUM 0x0400u
#define BG_INODE_UNINIT 0x0001u

#define S_IFMT_ 0xF000u
#define S_IFDIR_ 0x4000u
#define S_IFREG_ 0x8000u
#define EXTENTS_FL 0x00080000u
#define EXTENT_MAGIC 0xF30Au
#define EXTENT_INIT_MAX 32768u          /* ee_len above this: an unwritten extent */

static uint16_t le16(const unsigned char *p) { return (uint16_t) (p[0] | p[1] << 8); }
static uint32_t le32(const unsigned char *p)
{
  return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}
static uint64_t le64(const unsigned char *p) { return le32(p) | (uint64_t) le32(p + 4) << 32; }

void
volume_layout_default_limits(struct layout_limits *lim)
{
  lim->inode_bytes = 32u << 20;
  lim->meta_bytes = 32u << 20;
  lim->file_bytes = 32u << 20;
  lim->min_file_bytes = 1u << 20;
  lim->max_files = 65536;
  lim->max_small = 65536;
  lim->hint_ahead_bytes = 16u << 20;
}

/* ---- growing the result ------------------------------------------------------- */

struct scan {
  layout_read_fn read;
  layout_hint_fn hint;                  /* may be NULL */
  void *ctx;
  uint64_t volume_size;
  struct layout_limits lim;
  struct volume_layout *out;
  size_t meta_cap, files_cap, ranges_cap, small_cap;
  uint64_t meta_bytes;                  /* listed so far */
  uint64_t inode_bytes;                 /* read so far */
};

static int
grow(void **p, size_t *cap, size_t n, size_t size)
{
  size_t ncap;
  void *q;

  if (n < *cap)
    return 0;
  ncap = *cap ? *cap * 2 : 64;
  q = realloc(*p, ncap * size);
  if (q == NULL)
    return -ENOMEM;
  *p = q;
  *cap = ncap;
  return 0;
}

static int
add_meta(struct scan *s, uint64_t off, uint64_t len)
{
  struct volume_layout *l = s->out;

  if (s->meta_bytes + len > s->lim.meta_bytes)
    return 0;                           /* over the cap: quietly fewer hints */
  if (grow((void **) &l->meta, &s->meta_cap, l->nmeta, sizeof *l->meta) < 0)
    return -ENOMEM;
  l->meta[l->nmeta].off = off;
  l->meta[l->nmeta].len = len;
  l->nmeta++;
  s->meta_bytes += len;
  /* Now, not when the scan ends: the directories of the first groups are
   * then on their way while the later groups' inodes are still read. */
  if (s->hint)
    s->hint(s->ctx, off, len, LAYOUT_HINT_META);
  return 0;
}

/* ---- one ext4 filesystem -------------------------------------------------------- */

struct ext4 {
  uint64_t base;                        /* volume offset of the filesystem */
  uint64_t block_size;
  uint64_t blocks;                      /* s_blocks_count */
  uint32_t inodes_per_group;
  uint32_t inode_size;
  uint32_t desc_size;
  uint32_t journal_inum;
  uint64_t ngroups;
  bool itable_unused_valid;             /* bg_itable_unused is maintained */
  bool is64;
};

/* Volume range of fs blocks [start, start+count), or false when it falls
 * outside the filesystem or the volume. */
static bool
fs_range(const struct scan *s, const struct ext4 *fs, uint64_t start, uint64_t count,
         uint64_t *off, uint64_t *len)
{
  if (count == 0 || start >= fs->blocks || count > fs->blocks - start)
    return false;
  *off = fs->base + start * fs->block_size;
  *len = count * fs->block_size;
  return *off < s->volume_size && *len <= s->volume_size - *off;
}

static int
parse_superblock(struct scan *s, uint64_t base, uint64_t avail, struct ext4 *fs)
{
  unsigned char sb[SB_SIZE];
  uint32_t log_bs, blocks_per_group, first_data, incompat, ro_compat;
  int rc;

  if (avail < SB_OFFSET + SB_SIZE)
    return 0;
  rc = s->read(s->ctx, base + SB_OFFSET, sb, sizeof sb);
  if (rc < 0)
    return rc;
  if (le16(sb + 0x38) != EXT4_MAGIC)
    return 0;
  log_bs = le32(sb + 0x18);
  if (log_bs > 6)                       /* 1 KiB .. 64 KiB */
    return 0;
  memset(fs, 0, sizeof *fs);
  fs->base = base;
  fs->block_size = 1024u << log_bs;
  incompat = le32(sb + 0x60);
  ro_compat = le32(sb + 0x64);
  fs->is64 = (incompat & INCOMPAT_64BIT) != 0;
  fs->blocks = le32(sb + 0x04);
  if (fs->is64)
    fs->blocks |= (uint64_t) le32(sb + 0x150) << 32;
  blocks_per_group = le32(sb + 0x20);
  first_data = le32(sb + 0x14);
  fs->inodes_per_group = le32(sb + 0x28);
  fs->inode_size = le32(sb + 0x4C) == 0 ? 128 : le16(sb + 0x58);
  fs->desc_size = fs->is64 ? le16(sb + 0xFE) : 32;
  fs->journal_inum = le32(sb + 0xE0);
  fs->itable_unused_valid = (ro_compat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM)) != 0;
  if (incompat & INCOMPAT_META_BG)
    return 0;                           /* descriptors scattered: not worth it */
  if (blocks_per_group == 0 || blocks_per_group > 8 * fs->block_size ||
      fs->inodes_per_group == 0 || fs->inodes_per_group > 8 * fs->block_size ||
      fs->inode_size < 128 || fs->inode_size > fs->block_size ||
      (fs->inode_size & (fs->inode_size - 1)) != 0 ||
      fs->desc_size < 32 || fs->desc_size > 1024 || (fs->is64 && fs->desc_size < 64) ||
      first_data >= fs->blocks || first_data > 1)
    return 0;
  fs->ngroups = (fs->blocks - first_data + blocks_per_group - 1) / blocks_per_group;
  /* Nothing we list may lie past the volume, and block * block_size must
   * not overflow: a filesystem claiming more blocks is cut to the volume. */
  if (fs->blocks > (s->volume_size - base) / fs->block_size)
    fs->blocks = (s->volume_size - base) / fs->block_size;
  return 1 + (int) first_data;          /* > 0: recognised, the descriptors' block */
}

/* The extents of an inode's i_block, when the tree is a single leaf. */
struct extent { uint64_t lblock, start, len; };

static unsigned
inode_extents(const unsigned char *inode, struct extent ext[4])
{
  const unsigned char *h = inode + 0x28;        /* i_block, 60 bytes */
  unsigned n, i, k = 0;

  if (!(le32(inode + 0x20) & EXTENTS_FL) || le16(h) != EXTENT_MAGIC || le16(h + 6) != 0)
    return 0;                           /* not extents, or not a leaf */
  n = le16(h + 2);
  if (n > 4)
    return 0;
  for (i = 0; i < n; i++) {
    const unsigned char *e = h + 12 + 12 * i;
    uint32_t len = le16(e + 4);

    if (len == 0 || len > EXTENT_INIT_MAX)
      continue;                         /* unwritten: reads as zeros */
    ext[k].lblock = le32(e);
    ext[k].start = (uint64_t) le16(e + 6) << 32 | le32(e + 8);
    ext[k].len = len;
    k++;
  }
  return k;
}

static int
add_file(struct scan *s, const struct ext4 *fs, const struct extent *ext, unsigned n,
         uint64_t size)
{
  struct volume_layout *l = s->out;
  uint64_t want = size < s->lim.file_bytes ? size : s->lim.file_bytes;
  uint64_t listed = 0, expect_lblock = 0;
  size_t first = l->nranges;
  unsigned i;

  if (l->nfiles >= s->lim.max_files || want == 0)
    return 0;
  /* The file's first bytes, in file order, with no hole before them. */
  for (i = 0; i < n && listed < want; i++) {
    uint64_t off, len;

    if (ext[i].lblock != expect_lblock || !fs_range(s, fs, ext[i].start, ext[i].len, &off, &len))
      break;
    if (len > want - listed)
      len = want - listed;
    if (grow((void **) &l->ranges, &s->ranges_cap, l->nranges, sizeof *l->ranges) < 0)
      return -ENOMEM;
    l->ranges[l->nranges].off = off;
    l->ranges[l->nranges].len = len;
    l->nranges++;
    listed += len;
    expect_lblock = ext[i].lblock + ext[i].len;
  }
  if (l->nranges == first)
    return 0;
  if (grow((void **) &l->files, &s->files_cap, l->nfiles, sizeof *l->files) < 0)
    return -ENOMEM;
  l->files[l->nfiles].start = l->ranges[first].off;
  l->files[l->nfiles].first_range = (uint32_t) first;
  l->files[l->nfiles].nranges = (uint32_t) (l->nranges - first);
  l->files[l->nfiles].end = want == size && listed == want
                            ? l->ranges[l->nranges - 1].off + l->ranges[l->nranges - 1].len : 0;
  l->nfiles++;
  return 0;
}

/* A file under min_file_bytes: its data, each extent up to the file's end
 * (its last block whole; an extent past the end holds preallocated space). */
static int
add_small(struct scan *s, const struct ext4 *fs, const struct extent *ext, unsigned n,
          uint64_t size)
{
  struct volume_layout *l = s->out;
  uint64_t size_blocks = (size + fs->block_size - 1) / fs->block_size;
  unsigned i;

  for (i = 0; i < n && l->nsmall < s->lim.max_small; i++) {
    uint64_t count = ext[i].len, off, len;

    if (ext[i].lblock >= size_blocks)
      continue;
    if (count > size_blocks - ext[i].lblock)
      count = size_blocks - ext[i].lblock;
    if (!fs_range(s, fs, ext[i].start, count, &off, &len))
      continue;
    if (grow((void **) &l->small, &s->small_cap, l->nsmall, sizeof *l->small) < 0)
      return -ENOMEM;
    l->small[l->nsmall].off = off;
    l->small[l->nsmall].len = len;
    l->nsmall++;
  }
  return 0;
}

static int
one_inode(struct scan *s, const struct ext4 *fs, uint64_t inum, const unsigned char *inode)
{
  uint16_t mode = le16(inode);
  struct extent ext[4];
  uint64_t size, off, len;
  unsigned n, i;
  int rc;

  if (mode == 0 || le16(inode + 0x1A) == 0 || le32(inode + 0x14) != 0)
    return 0;                           /* free or deleted */
  n = inode_extents(inode, ext);
  if (n == 0)
    return 0;
  size = le32(inode + 0x04) | (uint64_t) le32(inode + 0x6C) << 32;
  if (inum == fs->journal_inum) {
    /* The kernel reads the journal's superblock at every mount, ro too. */
    for (i = 0; i < n; i++)
      if (ext[i].lblock == 0 && fs_range(s, fs, ext[i].start, 1, &off, &len))
        return add_meta(s, off, len);
    return 0;
  }
  if ((mode & S_IFMT_) == S_IFDIR_) {
    for (i = 0; i < n; i++) {
      if (!fs_range(s, fs, ext[i].start, ext[i].len, &off, &len))
        continue;
      rc = add_meta(s, off, len);
      if (rc < 0)
        return rc;
    }
    return 0;
  }
  if ((mode & S_IFMT_) == S_IFREG_)
    return size >= s->lim.min_file_bytes ? add_file(s, fs, ext, n, size)
                                         : add_small(s, fs, ext, n, size);
  return 0;
}

/* The used part of one group's inode table, as planned from its descriptor. */
struct itable {
  uint64_t group;
  uint64_t off, bytes;                  /* volume range; whole inodes */
};

/* Plan the used inodes of one group, [itable, itable + used * inode_size),
 * within what is left of the budget: appended to *t, or nothing. */
static int
plan_group(struct scan *s, const struct ext4 *fs, uint64_t group, uint64_t itable,
           uint32_t used, struct itable **t, size_t *n, size_t *cap)
{
  uint64_t bytes = (uint64_t) used * fs->inode_size, off, len;

  if (bytes > s->lim.inode_bytes - s->inode_bytes)
    bytes = s->lim.inode_bytes - s->inode_bytes;
  bytes -= bytes % fs->inode_size;
  if (bytes == 0 || !fs_range(s, fs, itable, (bytes + fs->block_size - 1) / fs->block_size,
                              &off, &len))
    return 0;
  if (grow((void **) t, cap, *n, sizeof **t) < 0)
    return -ENOMEM;
  (*t)[*n].group = group;
  (*t)[*n].off = off;
  (*t)[*n].bytes = bytes;
  (*n)++;
  s->inode_bytes += bytes;
  return 0;
}

/* Read and parse one planned group's inodes. */
static int
scan_group(struct scan *s, const struct ext4 *fs, const struct itable *t, unsigned char *buf)
{
  uint64_t done = 0;

  while (done < t->bytes) {
    size_t n = t->bytes - done < CHUNK ? (size_t) (t->bytes - done) : CHUNK;
    size_t i;
    int rc;

    n -= n % fs->inode_size;
    rc = s->read(s->ctx, t->off + done, buf, n);
    if (rc < 0)
      return rc;
    s->out->inodes_scanned += n / fs->inode_size;
    for (i = 0; i < n; i += fs->inode_size) {
      uint64_t inum = t->group * fs->inodes_per_group + (done + i) / fs->inode_size + 1;

      rc = one_inode(s, fs, inum, buf + i);
      if (rc < 0)
        return rc;
    }
    done += n;
  }
  return 0;
}

static int
scan_ext4(struct scan *s, uint64_t base, uint64_t avail)
{
  struct ext4 fs;
  unsigned char *buf;
  struct itable *t = NULL;
  size_t nt = 0, tcap = 0, hinted = 0, i;
  uint64_t g, gdt_off, gdt_len, read_bytes = 0, hinted_bytes = 0;
  int rc;

  rc = parse_superblock(s, base, avail, &fs);
  if (rc <= 0)
    return rc;
  if (!fs_range(s, &fs, (uint64_t) rc, 1, &gdt_off, &gdt_len))
    return 0;
  s->out->nfilesystems++;
  buf = malloc(2 * CHUNK);              /* inodes, then descriptors */
  if (buf == NULL)
    return -ENOMEM;
  /* First every group's descriptor, so that the used part of each inode
   * table is known before the first is read: the caller can then fetch them
   * all at once, where reading them one after another would cost a round
   * trip each (the used inodes of a group lie 2 MiB or more from the next
   * group's when the groups are 8192 inodes of 256 B). */
  rc = 0;
  for (g = 0; g < fs.ngroups && s->inode_bytes < s->lim.inode_bytes && rc == 0; ) {
    unsigned char *gd = buf + CHUNK;
    uint64_t per = CHUNK / fs.desc_size, k, n = fs.ngroups - g < per ? fs.ngroups - g : per;

    /* Descriptors count against the same budget as inodes: a superblock
     * claiming millions of empty groups must not make us read gigabytes. */
    if (n * fs.desc_size > s->lim.inode_bytes - s->inode_bytes)
      n = (s->lim.inode_bytes - s->inode_bytes) / fs.desc_size;
    if (n == 0 || gdt_off + g * fs.desc_size + n * fs.desc_size > s->volume_size)
      break;
    rc = s->read(s->ctx, gdt_off + g * fs.desc_size, gd, (size_t) (n * fs.desc_size));
    s->inode_bytes += n * fs.desc_size;
    for (k = 0; rc == 0 && k < n && s->inode_bytes < s->lim.inode_bytes; k++) {
      const unsigned char *d = gd + k * fs.desc_size;
      uint64_t itable = le32(d + 0x08);
      uint32_t used = fs.inodes_per_group;

      if (fs.is64)
        itable |= (uint64_t) le32(d + 0x28) << 32;
      if (le16(d + 0x12) & BG_INODE_UNINIT)
        continue;
      if (fs.itable_unused_valid) {
        uint32_t unused = le16(d + 0x1C) | (fs.is64 ? (uint32_t) le16(d + 0x32) << 16 : 0);

        used = unused >= used ? 0 : used - unused;
      }
      rc = plan_group(s, &fs, g + k, itable, used, &t, &nt, &tcap);
    }
    g += n;
  }
  /* Then the inodes, with the tables up to hint_ahead_bytes ahead asked for
   * (a bounded window: the caller's cache and request slots are finite). */
  for (i = 0; i < nt && rc == 0; i++) {
    while (s->hint && hinted < nt && hinted_bytes < read_bytes + s->lim.hint_ahead_bytes) {
      s->hint(s->ctx, t[hinted].off, t[hinted].bytes, LAYOUT_HINT_INODES);
      hinted_bytes += t[hinted].bytes;
      hinted++;
    }
    rc = scan_group(s, &fs, &t[i], buf);
    read_bytes += t[i].bytes;
  }
  free(t);
  free(buf);
  return rc;
}

/* ---- partition tables ----------------------------------------------------------- */

/* Offsets of the partitions a GPT or an MBR names, at most max. */
static int
partitions(struct scan *s, uint64_t *start, uint64_t *size, unsigned max, unsigned *n)
{
  unsigned char mbr[SECTOR], hdr[SECTOR];
  unsigned i;
  bool gpt = false;
  int rc;

  *n = 0;
  if (s->volume_size < 2 * SECTOR)
    return 0;
  rc = s->read(s->ctx, 0, mbr, sizeof mbr);
  if (rc < 0)
    return rc;
  if (mbr[510] != 0x55 || mbr[511] != 0xAA)
    return 0;
  for (i = 0; i < 4; i++) {
    const unsigned char *e = mbr + 446 + 16 * i;
    unsigned type = e[4];

    if (type == 0xEE)
      gpt = true;
    else if (type != 0 && type != 0x05 && type != 0x0F && type != 0x85 && *n < max) {
      start[*n] = (uint64_t) le32(e + 8) * SECTOR;
      size[*n] = (uint64_t) le32(e + 12) * SECTOR;
      (*n)++;
    }
  }
  if (!gpt)
    return 0;
  *n = 0;
  rc = s->read(s->ctx, SECTOR, hdr, sizeof hdr);
  if (rc < 0)
    return rc;
  if (memcmp(hdr, "EFI PART", 8) == 0) {
    uint64_t entries = le64(hdr + 72);
    uint32_t count = le32(hdr + 80), esize = le32(hdr + 84);
    unsigned char e[128];

    if (count > GPT_MAX_ENTRIES)
      count = GPT_MAX_ENTRIES;
    if (esize < 128 || esize > 4096 || entries == 0 || entries > s->volume_size / SECTOR)
      return 0;
    for (i = 0; i < count && *n < max; i++) {
      static const unsigned char unused[16];
      uint64_t at = entries * SECTOR + (uint64_t) i * esize, first, last;

      if (at + sizeof e > s->volume_size)
        break;
      rc = s->read(s->ctx, at, e, sizeof e);
      if (rc < 0)
        return rc;
      if (memcmp(e, unused, sizeof unused) == 0)
        continue;
      first = le64(e + 32);
      last = le64(e + 40);
      if (last < first || last >= s->volume_size / SECTOR)
        continue;
      start[*n] = first * SECTOR;
      size[*n] = (last - first + 1) * SECTOR;
      (*n)++;
    }
  }
  return 0;
}

/* ---- the contract --------------------------------------------------------------- */

static int
by_start(const void *a, const void *b)
{
  const struct layout_file *x = a, *y = b;

  return x->start < y->start ? -1 : x->start > y->start;
}

static int
by_off(const void *a, const void *b)
{
  const struct layout_range *x = a, *y = b;

  return x->off < y->off ? -1 : x->off > y->off;
}

int
volume_layout_scan(layout_read_fn read, void *ctx, uint64_t volume_size,
                   const struct layout_limits *lim, struct volume_layout *out)
{
  return volume_layout_scan_hinted(read, NULL, ctx, volume_size, lim, out);
}

int
volume_layout_scan_hinted(layout_read_fn read, layout_hint_fn hint, void *ctx,
                          uint64_t volume_size, const struct layout_limits *lim,
                          struct volume_layout *out)
{
  struct scan s = { .read = read, .hint = hint, .ctx = ctx, .volume_size = volume_size,
                    .out = out };
  uint64_t start[MAX_CANDIDATES], size[MAX_CANDIDATES];
  unsigned n, i;
  int rc;

  memset(out, 0, sizeof *out);
  if (lim)
    s.lim = *lim;
  else
    volume_layout_default_limits(&s.lim);
  /* A filesystem on the whole volume, else one per partition. */
  rc = scan_ext4(&s, 0, volume_size);
  if (rc == 0 && out->nfilesystems == 0) {
    rc = partitions(&s, start, size, MAX_CANDIDATES, &n);
    for (i = 0; rc == 0 && i < n; i++)
      if (start[i] < volume_size && size[i] <= volume_size - start[i])
        rc = scan_ext4(&s, start[i], size[i]);
  }
  if (rc < 0) {
    volume_layout_free(out);
    return rc;
  }
  if (out->nfiles > 1)                  /* qsort(NULL, 0) is undefined */
    qsort(out->files, out->nfiles, sizeof *out->files, by_start);
  if (out->nsmall > 1) {
    size_t k = 0;

    qsort(out->small, out->nsmall, sizeof *out->small, by_off);
    /* Two inodes claiming the same blocks (a damaged filesystem): one range. */
    for (size_t j = 1; j < out->nsmall; j++) {
      struct layout_range *prev = &out->small[k], *r = &out->small[j];

      if (r->off < prev->off + prev->len) {
        if (r->off + r->len > prev->off + prev->len)
          prev->len = r->off + r->len - prev->off;
      } else {
        out->small[++k] = *r;
      }
    }
    out->nsmall = k + 1;
  }
  return 0;
}

void
volume_layout_free(struct volume_layout *l)
{
  free(l->meta);
  free(l->files);
  free(l->ranges);
  free(l->small);
  memset(l, 0, sizeof *l);
}
