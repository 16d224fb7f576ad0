#!/usr/bin/env python3
"""console_mux.py STUB_VMM: the stdio console's escapes on a terminal (a
pty), against qemu-system-x86_64 -nographic's (-M pc, paused): Ctrl-A h's
help (ours lists a subset of QEMU's lines, in its order and words), Ctrl-A c
to the monitor (greeting, prompt, the line editor's echo, a command's
reply) and back, Ctrl-A x. The same keys reach cowvisor's real console mux
and HMP through the stub machine, whose guest echoes what it receives:
keys go to the guest only while the console has the focus, and Ctrl-A
Ctrl-A sends one Ctrl-A. HMP's quit ends the VM with status 0. Prints TAP."""
import os
import pty
import re
import select
import shutil
import sys
import termios
import time

STUB = sys.argv[1]
QEMU = shutil.which("qemu-system-x86_64")
n = 0


def ok(cond, what, detail=""):
    global n
    n += 1
    print(("ok %d - %s" if cond else "not ok %d - %s") % (n, what))
    if not cond and detail:
        for line in str(detail).splitlines():
            print("#   " + line)


class Term:
    def __init__(self, argv):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execv(argv[0], argv)
        # Ready once the program put the terminal in raw mode (no echo).
        for _ in range(200):
            if not termios.tcgetattr(self.fd)[3] & termios.ECHO:
                break
            time.sleep(0.05)

    def read(self, until=None, quiet=0.3, limit=10.0):
        """What the program prints: until `until` appears (then until it
        is quiet), or it is quiet once something came, or limit."""
        data, end, last = b"", time.time() + limit, time.time()
        while time.time() < end:
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if r:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                data, last = data + chunk, time.time()
            elif (data or until is None) and (until is None or until in data) and time.time() - last > quiet:
                break
        return data

    def send(self, keys, until=None):
        os.write(self.fd, keys)
        return self.read(until)

    def wait(self):
        for _ in range(200):
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            self.read(limit=0.05)
            time.sleep(0.05)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        return "killed"


SESSION = [b"\x01h", b"\x01c", b"info status\r", b"\x01c", b"\x01c", b"\x01x"]
UNTIL = [b"C-a C-a", b"(qemu) ", b"(qemu) ", b"\n", b"(qemu) ", b"Terminated"]


def session(argv):
    t = Term(argv)
    out = [t.send(k, u) for k, u in zip(SESSION, UNTIL)]
    return out, t.wait()


def normalize(text):
    text = re.sub(rb"QEMU [0-9.]+ monitor", b"QEMU V monitor", text)
    return re.sub(rb"VM status: [a-z() ]+", b"VM status: S", text)


ours, ours_status = session([STUB, "-"])
if QEMU:
    theirs, theirs_status = session([QEMU, "-M", "pc", "-nodefaults", "-nographic", "-serial", "mon:stdio", "-S"])
    # The terminal adds "\r" before "\n": QEMU's "\n\r" line ends show as "\r\n\r".
    qemu_help = theirs[0].split(b"\r\n\r")
    our_help = ours[0].split(b"\r\n\r")
    lines = our_help[1:-1]
    ok(our_help[0] == b"" and our_help[-1] == b"" and len(lines) == 4 and all(line in qemu_help for line in lines)
       and [qemu_help.index(line) for line in lines] == sorted(qemu_help.index(line) for line in lines),
       "Ctrl-A h: QEMU's help lines, in its order", "ours: %r\nqemu: %r" % (ours[0], theirs[0]))
    for i, what in [(1, "Ctrl-A c: the greeting and prompt"),
                    (2, "a command: the line editor's echo, the reply, the prompt"),
                    (3, "Ctrl-A c back to the console"), (4, "Ctrl-A c to the monitor again: the prompt"),
                    (5, "Ctrl-A x: QEMU's words")]:
        ok(normalize(ours[i]) == normalize(theirs[i]), what + " as QEMU's", "ours: %r\nqemu: %r" % (ours[i], theirs[i]))
    ok(theirs_status == 0 and ours_status == 0, "Ctrl-A x exits 0 (as QEMU)", (ours_status, theirs_status))
else:
    print("# qemu-system-x86_64 is not installed: only cowvisor's own checks")
    ok(ours_status == 0, "Ctrl-A x exits 0", ours_status)
ok(b"VM status: running" in ours[2], "the monitor runs HMP's info status", ours[2])

# Keys go to the guest (the stub echoes them) only while it has the focus.
t = Term([STUB, "-"])
ok(t.send(b"abc", b"abc") == b"abc", "the console's keys reach the guest")
ok(t.send(b"\x01\x01", b"\x01") == b"\x01", "Ctrl-A Ctrl-A sends one Ctrl-A")
t.send(b"\x01c", b"(qemu) ")
typed = t.send(b"xyz")
ok(b"xyz" in typed and typed.count(b"xyz") == 1 and b"\x1b[K" in typed, "keys in the monitor are its line, echoed", typed)
fixed = t.send(b"\x7f\x7f\x7f\x7fhelp\r", b"(qemu) ")
ok(b"info [subcommand]" in fixed and b"unknown command" not in fixed, "backspace edits the line", fixed)
ok(t.send(b"\x01c", b"\n") == b"\r\r\n", "back on the console nothing from the monitor is left")
ok(t.send(b"d", b"d") == b"d", "... and keys reach the guest again")
t.send(b"\x01c", b"(qemu) ")
t.send(b"quit\r")
ok(t.wait() == 0, "HMP quit ends the VM with status 0")
print("1..%d" % n)
