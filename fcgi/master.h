/* master.h: the prefork supervisor.
 *
 * Opens the FastCGI unix socket and the status socket beside it (cfg.h;
 * mode and group from the config), writes the pid file, creates the shared metrics table and forks the workers. Then it
 * only waits for signals:
 *   SIGCHLD  a worker died: logged, restarted with exponential backoff
 *            (100 ms doubling to 30 s while workers die within 5 s of start).
 *   SIGHUP   reload: parse the config again (a bad file is logged and the
 *            old config kept), start a new generation of workers, and stop
 *            the old ones once the new ones have their models loaded. The
 *            sockets stay open throughout, so accepted connections are never
 *            dropped. The socket's path, mode and group need a restart.
 *   SIGTERM/SIGINT  graceful stop: workers finish the request they are in,
 *            up to shutdown_timeout_ms, then are killed; the sockets and pid
 *            file are removed.
 *
 * Ownership: master_run() takes c and frees it (and its successors).
 */
#ifndef MASTER_H
#define MASTER_H

#include "cfg.h"

/* Returns the process exit status. */
int master_run(cfg *c);

#endif
