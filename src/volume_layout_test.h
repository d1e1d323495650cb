/* volume_layout_test.h - what the two halves of volume_layout_test share:
 * the test volume (reads and hints counted and checked), the promises every
 * scan must keep, and the damaged-input cases (volume_layout_test_damaged.c)
 * that main() in volume_layout_test.c runs on its images. */
#ifndef EBSFS_VOLUME_LAYOUT_TEST_H
#define EBSFS_VOLUME_LAYOUT_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "volume_layout.h"

#define KIB 1024ull
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)
#define BLK 4096u
#define HDR_LEN 33                      /* "FILE %-8s OFF %014llu\n" */
#define IMG1_SIZE (8 * GIB)
#define PART_OFF MIB                    /* where image 2's filesystem starts */
#define PART_FS (2 * GIB)
#define PART_IMG (PART_OFF + PART_FS + MIB)
#define IMG3_SIZE (256 * MIB)
#define FUZZ_COPY (8 * MIB)             /* what of image 1 the fuzzer keeps */
#define FUZZ_ITERS 3000u

enum vol_kind { VOL_FD, VOL_MEM, VOL_RANDOM };

struct vol {
  enum vol_kind kind;
  int fd;
  const uint8_t *mem;           /* VOL_MEM: memlen bytes, zeros after */
  size_t memlen;
  uint64_t size;
  long reads, fail_after;       /* fail_after < 0: never fail */
  bool failed;
  long oob;                     /* reads reaching past the volume's end */
  /* Inode table hints (scan_checked): each range, the read count when it
   * came, and whether a read reached it since; and the meta hints. */
  uint64_t hint_off[64], hint_len[64];
  long hint_at[64];
  bool hint_read[64];
  size_t nhints;
  struct layout_range meta_hints[64];
  size_t nmeta_hints;
  long hint_problems;           /* bad, repeated, or after a read of its range */
  uint64_t hint_ahead;          /* the most hinted and not yet read */
  uint64_t hint_max;            /* the longest hint */
};

/* volume_layout_test.c */
void phase(const char *name);
uint64_t min64(uint64_t a, uint64_t b);
void put_le(uint8_t *p, uint64_t x, int n);
uint64_t splitmix(uint64_t x);
int vol_read(void *ctx, uint64_t off, void *buf, size_t len);
const char *layout_problem(const struct volume_layout *l, uint64_t size,
                           const struct layout_limits *lim);
int scan_checked(struct vol *v, const struct layout_limits *lim, struct volume_layout *l);
void check_ext4(struct vol *v, uint64_t min_start, uint32_t min_big_ranges);

/* volume_layout_test_damaged.c */
void failure_cases(struct vol *v);
void fuzz(struct vol *v1);
void shared_blocks_case(struct vol *v1);
void partition_cases(struct vol *v);
void foreign_cases(void);

#endif
