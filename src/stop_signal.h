/* stop_signal.h - a stop signal also cancels what readers wait for.
 *
 * SIGTERM, SIGINT and SIGHUP end the FUSE loop (libfuse's handlers), but
 * libfuse then joins its worker threads, and one waiting for a block from
 * a stalled endpoint holds the exit until the fetch has used up its
 * retries (92 s measured).  stop_signal_watch chains a handler in front of
 * libfuse's that wakes a thread of ours, which runs a callback (cancel the
 * requests) while libfuse winds down.
 */
#ifndef EBSFS_STOP_SIGNAL_H
#define EBSFS_STOP_SIGNAL_H

/* After fuse_set_signal_handlers.  cb(arg) runs at most once, on the
 * watcher thread, after the first stop signal.  0 or -errno (nothing is
 * changed then). */
int stop_signal_watch(void (*cb)(void *arg), void *arg);

/* Puts libfuse's handlers back and joins the watcher (waiting for cb if it
 * runs): before fuse_remove_signal_handlers and before what cb uses goes.
 * Safe when watch failed or was never called. */
void stop_signal_unwatch(void);

#endif
