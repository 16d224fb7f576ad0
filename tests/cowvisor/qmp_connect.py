"""Connecting the Python tests to a QMP socket that may not exist yet."""
import json
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


class Monitor:
    """A negotiated QMP session that keeps the events it reads."""

    def __init__(self, path):
        self.f = connect(path, timeout=10)
        self.events = []
        json.loads(self.f.readline())
        self.ask("qmp_capabilities")

    def _read(self):
        m = json.loads(self.f.readline())
        if "event" in m:
            self.events.append(m)
        return m

    def ask(self, cmd, **args):
        self.f.write(json.dumps({"execute": cmd, "arguments": args}).encode() + b"\n")
        while True:
            m = self._read()
            if "event" not in m:
                return m

    def wait(self, event, status=None, job=None):
        """Reads until the event (JOB_STATUS_CHANGE with status, of job if
        given) came; the socket's timeout ends a wait for an event that
        never comes."""
        def seen():
            return any(e["event"] == event and (status is None or e["data"].get("status") == status)
                       and (job is None or e["data"].get("id") == job) for e in self.events)
        while not seen():
            self._read()

    def take(self):
        ev, self.events = self.events, []
        return ev
