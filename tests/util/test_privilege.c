/* --runas and --chroot (util/privilege.c): the drop reaches every thread,
 * sandboxed ones included, and cannot be undone. Dropping needs root: run
 * as another user the drop cases are skipped, and say so. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <seccomp.h>

#include "util/privilege.h"
#include "util/sandbox.h"

static void test_unknown_user(void **state)
{
    struct privilege_drop p;
    struct error err = { 0 };
    assert_int_equal(privilege_drop_prepare(&p, "no-such-user-cowvisor", NULL, &err), -ENOENT);
    assert_string_equal(err.msg, "User \"no-such-user-cowvisor\" doesn't exist");
    error_clear(&err);
    assert_true(privilege_drop_prepare(&p, "12:x", NULL, &err) < 0);
    error_clear(&err);
    assert_true(privilege_drop_prepare(&p, "root", NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "the user is root"));
    privilege_drop_free(&p);
}

static void test_bad_chroot(void **state)
{
    struct privilege_drop p;
    struct error err = { 0 };
    assert_int_equal(privilege_drop_prepare(&p, NULL, "/nonexistent/cowvisor", &err), -ENOENT);
    assert_non_null(strstr(err.msg, "--chroot '/nonexistent/cowvisor'"));
    error_clear(&err);
    assert_int_equal(privilege_drop_prepare(&p, NULL, "/etc/hostname", &err), -ENOTDIR);
    assert_int_equal(privilege_drop_prepare(&p, NULL, NULL, &err), 0);
    assert_false(privilege_drop_wanted(&p));
}

/* A thread started before the drop, in the I/O worker sandbox (as a
 * virtio-blk worker is): glibc makes it change its own ids, which its
 * filter must allow, or the process dies of SIGSYS. */
struct witness {
    int go[2], ready[2];
    pid_t tid;
};

static void *witness_main(void *opaque)
{
    struct witness *w = opaque;
    struct error err = { 0 };
    char c = 1;
    w->tid = gettid();
    if (sandbox_enter(SANDBOX_IO_WORKER, &err) == 0 && write(w->ready[1], &c, 1) == 1) {
        ssize_t n = read(w->go[0], &c, 1);
        (void)n;
    }
    return NULL;
}

/* The real uid of thread tid, from /proc (before any chroot). */
static long thread_uid(pid_t tid)
{
    char path[64], line[256];
    long uid = -1;
    snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)tid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof(line), f)) {
        if (sscanf(line, "Uid: %ld", &uid) == 1) {
            break;
        }
    }
    if (f) {
        fclose(f);
    }
    return uid;
}

/* In a child: exit 0 when every check holds, else the number of the
 * first that failed. */
static int drop_in_child(const char *dir, uid_t want_uid, gid_t want_gid, const char *user)
{
    struct privilege_drop p;
    struct error err = { 0 };
    struct witness w = { 0 };
    pthread_t t;
    char c = 1;
    if (privilege_drop_prepare(&p, user, dir, &err) < 0) {
        fprintf(stderr, "prepare: %s\n", err.msg);
        return 1;
    }
    if (getuid() == 0 && setgroups(1, &(gid_t){ 0 }) < 0) {
        return 10;      /* root's group among ours: the drop must remove it */
    }
    sandbox_allow_credential_change();
    if (pipe(w.go) < 0 || pipe(w.ready) < 0 || pthread_create(&t, NULL, witness_main, &w) != 0 ||
        read(w.ready[0], &c, 1) != 1) {
        return 2;
    }
    if (privilege_drop_apply(&p, &err) < 0) {
        fprintf(stderr, "apply: %s\n", err.msg);
        return 3;
    }
    if (!dir && thread_uid(w.tid) != (long)want_uid) {
        return 6;       /* the sandboxed thread kept root */
    }
    if (write(w.go[1], &c, 1) != 1) {
        return 4;
    }
    pthread_join(t, NULL);
    privilege_drop_free(&p);
    if (getuid() != want_uid || geteuid() != want_uid || getgid() != want_gid) {
        return 5;
    }
    gid_t groups[64];
    int n = getgroups(64, groups);
    for (int i = 0; i < n; i++) {
        if (groups[i] == 0) {
            return 7;   /* root's group kept */
        }
    }
    if (dir && (access("/marker", F_OK) != 0 || access(dir, F_OK) == 0)) {
        return 8;       /* not inside the new root */
    }
    if (setuid(0) != -1 || seteuid(0) != -1) {
        return 9;
    }
    return 0;
}

static void run_drop(const char *user, bool chroot, uid_t uid, gid_t gid)
{
    char dir[] = "/tmp/cowvisor-chroot-XXXXXX", marker[64];
    assert_non_null(mkdtemp(dir));
    chmod(dir, 0755);
    snprintf(marker, sizeof(marker), "%s/marker", dir);
    int fd = open(marker, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    close(fd);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        _exit(drop_in_child(chroot ? dir : NULL, uid, gid, user));
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    unlink(marker);
    rmdir(dir);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fail_msg("the drop to '%s' failed check %d (signal %d)", user, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
}

/* With --chroot: the process sees only the directory. */
static void test_drop_by_name(void **state)
{
    if (geteuid() != 0) {
        skip();
    }
    struct passwd *pw = getpwnam("nobody");
    assert_non_null(pw);
    run_drop("nobody", true, pw->pw_uid, pw->pw_gid);
}

/* Without: the sandboxed thread's own ids, read from /proc. */
static void test_drop_by_ids(void **state)
{
    if (geteuid() != 0) {
        skip();
    }
    run_drop("4242:4343", false, 4242, 4343);
}

/* The drop's failures, made to happen with a seccomp filter in a child:
 * the call named answers errno_value (0: "succeeds" without running).
 * arg0 >= 0 restricts the rule to that first argument. */
static int drop_failing(int syscall_nr, int errno_value, long arg0, int want_ret, const char *want_msg)
{
    struct privilege_drop p;
    struct error err = { 0 };
    if (privilege_drop_prepare(&p, "4242:4343", NULL, &err) < 0) {
        return 1;
    }
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    int rc = arg0 < 0 ? seccomp_rule_add(ctx, SCMP_ACT_ERRNO(errno_value), syscall_nr, 0)
                      : seccomp_rule_add(ctx, SCMP_ACT_ERRNO(errno_value), syscall_nr, 1,
                                         SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)arg0));
    if (!ctx || rc < 0 || seccomp_load(ctx) < 0) {
        return 2;
    }
    seccomp_release(ctx);
    if (privilege_drop_apply(&p, &err) != want_ret) {
        fprintf(stderr, "apply returned: %s\n", err.msg);
        return 3;
    }
    if (!strstr(err.msg, want_msg)) {
        fprintf(stderr, "message '%s' lacks '%s'\n", err.msg, want_msg);
        return 4;
    }
    privilege_drop_free(&p);
    return 0;
}

static void expect_drop_failure(int syscall_nr, int errno_value, long arg0, int want_ret, const char *want_msg)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        _exit(drop_failing(syscall_nr, errno_value, arg0, want_ret, want_msg));
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fail_msg("expected '%s': check %d failed (signal %d)", want_msg, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
}

/* Each step that fails stops the drop with its own error; a kernel that
 * lets setuid(0) succeed afterwards is caught, not trusted. */
static void test_drop_failures(void **state)
{
    if (geteuid() != 0) {
        skip();
    }
    expect_drop_failure(SCMP_SYS(setgid), EPERM, -1, -EPERM, "Failed to setgid(4343)");
    expect_drop_failure(SCMP_SYS(setgroups), EINVAL, -1, -EINVAL, "supplementary groups of uid 4242");
    expect_drop_failure(SCMP_SYS(setuid), EAGAIN, 4242, -EAGAIN, "Failed to setuid(4242)");
    expect_drop_failure(SCMP_SYS(setuid), 0, 0, -EPERM, "setuid(0) still succeeds");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_user),
        cmocka_unit_test(test_bad_chroot),
        cmocka_unit_test(test_drop_by_name),
        cmocka_unit_test(test_drop_by_ids),
        cmocka_unit_test(test_drop_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
