"""Connecting the Python tests to a QMP socket that may not exist yet."""
import socket
import time


def connect(path, timeout=30):
    """The socket's file (read/write, unbuffered) once the server listens;
    the greeting is still to be read."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    for _ in range(200):
        try:
            s.connect(path)
            break
        except OSError:
            time.sleep(0.05)
    else:
        raise SystemExit("cannot connect to " + path)
    s.settimeout(timeout)
    return s.makefile("rwb", buffering=0)
