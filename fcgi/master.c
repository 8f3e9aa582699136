/* master.c: socket, pid file, worker supervision; see master.h. */
#define _GNU_SOURCE
#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core_err.h"
#include "elog.h"
#include "metrics.h"
#include "worker.h"

#define MASTER_SLOTS (2 * CFG_MAX_WORKERS)
#define MASTER_QUICK_DEATH_MS 5000
#define MASTER_BACKOFF_MIN_MS 100
#define MASTER_BACKOFF_MAX_MS 30000
#define MASTER_RELOAD_WAIT_MS 120000

typedef struct {
    pid_t pid; /* 0: unused entry */
    int slot;
    int gen;
    long long started_ms;
    bool stopping; /* sent SIGTERM */
} master_child;

typedef struct {
    cfg *cfg;
    char *socket_path; /* what we bound, for unlink at exit */
    char *status_path;
    char *pid_file;
    int listen_fd;
    int status_fd; /* the status socket (cfg.h) */
    metrics *mx;
    long long started;
    master_child kids[MASTER_SLOTS];
    int gen;
    int pending;          /* workers of the current generation to start */
    long long restart_at; /* when to start them (ms) */
    int quick_deaths;     /* consecutive workers that died young */
    bool stopping;
    long long stop_deadline;
    bool reloading; /* old generation still serving while the new one loads */
    long long reload_started;
} master_state;

static long long master_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- socket and pid file -------------------------------------------------- */

/* Creates the last directory of path's parent (like /run/edgegate). */
static int master_mkdir_parent(const char *path, char *msg, size_t msg_size)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return CORE_OK;
    *slash = '\0';
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return core_errf(CORE_EIO, msg, msg_size, "cannot create directory %s: %s", dir,
                         strerror(errno));
    return CORE_OK;
}

static int master_listen(const cfg *c, const char *path, int *out, char *msg, size_t msg_size)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return core_errf(CORE_EIO, msg, msg_size, "%s exists and is not a socket",
                             path);
        /* A socket nobody answers on is left from a crash; a live one means
         * another pool, which we must not steal from. */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            close(probe);
            return core_errf(CORE_EIO, msg, msg_size, "another process is listening on %s",
                             path);
        }
        if (probe >= 0)
            close(probe);
        unlink(path);
    }
    if (master_mkdir_parent(path, msg, msg_size) != CORE_OK)
        return CORE_EIO;

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return core_errf(CORE_EIO, msg, msg_size, "socket: %s", strerror(errno));
    /* Bind with a tight umask so the socket is never reachable by others
     * before its group and mode are set. */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    int e = errno;
    umask(old);
    if (rc != 0) {
        close(fd);
        return core_errf(CORE_EIO, msg, msg_size, "bind %s: %s", path, strerror(e));
    }
    if (c->socket_group && chown(path, (uid_t)-1, c->socket_gid) != 0) {
        e = errno;
        goto fail;
    }
    if (chmod(path, c->socket_mode) != 0 || listen(fd, 256) != 0) {
        e = errno;
        goto fail;
    }
    *out = fd;
    return CORE_OK;
fail:
    close(fd);
    unlink(path);
    return core_errf(CORE_EIO, msg, msg_size, "setting up %s (group %s, mode %04o): %s",
                     path, c->socket_group ? c->socket_group : "unchanged", c->socket_mode,
                     strerror(e));
}

static int master_pid_file(const char *path, char *msg, size_t msg_size)
{
    FILE *f = fopen(path, "r");
    if (f) {
        long pid = 0;
        int n = fscanf(f, "%ld", &pid);
        fclose(f);
        if (n == 1 && pid > 0 && pid != getpid() && (kill((pid_t)pid, 0) == 0 || errno == EPERM))
            return core_errf(CORE_EIO, msg, msg_size, "%s names running process %ld", path, pid);
        unlink(path);
    }
    if (master_mkdir_parent(path, msg, msg_size) != CORE_OK)
        return CORE_EIO;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return core_errf(CORE_EIO, msg, msg_size, "cannot create %s: %s", path, strerror(errno));
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    bool ok = write(fd, buf, (size_t)n) == n;
    close(fd);
    if (!ok) {
        unlink(path);
        return core_errf(CORE_EIO, msg, msg_size, "cannot write %s", path);
    }
    return CORE_OK;
}

/* ---- workers ------------------------------------------------------------- */

static int master_alive(const master_state *s, int gen)
{
    int n = 0;
    for (int i = 0; i < MASTER_SLOTS; i++)
        n += s->kids[i].pid > 0 && (gen < 0 || s->kids[i].gen == gen);
    return n;
}

static int master_spawn(master_state *s)
{
    int slot = metrics_slot_acquire(s->mx);
    if (slot < 0) {
        elog_msg(ELOG_ERROR, "no free worker slot (too many workers still stopping)");
        return -1;
    }
    master_child *k = &s->kids[slot];
    pid_t pid = fork();
    if (pid < 0) {
        elog_msg(ELOG_ERROR, "fork: %s", strerror(errno));
        metrics_slot_release(s->mx, slot);
        return -1;
    }
    if (pid == 0) {
        worker_params wp = {.cfg = s->cfg,
                            .metrics = s->mx,
                            .slot = slot,
                            .listen_fd = s->listen_fd,
                            .status_fd = s->status_fd,
                            .started = s->started};
        /* _exit: the master's atexit handlers and stdio buffers are not ours. */
        _exit(worker_main(&wp));
    }
    metrics_slot_bind(s->mx, slot, pid);
    *k = (master_child){.pid = pid, .slot = slot, .gen = s->gen, .started_ms = master_now_ms()};
    elog_ev(ELOG_INFO, "worker started", ELOG_I("worker_pid", pid), ELOG_I("slot", slot),
            ELOG_I("generation", s->gen));
    return 0;
}

static void master_spawn_pending(master_state *s)
{
    while (s->pending > 0 && master_now_ms() >= s->restart_at) {
        if (master_spawn(s) != 0) {
            s->restart_at = master_now_ms() + MASTER_BACKOFF_MAX_MS / 10;
            return;
        }
        s->pending--;
    }
}

static void master_signal_gen(master_state *s, int gen, int sig)
{
    for (int i = 0; i < MASTER_SLOTS; i++) {
        master_child *k = &s->kids[i];
        if (k->pid > 0 && (gen < 0 || k->gen == gen)) {
            kill(k->pid, sig);
            if (sig == SIGTERM)
                k->stopping = true;
        }
    }
}

static void master_reap(master_state *s)
{
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0)
            return;
        master_child *k = NULL;
        for (int i = 0; i < MASTER_SLOTS && !k; i++)
            if (s->kids[i].pid == pid)
                k = &s->kids[i];
        if (!k)
            continue;
        long long lived = master_now_ms() - k->started_ms;
        metrics_slot_release(s->mx, k->slot);
        bool expected = k->stopping || s->stopping;
        char how[48];
        if (WIFEXITED(st))
            snprintf(how, sizeof(how), "exit %d", WEXITSTATUS(st));
        else
            snprintf(how, sizeof(how), "signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
        elog_ev(expected ? ELOG_INFO : ELOG_ERROR,
                expected ? "worker stopped" : "worker died", ELOG_I("worker_pid", pid),
                ELOG_I("slot", k->slot), ELOG_S("status", how), ELOG_I("lived_ms", lived),
                ELOG_I("generation", k->gen));
        int gen = k->gen;
        *k = (master_child){0};
        if (expected || gen != s->gen)
            continue;
        /* Die young repeatedly (bad model, crash at load) and the delay
         * doubles, so a broken setup does not spin the CPU. */
        s->quick_deaths = lived < MASTER_QUICK_DEATH_MS ? s->quick_deaths + 1 : 0;
        long long delay = 0;
        if (s->quick_deaths > 0) {
            delay = MASTER_BACKOFF_MIN_MS;
            for (int i = 1; i < s->quick_deaths && delay < MASTER_BACKOFF_MAX_MS; i++)
                delay *= 2;
            if (delay > MASTER_BACKOFF_MAX_MS)
                delay = MASTER_BACKOFF_MAX_MS;
        }
        long long at = master_now_ms() + delay;
        if (s->pending == 0 || at > s->restart_at)
            s->restart_at = at;
        s->pending++;
        metrics_count_restart(s->mx);
        elog_ev(ELOG_WARN, "restarting worker", ELOG_I("delay_ms", delay),
                ELOG_I("quick_deaths", s->quick_deaths));
    }
}

static void master_reload(master_state *s)
{
    char msg[512];
    cfg *nc = NULL;
    int rc = cfg_load(s->cfg->file, &nc, msg, sizeof(msg));
    if (rc != CORE_OK) {
        elog_ev(ELOG_ERROR, "reload failed; keeping the running config", ELOG_S("error", msg));
        return;
    }
    if (strcmp(nc->socket, s->socket_path) != 0 || nc->socket_mode != s->cfg->socket_mode ||
        (nc->socket_group ? nc->socket_gid : (gid_t)-1) !=
            (s->cfg->socket_group ? s->cfg->socket_gid : (gid_t)-1))
        elog_msg(ELOG_WARN, "socket settings changed; they take effect after a restart");
    if (elog_open(nc->log_file, nc->log_level, msg, sizeof(msg)) != CORE_OK)
        elog_ev(ELOG_ERROR, "cannot reopen the log; keeping the old one", ELOG_S("error", msg));
    cfg_free(s->cfg);
    s->cfg = nc;
    s->gen++;
    s->pending = s->cfg->workers;
    s->restart_at = 0;
    s->quick_deaths = 0;
    s->reloading = true;
    s->reload_started = master_now_ms();
    metrics_set_configured(s->mx, s->cfg->workers);
    metrics_count_reload(s->mx);
    elog_ev(ELOG_INFO, "reloading", ELOG_I("generation", s->gen), ELOG_I("workers", s->cfg->workers));
    master_spawn_pending(s);
}

/* The old generation stops once every new worker has its model (or a
 * worker of the new generation gave up, or loading takes too long). */
static void master_reload_progress(master_state *s)
{
    if (!s->reloading)
        return;
    int ready = 0, alive = 0;
    for (int i = 0; i < MASTER_SLOTS; i++) {
        const master_child *k = &s->kids[i];
        if (k->pid > 0 && k->gen == s->gen) {
            alive++;
            ready += metrics_slot_model_loaded(s->mx, k->slot);
        }
    }
    bool done = (ready >= s->cfg->workers) || (alive > 0 && ready == alive && s->pending == 0) ||
                master_now_ms() - s->reload_started > MASTER_RELOAD_WAIT_MS;
    if (!done)
        return;
    for (int g = 0; g < s->gen; g++)
        master_signal_gen(s, g, SIGTERM);
    s->reloading = false;
    elog_ev(ELOG_INFO, "reload done", ELOG_I("generation", s->gen), ELOG_I("ready", ready));
}

static void master_begin_stop(master_state *s, int sig)
{
    s->stopping = true;
    s->pending = 0;
    s->stop_deadline = master_now_ms() + s->cfg->shutdown_timeout_ms;
    elog_ev(ELOG_INFO, "stopping", ELOG_S("signal", strsignal(sig)),
            ELOG_I("workers", master_alive(s, -1)),
            ELOG_I("shutdown_timeout_ms", s->cfg->shutdown_timeout_ms));
    master_signal_gen(s, -1, SIGTERM);
}

int master_run(cfg *c)
{
    master_state s = {.cfg = c, .listen_fd = -1, .status_fd = -1, .started = (long long)time(NULL)};
    char msg[512];
    int status = 1;
    bool pid_written = false;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    /* Blocked from the start and taken with sigtimedwait(): no handlers, no
     * races; workers inherit the mask and open it where they choose. */
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (elog_open(c->log_file, c->log_level, msg, sizeof(msg)) != CORE_OK) {
        fprintf(stderr, "edgegate-fcgi: %s\n", msg);
        goto out;
    }
    s.socket_path = strdup(c->socket);
    s.status_path = strdup(c->status_socket);
    s.pid_file = c->pid_file ? strdup(c->pid_file) : NULL;
    s.mx = metrics_create(MASTER_SLOTS);
    if (!s.socket_path || !s.status_path || (c->pid_file && !s.pid_file) || !s.mx) {
        elog_msg(ELOG_ERROR, "out of memory at start");
        goto out;
    }
    if (s.pid_file) {
        if (master_pid_file(s.pid_file, msg, sizeof(msg)) != CORE_OK) {
            elog_ev(ELOG_ERROR, "cannot start", ELOG_S("error", msg));
            free(s.pid_file);
            s.pid_file = NULL;
            goto out;
        }
        pid_written = true;
    }
    if (master_listen(c, c->socket, &s.listen_fd, msg, sizeof(msg)) != CORE_OK) {
        elog_ev(ELOG_ERROR, "cannot start", ELOG_S("error", msg));
        free(s.socket_path);
        s.socket_path = NULL;
        goto out;
    }
    if (master_listen(c, c->status_socket, &s.status_fd, msg, sizeof(msg)) != CORE_OK) {
        elog_ev(ELOG_ERROR, "cannot start", ELOG_S("error", msg));
        free(s.status_path);
        s.status_path = NULL;
        goto out;
    }
    metrics_set_configured(s.mx, c->workers);
    elog_ev(ELOG_INFO, "pool started", ELOG_S("config", c->file), ELOG_S("socket", c->socket),
            ELOG_I("workers", c->workers), ELOG_S("model", c->models[0].id));
    s.pending = c->workers;
    master_spawn_pending(&s);

    while (!s.stopping || master_alive(&s, -1) > 0) {
        long long now = master_now_ms();
        long long wait = 1000;
        if (s.pending > 0 && !s.stopping)
            wait = s.restart_at > now ? s.restart_at - now : 0;
        if (s.reloading && wait > 50)
            wait = 50;
        if (s.stopping) {
            long long left = s.stop_deadline - now;
            if (left <= 0) {
                elog_ev(ELOG_WARN, "shutdown timeout; killing workers",
                        ELOG_I("workers", master_alive(&s, -1)));
                master_signal_gen(&s, -1, SIGKILL);
                s.stop_deadline = now + 1000;
                left = 1000;
            }
            if (wait > left)
                wait = left;
        }
        struct timespec ts = {.tv_sec = wait / 1000, .tv_nsec = (wait % 1000) * 1000000};
        siginfo_t info;
        int sig = sigtimedwait(&set, &info, &ts);
        if (sig == SIGCHLD) {
            master_reap(&s);
        } else if (sig == SIGHUP) {
            if (!s.stopping)
                master_reload(&s);
        } else if (sig == SIGTERM || sig == SIGINT) {
            if (!s.stopping)
                master_begin_stop(&s, sig);
        }
        master_reap(&s); /* SIGCHLDs merge; never trust the count */
        if (!s.stopping) {
            master_spawn_pending(&s);
            master_reload_progress(&s);
        }
    }
    status = 0;
    elog_msg(ELOG_INFO, "pool stopped");
out:
    if (s.listen_fd >= 0)
        close(s.listen_fd);
    if (s.status_fd >= 0)
        close(s.status_fd);
    if (s.socket_path)
        unlink(s.socket_path);
    if (s.status_path)
        unlink(s.status_path);
    if (pid_written)
        unlink(s.pid_file);
    free(s.socket_path);
    free(s.status_path);
    free(s.pid_file);
    metrics_destroy(s.mx);
    cfg_free(s.cfg);
    elog_close();
    return status;
}
