/* Service mode (see service.h). */
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "util/log.h"

void service_init(struct service *sv)
{
    sv->ready_fd = sv->pidfile_fd = -1;
    sv->pidfile[0] = 0;
}

/* The parent's side: one status byte then the message, or nothing when
 * the daemon died before it could say. */
static int wait_for_daemon(int fd)
{
    unsigned char status;
    ssize_t n;
    while ((n = read(fd, &status, 1)) < 0 && errno == EINTR) {
    }
    if (n != 1) {
        fprintf(stderr, "cowvisor: the daemon exited before it was ready\n");
        return 255;
    }
    char msg[1100];
    size_t len = 0;
    while (len < sizeof(msg) - 1 && (n = read(fd, msg + len, sizeof(msg) - 1 - len)) > 0) {
        len += (size_t)n;
    }
    msg[len] = 0;
    if (status && len) {
        fprintf(stderr, "cowvisor: %s\n", msg);
    }
    return status;
}

int service_daemonize(struct service *sv, int *status, struct error *err)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        return error_set_errno(err, -errno, "--daemonize: pipe");
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int ret = error_set_errno(err, -errno, "--daemonize: fork");
        close(p[0]);
        close(p[1]);
        return ret;
    }
    if (pid > 0) {
        close(p[1]);
        *status = wait_for_daemon(p[0]);
        close(p[0]);
        return 1;
    }
    close(p[0]);
    sv->ready_fd = p[1];
    setsid();   /* no controlling terminal: the shell's signals do not reach us */
    return 0;
}

static void tell_parent(struct service *sv, unsigned char status, const char *msg)
{
    if (sv->ready_fd < 0) {
        return;
    }
    ssize_t ignored = write(sv->ready_fd, &status, 1);
    if (msg) {
        ignored = write(sv->ready_fd, msg, strlen(msg));
    }
    (void)ignored;
    close(sv->ready_fd);
    sv->ready_fd = -1;
}

void service_ready(struct service *sv, bool keep_stderr)
{
    if (sv->ready_fd < 0) {
        return;
    }
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        if (!keep_stderr) {
            dup2(null, STDERR_FILENO);
        }
        close(null);
    }
    tell_parent(sv, 0, NULL);
}

void service_failed(struct service *sv, int status, const char *msg)
{
    tell_parent(sv, (unsigned char)(status ? status : 255), msg);
}

int service_pidfile(struct service *sv, const char *path, struct error *err)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        return error_set_errno(err, -errno, "--pidfile: cannot open '%s'", path);
    }
    struct flock lk = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    if (fcntl(fd, F_SETLK, &lk) < 0) {
        int ret = -errno;
        char other[32] = "";
        ssize_t n = pread(fd, other, sizeof(other) - 1, 0);
        other[n > 0 ? n : 0] = 0;
        other[strcspn(other, "\n")] = 0;
        close(fd);
        return error_set(err, ret == -EAGAIN || ret == -EACCES ? -EEXIST : ret,
                         "--pidfile: '%s' is held by a running process%s%s", path, other[0] ? ", pid " : "", other);
    }
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
        int ret = error_set_errno(err, -errno, "--pidfile: cannot write '%s'", path);
        close(fd);
        return ret;
    }
    /* Removed at exit by path: absolute, in case the directory changes. */
    if (!realpath(path, sv->pidfile)) {
        snprintf(sv->pidfile, sizeof(sv->pidfile), "%s", path);
    }
    sv->pidfile_fd = fd;
    return 0;
}

void service_end(struct service *sv)
{
    if (sv->pidfile_fd >= 0) {
        unlink(sv->pidfile);
        close(sv->pidfile_fd);
        sv->pidfile_fd = -1;
    }
    if (sv->ready_fd >= 0) {
        close(sv->ready_fd);
        sv->ready_fd = -1;
    }
}

int service_log(const char *target, struct error *err)
{
    if (strcmp(target, "syslog") == 0) {
        log_to_syslog("cowvisor");
        return 0;
    }
    int fd = open(target, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        return error_set_errno(err, -errno, "--log: cannot open '%s'", target);
    }
    fflush(stderr);
    if (dup2(fd, STDERR_FILENO) < 0) {
        int ret = error_set_errno(err, -errno, "--log: dup2");
        close(fd);
        return ret;
    }
    close(fd);
    setvbuf(stderr, NULL, _IOLBF, 0);
    return 0;
}

void service_set_name(const char *name)
{
    /* The kernel keeps 15 characters; threads started later inherit it. */
    char comm[16];
    snprintf(comm, sizeof(comm), "%s", name);
    prctl(PR_SET_NAME, comm, 0, 0, 0);
}
