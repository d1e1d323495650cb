/* fuse_ops.c - libfuse low-level operations over src/image.h.
 *
 * The file system is one directory of image files whose inodes never
 * change, so every operation is a lookup in struct ebsfs_fs plus one image
 * call.  Reads answer with fuse_reply_data() straight from the block cache's
 * memory (image_read's segments): the only copy is the kernel's.  Snapshots
 * never change, so the kernel is told to keep its page cache and its
 * attributes for a long time.  Each operation answers with -errno from the
 * image layer, which has logged the cause once already.
 *
 * Writable images: writes and fsync go to the image's staging area; setattr
 * refuses any size change (a volume has a fixed size); the xattrs of
 * fuse_ops.h commit and report the last snapshot.
 */
#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fuse_ops.h"
#include "image.h"
#include "kernel_readahead.h"
#include "log.h"
#include "staging.h"

/* Nothing in the mount ever changes behind the kernel's back. */
#define ATTR_TIMEOUT 86400.0

#define FIRST_IMAGE_INO 2

/* What fi->fh points at: one per open(2). */
struct handle {
  struct image *img;
  struct image_reader *reader;  /* sequential-stream detection for this open */
  struct handle *prev, *next;   /* on fs->handles until released */
};

static void
handle_link(struct ebsfs_fs *fs, struct handle *h)
{
  pthread_mutex_lock(&fs->handles_lock);
  h->prev = NULL;
  h->next = fs->handles;
  if (fs->handles)
    fs->handles->prev = h;
  fs->handles = h;
  pthread_mutex_unlock(&fs->handles_lock);
}

static void
handle_free(struct ebsfs_fs *fs, struct handle *h)
{
  pthread_mutex_lock(&fs->handles_lock);
  if (h->prev)
    h->prev->next = h->next;
  else
    fs->handles = h->next;
  if (h->next)
    h->next->prev = h->prev;
  pthread_mutex_unlock(&fs->handles_lock);
  image_reader_free(h->reader);
  free(h);
}

int
ebsfs_fs_init(struct ebsfs_fs *fs)
{
  fs->handles = NULL;
  return -pthread_mutex_init(&fs->handles_lock, NULL);
}

void
ebsfs_fs_fini(struct ebsfs_fs *fs)
{
  while (fs->handles)
    handle_free(fs, fs->handles);
  pthread_mutex_destroy(&fs->handles_lock);
}

static struct ebsfs_fs *
fs_of(fuse_req_t req)
{
  return fuse_req_userdata(req);
}

/* The image behind an inode, or NULL (root or unknown). */
static struct image *
image_of(struct ebsfs_fs *fs, fuse_ino_t ino)
{
  if (ino < FIRST_IMAGE_INO || ino - FIRST_IMAGE_INO >= fs->nimages)
    return NULL;
  return fs->images[ino - FIRST_IMAGE_INO];
}

static int
fill_attr(struct ebsfs_fs *fs, fuse_ino_t ino, struct stat *st)
{
  struct image *img;

  memset(st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_uid = fs->uid;
  st->st_gid = fs->gid;
  st->st_atime = st->st_mtime = st->st_ctime = fs->mount_time;
  st->st_blksize = 512 * 1024;  /* a hint to readers: one EBS block */
  if (ino == FUSE_ROOT_ID) {
    st->st_mode = S_IFDIR | 0555;
    st->st_nlink = 2;
    return 0;
  }
  img = image_of(fs, ino);
  if (img == NULL)
    return -ENOENT;
  st->st_mode = S_IFREG | (image_writable(img) ? 0644 : 0444);
  st->st_nlink = 1;
  st->st_size = (off_t) image_size(img);
  /* How much is allocated is only known after listing the whole snapshot,
   * which mounting deliberately does not do.  Report one 4 KiB page: fewer
   * blocks than the size tells cp(1) and friends to look for holes with
   * SEEK_DATA (answered from the index), and a non-zero count keeps tar
   * from taking the file for one big hole. */
  st->st_blocks = st->st_size > 0 ? 8 : 0;
  return 0;
}

static void
op_init(void *userdata, struct fuse_conn_info *conn)
{
  (void) userdata;
  /* Let the kernel send several reads at once (its readahead and parallel
   * readers); the image layer fetches them in parallel. */
  if (conn->max_background < 64)
    conn->max_background = 64;
  if (conn->congestion_threshold < 48)
    conn->congestion_threshold = 48;
  /* Ask for 1 MiB reads; the kernel keeps the smaller of this and the
   * mount's read_ahead_kb, which main raised already (kernel_readahead.h). */
  conn->max_readahead = KERNEL_READAHEAD_KB * 1024u;
  log_debug(LOG_SUB_FUSE, "fuse: protocol %u.%u, max_write %u, max_read %u, max_readahead %u, "
            "max_background %u", conn->proto_major, conn->proto_minor, conn->max_write,
            conn->max_read, conn->max_readahead, conn->max_background);
}

static void
op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
  struct ebsfs_fs *fs = fs_of(req);
  struct fuse_entry_param e;

  if (parent != FUSE_ROOT_ID) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  for (size_t i = 0; i < fs->nimages; i++) {
    if (strcmp(name, image_snapshot_id(fs->images[i])) == 0) {
      memset(&e, 0, sizeof e);
      e.ino = FIRST_IMAGE_INO + i;
      e.attr_timeout = ATTR_TIMEOUT;
      e.entry_timeout = ATTR_TIMEOUT;
      fill_attr(fs, e.ino, &e.attr);
      fuse_reply_entry(req, &e);
      return;
    }
  }
  /* A negative entry may be cached just as long: the directory is fixed. */
  memset(&e, 0, sizeof e);
  e.entry_timeout = ATTR_TIMEOUT;
  fuse_reply_entry(req, &e);
}

static void
op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  struct stat st;
  int r;

  (void) fi;
  r = fill_attr(fs_of(req), ino, &st);
  if (r < 0)
    fuse_reply_err(req, -r);
  else
    fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

static void
op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
           struct fuse_file_info *fi)
{
  struct ebsfs_fs *fs = fs_of(req);
  struct image *img = image_of(fs, ino);
  struct stat st;

  (void) fi;
  if (img == NULL || !image_writable(img)) {
    fuse_reply_err(req, ino == FUSE_ROOT_ID || img ? EROFS : ENOENT);
    return;
  }
  /* A volume has a fixed size and no owner or mode of its own: only a
   * no-op truncate (O_TRUNC-less tools sometimes send one) is accepted. */
  if (to_set != FUSE_SET_ATTR_SIZE || (uint64_t) attr->st_size != image_size(img)) {
    fuse_reply_err(req, EPERM);
    return;
  }
  fill_attr(fs, ino, &st);
  fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

static void
op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
           struct fuse_file_info *fi)
{
  struct ebsfs_fs *fs = fs_of(req);
  size_t nentries = fs->nimages + 2, used = 0;
  char *buf;

  (void) fi;
  if (ino != FUSE_ROOT_ID) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  buf = malloc(size);
  if (buf == NULL) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  /* Entry k (0 ".", 1 "..", 2+i image i) carries offset k+1: the next one. */
  for (size_t k = off < 0 ? 0 : (size_t) off; k < nentries; k++) {
    struct stat st = { 0 };
    const char *name;
    size_t n;

    if (k < 2) {
      name = k == 0 ? "." : "..";
      st.st_ino = FUSE_ROOT_ID;
      st.st_mode = S_IFDIR;
    }
    else {
      name = image_snapshot_id(fs->images[k - 2]);
      st.st_ino = FIRST_IMAGE_INO + (k - 2);
      st.st_mode = S_IFREG;
    }
    n = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t) (k + 1));
    if (n > size - used)
      break;                    /* does not fit: the kernel asks again from here */
    used += n;
  }
  fuse_reply_buf(req, buf, used);
  free(buf);
}

static void
op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  struct ebsfs_fs *fs = fs_of(req);
  struct image *img = image_of(fs, ino);
  struct handle *h;

  if (img == NULL) {
    fuse_reply_err(req, ino == FUSE_ROOT_ID ? EISDIR : ENOENT);
    return;
  }
  if ((fi->flags & O_ACCMODE) != O_RDONLY && !image_writable(img)) {
    fuse_reply_err(req, EROFS);
    return;
  }
  h = calloc(1, sizeof *h);
  if (h == NULL) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  h->img = img;
  h->reader = image_reader_new(img);
  if (h->reader == NULL) {
    free(h);
    fuse_reply_err(req, ENOMEM);
    return;
  }
  fi->fh = (uint64_t) (uintptr_t) h;
  handle_link(fs, h);
  /* A read-only image is read with direct I/O by default: each read goes
   * from our buffers straight into the reader's, instead of being copied
   * into page-cache pages the kernel must first allocate and later reclaim.
   * A loop mount keeps its own cache above us, so ours would hold every page
   * twice; re-reads come from the block cache.  Measured on dd of 4 GiB: the
   * daemon's CPU per GiB halves and the throughput rises a third (RESULTS.md,
   * run 12).  The price is a shared mmap (the kernel refuses it with
   * ENODEV), hence -o kernel_cache.  Writable images keep the page cache, so
   * a reader never bypasses pages a writer has not flushed yet. */
  if (fs->kernel_cache || image_writable(img))
    fi->keep_cache = 1;         /* the snapshot cannot change: pages stay valid */
  else
    fi->direct_io = 1;
  if (fuse_reply_open(req, fi) != 0)
    handle_free(fs, h);         /* the opener is gone (interrupted): no release */
}

static void
op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
  struct handle *h = (struct handle *) (uintptr_t) fi->fh;

  (void) ino;
  if (h)
    handle_free(fs_of(req), h);
  fuse_reply_err(req, 0);
}

/* Enough image_read batches for any read the kernel sends (1 MiB with
 * 256-page requests; one batch holds up to 16 segments). */
#define READ_BATCHES 4

static void
op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
        struct fuse_file_info *fi)
{
  struct handle *h = (struct handle *) (uintptr_t) fi->fh;
  struct image_read rd[READ_BATCHES];
  struct iovec iov[READ_BATCHES * IMAGE_READ_MAX_SEGS];
  /* fuse_bufvec ends in a one-element array: give it room for the rest. */
  union {
    struct fuse_bufvec v;
    char room[sizeof(struct fuse_bufvec)
              + (READ_BATCHES * IMAGE_READ_MAX_SEGS - 1) * sizeof(struct fuse_buf)];
  } bv;
  /* libfuse declares buf[1]: reach the rest of `room` through a pointer
   * (indexing the array past 1 is what UBSan's bounds check rejects). */
  struct fuse_buf *bufs = bv.v.buf;
  bool all_mem = true;
  size_t nrd = 0, done = 0, nbuf = 0;
  ssize_t n = 0;
  int r;

  (void) ino;
  if (off < 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  /* image_read may return fewer bytes than asked before EOF (segment cap);
   * a short FUSE reply would read as EOF, so ask again for the rest. */
  while (done < size && nrd < READ_BATCHES) {
    n = image_read(h->reader, (uint64_t) off + done, size - done, &rd[nrd]);
    if (n <= 0)
      break;
    for (size_t s = 0; s < rd[nrd].nseg; s++) {
      const struct image_seg *seg = &rd[nrd].seg[s];
      struct fuse_buf *b = bufs + nbuf++;

      memset(b, 0, sizeof *b);
      b->size = seg->len;
      iov[nbuf - 1].iov_base = (void *) seg->mem;
      iov[nbuf - 1].iov_len = seg->len;
      if (seg->mem) {
        b->mem = (void *) seg->mem;
      }
      else {
        all_mem = false;
        b->flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
        b->fd = seg->fd;
        b->pos = seg->fd_offset;
      }
    }
    nrd++;
    done += (size_t) n;
  }

  if (n < 0) {
    /* Even after some good bytes: a short reply would read as EOF and make
     * the kernel shrink the file, so the whole read fails (EIO for a block
     * that could not be fetched, never wrong data). */
    fuse_reply_err(req, (int) -n);
  }
  else {
    bv.v.count = nbuf;
    bv.v.idx = 0;
    bv.v.off = 0;
    /* Memory segments go out in one writev straight from the cache
     * (fuse_reply_data would first copy several of them into a fresh
     * buffer); file segments need libfuse to read them. */
    if (nbuf == 0)
      r = fuse_reply_buf(req, NULL, 0);
    else if (all_mem)
      r = fuse_reply_iov(req, iov, (int) nbuf);
    else
      r = fuse_reply_data(req, &bv.v, FUSE_BUF_NO_SPLICE);
    if (r != 0)
      log_debug(LOG_SUB_FUSE, "fuse: read reply at %lld: %s", (long long) off, strerror(-r));
  }
  /* fuse_reply_data has written the bytes to /dev/fuse: the cache may
   * reuse the memory now. */
  for (size_t i = 0; i < nrd; i++)
    image_read_release(&rd[i]);
}

static void
op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
         off_t off, struct fuse_file_info *fi)
{
  struct handle *h = (struct handle *) (uintptr_t) fi->fh;
  ssize_t n;

  (void) ino;
  if (off < 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  n = image_write(h->img, buf, size, (uint64_t) off);
  if (n < 0)
    fuse_reply_err(req, (int) -n);
  else
    fuse_reply_write(req, (size_t) n);
}

static void
op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
  struct handle *h = (struct handle *) (uintptr_t) fi->fh;

  (void) ino;
  fuse_reply_err(req, -image_fsync(h->img, datasync != 0));
}

static void
op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
         struct fuse_file_info *fi)
{
  struct handle *h = (struct handle *) (uintptr_t) fi->fh;
  off_t r;

  (void) ino;
  /* The kernel answers SEEK_SET/CUR/END itself; holes are ours. */
  if (whence != SEEK_DATA && whence != SEEK_HOLE) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  r = image_seek(h->img, off, whence);
  if (r < 0)
    fuse_reply_err(req, (int) -r);
  else
    fuse_reply_lseek(req, r);
}

static void
op_statfs(fuse_req_t req, fuse_ino_t ino)
{
  struct ebsfs_fs *fs = fs_of(req);
  struct statvfs sv;
  uint64_t total = 0;

  (void) ino;
  for (size_t i = 0; i < fs->nimages; i++)
    total += image_size(fs->images[i]);
  memset(&sv, 0, sizeof sv);
  sv.f_bsize = 512 * 1024;
  sv.f_frsize = 4096;
  sv.f_blocks = (fsblkcnt_t) (total / 4096);
  sv.f_files = fs->nimages + 1;
  sv.f_namemax = 255;
  fuse_reply_statfs(req, &sv);
}

/* ---- extended attributes (writable images) --------------------------------------- */

static void
op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
            size_t size, int flags)
{
  struct ebsfs_fs *fs = fs_of(req);
  struct image *img = image_of(fs, ino);
  int r;

  (void) value; (void) size; (void) flags;
  if (img == NULL || strcmp(name, EBSFS_XATTR_COMMIT) != 0) {
    fuse_reply_err(req, img || ino == FUSE_ROOT_ID ? ENOTSUP : ENOENT);
    return;
  }
  if (!image_writable(img) || fs->commit == NULL) {
    fuse_reply_err(req, EROFS);
    return;
  }
  /* Blocks this worker thread for the whole commit: the caller waits. */
  r = fs->commit(fs->commit_arg, img);
  fuse_reply_err(req, r < 0 ? -r : 0);
}

static void
op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
  struct ebsfs_fs *fs = fs_of(req);
  struct image *img = image_of(fs, ino);
  char value[4096];
  size_t len;

  if (img == NULL || !image_writable(img)) {
    fuse_reply_err(req, img || ino == FUSE_ROOT_ID ? ENODATA : ENOENT);
    return;
  }
  if (strcmp(name, EBSFS_XATTR_LAST_ID) == 0)
    staging_last_committed(image_staging(img), value);
  else if (strcmp(name, EBSFS_XATTR_STAGING_DIR) == 0)
    snprintf(value, sizeof value, "%s", staging_dir(image_staging(img)));
  else
    value[0] = '\0';
  len = strlen(value);
  if (len == 0)
    fuse_reply_err(req, ENODATA);
  else if (size == 0)
    fuse_reply_xattr(req, len);
  else if (size < len)
    fuse_reply_err(req, ERANGE);
  else
    fuse_reply_buf(req, value, len);
}

const struct fuse_lowlevel_ops ebsfs_fuse_ops = {
  .init = op_init,
  .lookup = op_lookup,
  .getattr = op_getattr,
  .setattr = op_setattr,
  .readdir = op_readdir,
  .open = op_open,
  .release = op_release,
  .read = op_read,
  .write = op_write,
  .fsync = op_fsync,
  .lseek = op_lseek,
  .statfs = op_statfs,
  .setxattr = op_setxattr,
  .getxattr = op_getxattr,
};
