#!/usr/bin/env python3
"""activate.py SOCKET NFDS|file PROGRAM ARGS...: runs PROGRAM as a service
manager activates it (sd_listen_fds(3)): NFDS listening UNIX sockets (the
first bound to SOCKET) as fds 3, 4, ... with LISTEN_PID and LISTEN_FDS; or
with "file", fd 3 the regular file SOCKET (a broken activation). Exits with
PROGRAM's status."""
import os
import socket
import sys

path, what, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
fds = []
if what == "file":
    fds.append(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
else:
    for i in range(int(what)):
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
    os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(fds)))
    os.execvp(argv[0], argv)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
