/* --fork and --pid-file as qemu-nbd does them: the parent stays until the
 * daemon is listening, relaying what the daemon prints to stderr, and exits
 * 1 if it printed anything (an error), 0 otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cownbd.h"

static void relay_and_exit(int fd)
{
    char buf[1024];
    bool printed = false;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) != 0) {
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            cownbd_error("Cannot read from daemon: %s", strerror(errno));
            exit(1);
        }
        printed = true;
        if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
            exit(1);
        }
    }
    exit(printed ? 1 : 0);
}

int cownbd_daemonize(struct error *err)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        return error_set_errno(err, -errno, "Error setting up communication pipe");
    }
    pid_t pid = fork();
    if (pid < 0) {
        return error_set_errno(err, -errno, "Failed to fork");
    }
    if (pid > 0) {
        close(pipefd[1]);
        relay_and_exit(pipefd[0]);
    }
    close(pipefd[0]);
    int ret = daemon(1, 0);
    /* Until the server runs, errors go to the waiting parent. */
    dup2(pipefd[1], STDERR_FILENO);
    close(pipefd[1]);
    if (ret < 0) {
        return error_set_errno(err, -errno, "Failed to daemonize");
    }
    return 0;
}

void cownbd_daemon_ready(void)
{
    /* stdout is /dev/null in the daemon: closing the pipe lets the parent go. */
    dup2(STDOUT_FILENO, STDERR_FILENO);
}

int cownbd_write_pid_file(const char *path, struct error *err)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        return error_set_errno(err, -errno, "Cannot open pid file");
    }
    /* The lock is held (fd left open) for the life of the server. */
    if (lockf(fd, F_TLOCK, 0) < 0) {
        int e = errno;
        close(fd);
        return error_set_errno(err, -e, "Cannot lock pid file");
    }
    char text[32];
    int len = snprintf(text, sizeof(text), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || write(fd, text, (size_t)len) != len) {
        int e = errno;
        close(fd);
        return error_set_errno(err, -e, "Failed to write pid file");
    }
    return 0;
}
