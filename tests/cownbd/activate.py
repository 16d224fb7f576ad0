#!/usr/bin/env python3
"""activate.py SOCKET NFDS|file|closed|shutdown PROGRAM ARGS...: runs
PROGRAM as a service manager activates it (sd_listen_fds(3)): NFDS
listening UNIX sockets (the first bound to SOCKET) as fds 3, 4, ... with
LISTEN_PID and LISTEN_FDS; or with "file", fd 3 the regular file SOCKET (a
broken activation); with "closed", LISTEN_FDS=1 and no fd 3 at all. With
"shutdown" one socket, which the manager shuts down (its copy) 0.3 s after
the start: PROGRAM must not go on spinning on it. Exits with PROGRAM's
status; with "shutdown", PROGRAM is killed 1.5 s after the start if still
there (status 124), and "cpu SECONDS" (its user+system time) is printed
on stderr."""
import os
import socket
import sys
import time

path, what, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
fds = []
shutdown = what == "shutdown"
if what == "file":
    fds.append(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
elif what != "closed":
    for i in range(1 if shutdown else int(what)):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path if i == 0 else "%s.%d" % (path, i))
        s.listen(8)
        fds.append(os.dup(s.fileno()))
pid = os.fork()
if pid == 0:
    for i, fd in enumerate(fds):
        if fd != 3 + i:
            os.dup2(fd, 3 + i)
        os.set_inheritable(3 + i, True)
    if not fds:
        os.closerange(3, 4)
    os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(max(len(fds), 1)))
    os.execvp(argv[0], argv)
if not shutdown:
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
time.sleep(0.3)
socket.socket(fileno=fds[0]).shutdown(socket.SHUT_RDWR)
for _ in range(120):
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.01)
else:
    os.kill(pid, 9)
    _, status, usage = os.wait4(pid, 0)
    status = 124 << 8
print("cpu %.2f" % (usage.ru_utime + usage.ru_stime), file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
