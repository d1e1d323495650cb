/* volume_layout.h - where a volume's filesystem keeps what a mount reads next.
 *
 * Reading a file through a loop mount is a chain of dependent reads: the
 * superblock, the inode table, the root directory, each subdirectory, then
 * the file.  Over a 50 ms link each link of the chain is a round trip.  This
 * parser reads the partition table (MBR or GPT) and each ext4 filesystem's
 * superblock, group descriptors and the used part of its inode tables, and
 * says (1) which byte ranges any mount will read soon - every directory's
 * data and the journal's superblock - so they can all be fetched at once,
 * (2) where each large file's data lies, so that a read of its first
 * block can bring in the rest of it in one round trip, and (3) where the
 * small files' data lies, so that a copy of a tree (reading small file
 * after small file, one round trip each) can be seen and read ahead of.
 *
 * Pure parsing: all I/O goes through the caller's read function, and every
 * field read from the volume is checked before it is used (a damaged or
 * hostile filesystem yields fewer hints, never a crash or a huge
 * allocation).  Only ext4 (and ext2/3 with extents) is understood; other
 * filesystems yield no hints.
 */
#ifndef EBSFS_VOLUME_LAYOUT_H
#define EBSFS_VOLUME_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

/* A byte range of the volume. */
struct layout_range {
  uint64_t off;
  uint64_t len;
};

/* A file whose data is worth bringing in when its first block is read. */
struct layout_file {
  uint64_t start;               /* volume offset of the file's first byte */
  uint32_t first_range;         /* its data, in file order: */
  uint32_t nranges;             /*   ranges[first_range .. first_range+nranges) */
  uint64_t end;                 /* just past its last byte when the ranges hold
                                 * all of it; 0 when they hold a prefix only */
};

struct volume_layout {
  struct layout_range *meta;    /* directories and journal superblocks */
  size_t nmeta;
  struct layout_file *files;    /* sorted by start */
  size_t nfiles;
  struct layout_range *ranges;  /* the files' data */
  size_t nranges;
  struct layout_range *small;   /* data of the smaller regular files, sorted by
                                 * off, not overlapping */
  size_t nsmall;
  unsigned nfilesystems;        /* ext4 filesystems recognised */
  uint64_t inodes_scanned;
};

struct layout_limits {
  uint64_t inode_bytes;         /* group descriptor and inode table bytes read
                                 * at most, all groups */
  uint64_t meta_bytes;          /* directory bytes listed at most */
  uint64_t file_bytes;          /* per file: the first this many bytes listed */
  uint64_t min_file_bytes;      /* smaller files are not listed */
  size_t max_files;             /* files listed at most */
  size_t max_small;             /* small files' data ranges listed at most */
  uint64_t hint_ahead_bytes;    /* inode tables hinted ahead of the reads */
};

/* Defaults: 32 MiB of inode tables (131072 inodes of 256 B), 32 MiB of
 * directories, the first 32 MiB of files of 1 MiB or more, 65536 files,
 * 65536 ranges of smaller files, inode tables hinted 16 MiB ahead. */
void volume_layout_default_limits(struct layout_limits *lim);

/* Read len bytes at off into buf: 0, or -errno. */
typedef int (*layout_read_fn)(void *ctx, uint64_t off, void *buf, size_t len);

/* Scan a volume of volume_size bytes.  Returns 0 with out filled (possibly
 * empty: no ext4 found), or -errno when a read failed or memory ran out;
 * out is then empty too.  Free with volume_layout_free either way. */
int volume_layout_scan(layout_read_fn read, void *ctx, uint64_t volume_size,
                       const struct layout_limits *lim, struct volume_layout *out);
/* The same, telling hint which ranges are about to be read, so that a
 * caller reading over a network can fetch them at once: the inode tables
 * the scan reads next (LAYOUT_HINT_INODES, up to hint_ahead_bytes ahead of
 * its reads), and each meta range as soon as it is found
 * (LAYOUT_HINT_META: the mount's reads, not the scan's; the same ranges,
 * in the same order, as out->meta).  Only ranges inside the volume are
 * hinted, each once. */
enum layout_hint { LAYOUT_HINT_INODES, LAYOUT_HINT_META };
typedef void (*layout_hint_fn)(void *ctx, uint64_t off, uint64_t len, enum layout_hint what);
int volume_layout_scan_hinted(layout_read_fn read, layout_hint_fn hint, void *ctx,
                              uint64_t volume_size, const struct layout_limits *lim,
                              struct volume_layout *out);
void volume_layout_free(struct volume_layout *l);

#endif
