/* volume_layout_test_damaged.c - the layout parser on input it must survive:
 * every read failing in turn, fuzzed metadata, two inodes claiming the
 * same blocks, partition tables (MBR, GPT) good and absurd, and volumes
 * that hold no filesystem at all.  The answer is always an error or fewer
 * hints, never a crash, a read outside the volume or a broken promise.
 * Part of volume_layout_test, whose main() makes the images. */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TESTING_EXTERN                  /* one failure count, in volume_layout_test.c */
#include "testing.h"
#include "volume_layout.h"
#include "volume_layout_test.h"

/* Scans with every read after the first n failing: if one failed, the scan
 * fails with its error and leaves nothing behind; if none did, it finishes
 * as if nothing had happened. */
static void
fail_after(struct vol *v, long n, size_t nfiles)
{
  struct layout_limits lim;
  struct volume_layout l;
  int rc;

  volume_layout_default_limits(&lim);
  v->reads = 0;
  v->fail_after = n;
  v->failed = false;
  rc = volume_layout_scan(vol_read, v, v->size, &lim, &l);
  if (v->failed) {
    if (rc != -EIO)
      fprintf(stderr, "read %ld failed, scan returned %d\n", n + 1, rc);
    CHECK_INTEQ(rc, -EIO);
    CHECK(l.nmeta == 0 && l.nfiles == 0 && l.nranges == 0);
  } else {
    CHECK_INTEQ(rc, 0);
    CHECK_INTEQ(l.nfiles, nfiles);
  }
  volume_layout_free(&l);
  v->fail_after = -1;
}

/* Each read failing in turn (a sample past 200 reads, and the last); free
 * is safe on a zeroed struct, and a freed struct can be scanned into. */
void
failure_cases(struct vol *v)
{
  struct layout_limits lim;
  struct volume_layout l;
  long nreads, n;
  size_t nfiles, nmeta;

  volume_layout_default_limits(&lim);
  v->reads = 0;
  CHECK_INTEQ(volume_layout_scan(vol_read, v, v->size, &lim, &l), 0);
  nreads = v->reads;
  nfiles = l.nfiles;
  nmeta = l.nmeta;
  volume_layout_free(&l);
  CHECK(nreads > 0);
  for (n = 0; n < nreads - 1; n += nreads / 200 + 1)
    fail_after(v, n, nfiles);
  fail_after(v, nreads - 1, nfiles);
  fail_after(v, nreads, nfiles);
  CHECK(!v->failed);

  memset(&l, 0, sizeof l);
  volume_layout_free(&l);
  volume_layout_free(&l);
  CHECK_INTEQ(volume_layout_scan(vol_read, v, v->size, &lim, &l), 0);
  volume_layout_free(&l);
  CHECK_INTEQ(volume_layout_scan(vol_read, v, v->size, &lim, &l), 0);
  CHECK_INTEQ(l.nfiles, nfiles);
  CHECK_INTEQ(l.nmeta, nmeta);
  volume_layout_free(&l);
}

/* The first 8 MiB of image 1 (the rest reads as zeros) with bytes of the
 * superblock, the group descriptors and the first inodes damaged; some
 * runs with a volume shorter than the superblock says, most with small
 * limits so that each run is quick.  Each scan must return 0 or -errno and
 * keep every promise.  Deterministic: a failing iteration can be rerun. */
void
fuzz(struct vol *v1)
{
  uint8_t *pristine = malloc(FUZZ_COPY), *work = malloc(FUZZ_COPY);
  struct vol v = { .kind = VOL_MEM, .fd = -1, .mem = work, .memlen = FUZZ_COPY, .size = IMG1_SIZE,
                   .fail_after = -1 };
  struct layout_limits def, lim;
  struct volume_layout l;
  size_t reg[5][2], itab;
  uint64_t rng = 0x766f6c6c61796f75ull;
  unsigned reported = 0;

  volume_layout_default_limits(&def);
  if (!pristine || !work || vol_read(v1, 0, pristine, FUZZ_COPY) != 0) {
    CHECK(!"fuzz: no copy of image 1");
    free(pristine);
    free(work);
    return;
  }
  memcpy(work, pristine, FUZZ_COPY);
  /* Group 0's bg_inode_table_lo: with 4 KiB blocks its descriptor is at
   * 4096. */
  itab = (size_t) (pristine[4104] | pristine[4105] << 8 | pristine[4106] << 16) * BLK;
  CHECK(itab >= 2 * BLK && itab + 8192 <= FUZZ_COPY);
  if (itab < 2 * BLK || itab + 8192 > FUZZ_COPY)
    itab = 2 * BLK;
  reg[0][0] = 1024, reg[0][1] = 1024;   /* superblock */
  reg[1][0] = 4096, reg[1][1] = 4096;   /* group descriptors */
  reg[2][0] = 4096, reg[2][1] = 64;     /* group 0's, more often */
  reg[3][0] = itab, reg[3][1] = 8192;   /* the first 32 inodes */
  reg[4][0] = itab + 256, reg[4][1] = 256;      /* the root directory's */

  for (unsigned it = 0; it < FUZZ_ITERS; it++) {
    const char *bad;
    unsigned nflip;
    int rc;

    for (size_t r = 0; r < 5; r++)
      memcpy(work + reg[r][0], pristine + reg[r][0], reg[r][1]);
    nflip = 1 + (unsigned) ((rng = splitmix(rng)) % 8);
    for (unsigned k = 0; k < nflip; k++) {
      uint64_t x = rng = splitmix(rng);
      size_t r = (size_t) (x % 5), p = reg[r][0] + (size_t) ((x >> 8) % reg[r][1]);
      uint8_t vals[4] = { work[p] ^ (uint8_t) (1u << ((x >> 44) % 8)), (uint8_t) (x >> 48),
                          0, 0xff };
      work[p] = vals[(x >> 40) % 4];
    }
    rng = splitmix(rng);
    v.size = rng % 8 == 0 ? 4 * MIB + (rng >> 8) % (4 * MIB) : IMG1_SIZE;
    lim = def;
    if ((rng >> 32) % 4 != 0) {
      lim.inode_bytes = 256 * KIB;
      lim.meta_bytes = MIB;
      lim.file_bytes = 2 * MIB;
      lim.min_file_bytes = 64 * KIB;
      lim.max_files = 8;
    }
    v.oob = 0;
    rc = volume_layout_scan(vol_read, &v, v.size, &lim, &l);
    if (rc > 0)
      bad = "a positive return";
    else if (v.oob)
      bad = "a read past the volume's end";
    else if (rc < 0 && (l.nmeta || l.nfiles || l.nranges || l.nsmall))
      bad = "hints left after an error";
    else
      bad = layout_problem(&l, v.size, &lim);
    if (bad && reported++ < 5)
      fprintf(stderr, "fuzz iteration %u: %s (rc %d)\n", it, bad, rc);
    volume_layout_free(&l);
  }
  CHECK_INTEQ(reported, 0);
  free(pristine);
  free(work);
}

/* Two small files' inodes claiming the same blocks (a damaged filesystem):
 * the scan still succeeds, and those blocks are listed once, in ranges
 * that do not overlap (scan_checked checks that). */
void
shared_blocks_case(struct vol *v1)
{
  uint8_t *work = malloc(FUZZ_COPY);
  struct vol v = { .kind = VOL_MEM, .fd = -1, .mem = work, .memlen = FUZZ_COPY, .size = IMG1_SIZE,
                   .fail_after = -1 };
  struct layout_limits lim;
  struct volume_layout l;
  size_t itab, a = 0, b = 0, holding = 0;
  uint64_t first;
  int rc;

  if (!work || vol_read(v1, 0, work, FUZZ_COPY) != 0) {
    CHECK(!"shared blocks: no copy of image 1");
    free(work);
    return;
  }
  itab = (size_t) (work[4104] | work[4105] << 8 | work[4106] << 16) * BLK;
  CHECK(itab >= 2 * BLK && itab + 8192 <= FUZZ_COPY);
  /* Two regular files under 1 MiB with extents among the first 32 inodes
   * (256 bytes each): mode, size, flags, then i_block at 0x28. */
  for (size_t ino = 12; ino <= 32 && itab + 8192 <= FUZZ_COPY; ino++) {
    const uint8_t *p = work + itab + (ino - 1) * 256;
    uint32_t size = (uint32_t) (p[4] | p[5] << 8 | p[6] << 16 | (uint32_t) p[7] << 24);

    if ((p[1] & 0xF0) == 0x80 && size > 0 && size < MIB && (p[0x22] & 0x08)) {
      if (a == 0)
        a = ino;
      else if (b == 0)
        b = ino;
    }
  }
  CHECK(a != 0 && b != 0);
  if (a == 0 || b == 0) {
    free(work);
    return;
  }
  memcpy(work + itab + (b - 1) * 256 + 0x28, work + itab + (a - 1) * 256 + 0x28, 60);
  /* a's first data block: the first extent's ee_start_lo (its high 16 bits
   * are 0 in an 8 GiB filesystem). */
  first = (uint64_t) (work[itab + (a - 1) * 256 + 0x28 + 12 + 8] |
                      work[itab + (a - 1) * 256 + 0x28 + 12 + 9] << 8 |
                      work[itab + (a - 1) * 256 + 0x28 + 12 + 10] << 16) * BLK;
  volume_layout_default_limits(&lim);
  CHECK_INTEQ(rc = scan_checked(&v, &lim, &l), 0);
  if (rc == 0) {
    for (size_t i = 0; i < l.nsmall; i++)
      if (first >= l.small[i].off && first - l.small[i].off < l.small[i].len)
        holding++;
    CHECK_INTEQ(holding, 1);
  }
  volume_layout_free(&l);
  free(work);
}

/* CRC-32 as GPT uses it (reflected, 0xedb88320). */
static uint32_t
crc32_gpt(const uint8_t *p, size_t n)
{
  uint32_t c = 0xffffffffu;

  while (n--) {
    c ^= *p++;
    for (int k = 0; k < 8; k++)
      c = (c >> 1) ^ (0xedb88320u & -(c & 1));
  }
  return ~c;
}

/* Image 2 with an MBR, then with a GPT (checksums right, though the parser
 * need not check them): the filesystem in the partition at 1 MiB. */
void
partition_cases(struct vol *v)
{
  static uint8_t gpt[1024 + 128 * 128];
  static const uint8_t linux_fs[16] = { 0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47,
                                        0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4 };
  uint64_t last = PART_IMG / 512 - 1;
  uint8_t *h = gpt + 512, *e = gpt + 1024;

  phase("MBR partition at 1 MiB");
  gpt[446 + 4] = 0x83;
  put_le(gpt + 446 + 8, PART_OFF / 512, 4);
  put_le(gpt + 446 + 12, PART_FS / 512, 4);
  gpt[510] = 0x55;
  gpt[511] = 0xaa;
  CHECK(pwrite(v->fd, gpt, 512, 0) == 512);
  check_ext4(v, PART_OFF, 2);

  phase("GPT partition at 1 MiB");
  memset(gpt + 446, 0, 16);
  gpt[446 + 4] = 0xee;
  put_le(gpt + 446 + 8, 1, 4);
  put_le(gpt + 446 + 12, min64(last, 0xffffffffu), 4);
  memcpy(e, linux_fs, 16);
  memset(e + 16, 0x5a, 16);             /* unique partition GUID */
  put_le(e + 32, PART_OFF / 512, 8);
  put_le(e + 40, (PART_OFF + PART_FS) / 512 - 1, 8);
  memcpy(h, "EFI PART", 8);
  put_le(h + 8, 0x00010000, 4);
  put_le(h + 12, 92, 4);
  put_le(h + 24, 1, 8);
  put_le(h + 32, last, 8);
  put_le(h + 40, 34, 8);
  put_le(h + 48, last - 33, 8);
  memset(h + 56, 0xa5, 16);             /* disk GUID */
  put_le(h + 72, 2, 8);
  put_le(h + 80, 128, 4);
  put_le(h + 84, 128, 4);
  put_le(h + 88, crc32_gpt(e, 128 * 128), 4);
  put_le(h + 16, crc32_gpt(h, 92), 4);
  CHECK(pwrite(v->fd, gpt, sizeof gpt, 0) == (ssize_t) sizeof gpt);
  check_ext4(v, PART_OFF, 2);
  /* Reading 128 GPT entries is many more reads to fail than image 1's. */
  phase("GPT image, failing reads");
  failure_cases(v);
}

/* Zeros, random bytes, and partition tables pointing past the end or
 * claiming 2^32 entries: no filesystem, no hints, no read outside. */
void
foreign_cases(void)
{
  static uint8_t sec[1024];
  struct vol zeros = { .kind = VOL_MEM, .fd = -1, .size = 64 * MIB, .fail_after = -1 };
  struct vol rnd = { .kind = VOL_RANDOM, .fd = -1, .size = 64 * MIB, .fail_after = -1 };
  struct vol mbr = { .kind = VOL_MEM, .fd = -1, .mem = sec, .memlen = sizeof sec, .size = 64 * MIB,
                     .fail_after = -1 };
  struct vol *vols[] = { &zeros, &rnd, &mbr, &mbr };
  struct layout_limits lim;
  struct volume_layout l;

  volume_layout_default_limits(&lim);
  sec[446 + 4] = 0x83;
  put_le(sec + 446 + 8, 0xffffff00u, 4);
  put_le(sec + 446 + 12, 0xffffffffu, 4);
  sec[462 + 4] = 0x83;
  put_le(sec + 462 + 8, 2048, 4);
  put_le(sec + 462 + 12, 0xffffffffu, 4);
  sec[510] = 0x55;
  sec[511] = 0xaa;
  for (size_t i = 0; i < sizeof vols / sizeof vols[0]; i++) {
    if (i == 3) {                       /* now a GPT with absurd fields */
      memset(sec + 446, 0, 32);
      sec[446 + 4] = 0xee;
      put_le(sec + 446 + 8, 1, 4);
      put_le(sec + 446 + 12, 0xffffffffu, 4);
      memcpy(sec + 512, "EFI PART", 8);
      put_le(sec + 512 + 12, 92, 4);
      put_le(sec + 512 + 72, 0xfffffffffffff000ull, 8);
      put_le(sec + 512 + 80, 0xffffffffu, 4);
      put_le(sec + 512 + 84, 0xffffffffu, 4);
    }
    CHECK_INTEQ(scan_checked(vols[i], &lim, &l), 0);
    CHECK_INTEQ(l.nfilesystems, 0);
    CHECK_INTEQ(l.nfiles, 0);
    CHECK_INTEQ(l.nmeta, 0);
    volume_layout_free(&l);
  }
}
