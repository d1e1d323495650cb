/* readpath_driver.c - exercise the read path against an EBS endpoint (the
 * emulator in tests/readpath-emulator.sh), without FUSE.
 *
 * Opens one snapshot with image_open() over the real transport, then, as
 * asked: reads a range sequentially in chunks at any offset, reads random
 * ranges from several threads, prints the SEEK_DATA/SEEK_HOLE map, walks the
 * whole index to measure its memory, or checks that one offset gives EIO.
 * Reads are compared byte for byte with a local copy of the image (-f).
 * Results are printed as key=value lines; exit 1 on any mismatch.
 *
 * Endpoint, region and credentials come from the usual AWS environment.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aws_config.h"
#include "block_cache.h"
#include "credentials.h"
#include "ebs.h"
#include "image.h"
#include "log.h"

struct opts {
  uint64_t cache_mib;
  unsigned readahead, max_requests, max_attempts;
  const char *expect_file;
  int expect_fd;
  bool sequential;
  uint64_t seq_off, seq_len;            /* seq_len 0: to the end */
  size_t chunk;
  unsigned passes;
  unsigned pause_s;                     /* sleep between passes */
  unsigned threads, random_reads;
  size_t random_max;
  bool seek_map, index_walk, open_only;
  int64_t eio_off;                      /* -1: none */
};

static double
now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

static long
rss_kib(void)
{
  char line[256];
  long kib = -1;
  FILE *f = fopen("/proc/self/status", "r");

  if (f == NULL)
    return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
      break;
  fclose(f);
  return kib;
}

/* Compare one reply with the local copy (zeros past its end). */
static uint64_t
compare(const struct opts *o, uint64_t off, const struct image_read *rd)
{
  static const size_t max = 8u << 20;
  char *want;
  uint64_t bad = 0, pos = 0;
  size_t s, total = 0;
  ssize_t got;

  if (o->expect_fd < 0)
    return 0;
  for (s = 0; s < rd->nseg; s++)
    total += rd->seg[s].len;
  if (total > max)
    return 1;
  want = calloc(1, total ? total : 1);
  if (want == NULL)
    return 1;
  got = pread(o->expect_fd, want, total, (off_t) off);
  if (got < 0)
    bad++;
  for (s = 0; s < rd->nseg && !bad; s++) {
    if (memcmp(rd->seg[s].mem, want + pos, rd->seg[s].len) != 0) {
      fprintf(stderr, "mismatch in [%" PRIu64 ", +%zu)\n", off + pos, rd->seg[s].len);
      bad++;
    }
    pos += rd->seg[s].len;
  }
  free(want);
  return bad;
}

static int
sequential(const struct opts *o, struct image *img, uint64_t *bytes, uint64_t *bad)
{
  struct image_reader *r = image_reader_new(img);
  uint64_t off = o->seq_off, end = o->seq_len ? o->seq_off + o->seq_len : image_size(img);

  if (r == NULL)
    return -ENOMEM;
  if (end > image_size(img))
    end = image_size(img);
  while (off < end) {
    struct image_read rd;
    size_t len = end - off < o->chunk ? (size_t) (end - off) : o->chunk;
    ssize_t n = image_read(r, off, len, &rd);

    if (n <= 0) {
      fprintf(stderr, "read at %" PRIu64 ": %s\n", off, n ? strerror((int) -n) : "EOF");
      image_reader_free(r);
      return n ? (int) n : -EIO;
    }
    *bad += compare(o, off, &rd);
    image_read_release(&rd);
    off += (uint64_t) n;
    *bytes += (uint64_t) n;
  }
  image_reader_free(r);
  return 0;
}

struct rthread {
  const struct opts *o;
  struct image *img;
  unsigned seed;
  uint64_t bytes, bad, errors;
};

static void *
random_thread(void *arg)
{
  struct rthread *t = arg;
  struct image_reader *r = image_reader_new(t->img);
  uint64_t size = image_size(t->img);
  unsigned i;

  if (r == NULL) {
    t->errors++;
    return NULL;
  }
  for (i = 0; i < t->o->random_reads; i++) {
    uint64_t off = (((uint64_t) rand_r(&t->seed) << 31) ^ (uint64_t) rand_r(&t->seed)) % size;
    size_t len = 1 + (size_t) rand_r(&t->seed) % t->o->random_max;
    struct image_read rd;
    ssize_t n = image_read(r, off, len, &rd);

    if (n < 0) {
      fprintf(stderr, "random read at %" PRIu64 ": %s\n", off, strerror((int) -n));
      t->errors++;
      continue;
    }
    t->bad += compare(t->o, off, &rd);
    t->bytes += (uint64_t) n;
    image_read_release(&rd);
  }
  image_reader_free(r);
  return NULL;
}

static int
seek_map(struct image *img)
{
  off_t pos = 0, size = (off_t) image_size(img);

  while (pos < size) {
    off_t data = image_seek(img, pos, SEEK_DATA), hole;

    if (data == -ENXIO)
      break;
    if (data < 0)
      return (int) data;
    hole = image_seek(img, data, SEEK_HOLE);
    if (hole < 0)
      return (int) hole;
    printf("data %lld %lld\n", (long long) data, (long long) hole);
    pos = hole;
  }
  return 0;
}

static void
usage(void)
{
  fprintf(stderr,
    "usage: readpath_driver [options] SNAPSHOT-ID\n"
    "  -f FILE    compare reads with this local copy of the image\n"
    "  -s         read sequentially (-o OFF -l LEN, chunks of -b BYTES, -p passes,\n"
    "             -w seconds between passes)\n"
    "  -t N -n M  N threads of M random reads up to -m BYTES each\n"
    "  -S         print the SEEK_DATA/SEEK_HOLE map\n"
    "  -I         walk the whole index and report its memory\n"
    "  -O         open only (time it)\n"
    "  -x OFF     expect EIO reading 1 byte at OFF\n"
    "  -c MIB cache, -a BLOCKS readahead cap, -R N max requests, -A N attempts\n");
  exit(2);
}

int
main(int argc, char **argv)
{
  struct opts o = { .cache_mib = 256, .chunk = 128 * 1024, .passes = 1,
                    .random_max = 1u << 20, .expect_fd = -1, .eio_off = -1 };
  struct credentials_options copts = { NULL, NULL };
  struct credentials_provider *creds;
  struct ebs_client_config cfg;
  struct ebs_client *client;
  struct block_cache *cache;
  struct image_options io;
  struct image *img;
  struct image_stats st;
  struct ebs_client_stats cs;
  struct ebs_error err;
  char msg[1024], *region, *endpoint;
  uint64_t bytes = 0, bad = 0, errors = 0;
  double t0, t_open;
  long rss0;
  int c, rc, status = 0;
  unsigned i;

  log_init("readpath_driver", LOG_LVL_WARN);
  while ((c = getopt(argc, argv, "f:so:l:b:p:w:t:n:m:SIOx:c:a:R:A:")) != -1) {
    switch (c) {
    case 'f': o.expect_file = optarg; break;
    case 's': o.sequential = true; break;
    case 'o': o.seq_off = strtoull(optarg, NULL, 0); break;
    case 'l': o.seq_len = strtoull(optarg, NULL, 0); break;
    case 'b': o.chunk = strtoul(optarg, NULL, 0); break;
    case 'p': o.passes = (unsigned) strtoul(optarg, NULL, 0); break;
    case 'w': o.pause_s = (unsigned) strtoul(optarg, NULL, 0); break;
    case 't': o.threads = (unsigned) strtoul(optarg, NULL, 0); break;
    case 'n': o.random_reads = (unsigned) strtoul(optarg, NULL, 0); break;
    case 'm': o.random_max = strtoul(optarg, NULL, 0); break;
    case 'S': o.seek_map = true; break;
    case 'I': o.index_walk = true; break;
    case 'O': o.open_only = true; break;
    case 'x': o.eio_off = strtoll(optarg, NULL, 0); break;
    case 'c': o.cache_mib = strtoull(optarg, NULL, 0); break;
    case 'a': o.readahead = (unsigned) strtoul(optarg, NULL, 0); break;
    case 'R': o.max_requests = (unsigned) strtoul(optarg, NULL, 0); break;
    case 'A': o.max_attempts = (unsigned) strtoul(optarg, NULL, 0); break;
    default: usage();
    }
  }
  if (optind + 1 != argc || o.chunk == 0 || o.random_max == 0)
    usage();
  if (o.expect_file) {
    o.expect_fd = open(o.expect_file, O_RDONLY);
    if (o.expect_fd < 0) {
      perror(o.expect_file);
      return 2;
    }
  }

  region = aws_resolve_region(NULL, aws_profile_name(NULL), msg, sizeof msg);
  if (region == NULL) {
    fprintf(stderr, "region: %s\n", msg);
    return 2;
  }
  endpoint = aws_resolve_endpoint(NULL, region, msg, sizeof msg);
  if (endpoint == NULL) {
    fprintf(stderr, "endpoint: %s\n", msg);
    return 2;
  }
  creds = credentials_provider_new(&copts);
  memset(&cfg, 0, sizeof cfg);
  cfg.endpoint = endpoint;
  cfg.region = region;
  cfg.credentials = creds;
  cfg.max_attempts = o.max_attempts;
  client = ebs_client_new(&cfg, &err);
  if (client == NULL) {
    fprintf(stderr, "client: %s\n", ebs_error_string(&err, msg, sizeof msg));
    return 2;
  }
  cache = block_cache_new(o.cache_mib << 20);
  memset(&io, 0, sizeof io);
  io.client = client;
  io.cache = cache;
  io.readahead_max_blocks = o.readahead;
  io.max_requests = o.max_requests;

  rss0 = rss_kib();
  t0 = now_s();
  rc = image_open(argv[optind], &io, &img, &err);
  t_open = now_s() - t0;
  if (rc < 0) {
    fprintf(stderr, "open: %s\n", ebs_error_string(&err, msg, sizeof msg));
    printf("open_errno=%d\n", -rc);
    status = 3;
    goto out;
  }
  printf("open_s=%.3f\nsize=%" PRIu64 "\n", t_open, image_size(img));

  if (o.seek_map && (rc = seek_map(img)) < 0) {
    fprintf(stderr, "seek: %s\n", strerror(-rc));
    errors++;
  }
  if (o.index_walk) {
    off_t pos = 0;

    t0 = now_s();
    /* SEEK_HOLE from every data extent walks (and loads) the whole index. */
    while ((uint64_t) pos < image_size(img)) {
      off_t d = image_seek(img, pos, SEEK_DATA);
      if (d == -ENXIO)
        break;
      if (d < 0 || (pos = image_seek(img, d, SEEK_HOLE)) < 0) {
        errors++;
        break;
      }
    }
    image_get_stats(img, &st);
    printf("index_walk_s=%.3f\nindex_listed_blocks=%" PRIu64 "\n"
           "index_memory_bytes=%" PRIu64 "\nindex_list_calls=%" PRIu64 "\n",
           now_s() - t0, st.index_listed_blocks, st.index_memory_bytes,
           st.index_list_calls);
    if (st.index_listed_blocks)
      printf("index_bytes_per_block=%.1f\n",
             (double) st.index_memory_bytes / (double) st.index_listed_blocks);
    printf("rss_growth_kib=%ld\n", rss_kib() - rss0);
  }
  for (i = 0; o.sequential && i < o.passes; i++) {
    if (i > 0 && o.pause_s)
      sleep(o.pause_s);
    t0 = now_s();
    rc = sequential(&o, img, &bytes, &bad);
    if (rc < 0)
      errors++;
    image_get_stats(img, &st);
    printf("pass%u_s=%.3f\npass%u_fetches=%" PRIu64 "\n", i, now_s() - t0, i, st.fetches);
  }
  if (o.threads && o.random_reads) {
    pthread_t th[64];
    struct rthread rt[64];

    if (o.threads > 64)
      o.threads = 64;
    for (i = 0; i < o.threads; i++) {
      rt[i] = (struct rthread) { &o, img, 12345u + i * 7919u, 0, 0, 0 };
      pthread_create(&th[i], NULL, random_thread, &rt[i]);
    }
    for (i = 0; i < o.threads; i++) {
      pthread_join(th[i], NULL);
      bytes += rt[i].bytes;
      bad += rt[i].bad;
      errors += rt[i].errors;
    }
  }
  if (o.eio_off >= 0) {
    struct image_reader *r = image_reader_new(img);
    struct image_read rd;
    ssize_t n = image_read(r, (uint64_t) o.eio_off, 1, &rd);

    printf("eio_read=%zd\n", n);
    if (n >= 0) {
      image_read_release(&rd);
      errors++;
    } else if (n != -EIO) {
      errors++;
    }
    image_reader_free(r);
  }

  image_get_stats(img, &st);
  ebs_client_get_stats(client, &cs);
  printf("bytes_read=%" PRIu64 "\nmismatches=%" PRIu64 "\nerrors=%" PRIu64 "\n"
         "fetches=%" PRIu64 "\nprefetches=%" PRIu64 "\nfetch_failures=%" PRIu64 "\n"
         "zero_blocks=%" PRIu64 "\nlist_calls=%" PRIu64 "\nrequests=%" PRIu64 "\n"
         "retries=%" PRIu64 "\n",
         bytes, bad, errors, st.fetches, st.prefetches, st.fetch_failures,
         st.zero_blocks, st.index_list_calls, cs.requests, cs.retries);
  if (bad || errors)
    status = 1;
  image_close(img);
out:
  block_cache_free(cache);
  ebs_client_free(client);
  credentials_provider_free(creds);
  free(region);
  free(endpoint);
  if (o.expect_fd >= 0)
    close(o.expect_fd);
  return status;
}
