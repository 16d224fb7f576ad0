#!/usr/bin/env python3
"""Helpers for bench/vmstate.sh (not part of the test suite).

  vmstate_qmp.py first-output CMD...      runs CMD (a VMM restoring a snapshot),
        prints the ms from exec to the first byte in $CONSOLE, kills CMD.
  vmstate_qmp.py hmp SOCKET COMMAND...    connects to a QMP socket, runs each
        HMP command, prints "<command>\t<ms>\t<reply>" per command."""
import json
import os
import signal
import socket
import subprocess
import sys
import time


def first_output(cmd):
    console = os.environ["CONSOLE"]
    if os.path.exists(console):
        os.unlink(console)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = t0 + 20
    ms = None
    while time.perf_counter() < deadline:
        try:
            if os.stat(console).st_size > 0:
                ms = (time.perf_counter() - t0) * 1000
                break
        except FileNotFoundError:
            pass
        if p.poll() is not None:
            break
    p.send_signal(signal.SIGKILL)
    err = p.communicate()[1].decode(errors="replace")
    if ms is None:
        sys.exit("no output: " + err)
    inner = [l.split("ready to run ")[1].split(" ms")[0] for l in err.splitlines() if "ready to run" in l]
    print("%.2f %s" % (ms, inner[0] if inner else "?"))


def hmp(path, commands):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    for _ in range(600):
        try:
            s.connect(path)
            break
        except OSError:
            time.sleep(0.05)
    f = s.makefile("rwb", buffering=0)

    def reply():
        while True:
            msg = json.loads(f.readline())
            if "return" in msg or "error" in msg:
                return msg

    f.readline()
    f.write(b'{"execute": "qmp_capabilities"}\n')
    reply()
    for c in commands:
        t0 = time.perf_counter()
        f.write(json.dumps({"execute": "human-monitor-command", "arguments": {"command-line": c}}).encode() + b"\n")
        r = reply()
        ms = (time.perf_counter() - t0) * 1000
        print("%s\t%.1f\t%s" % (c, ms, json.dumps(r.get("return", r.get("error")))))
        sys.stdout.flush()
    f.write(b'{"execute": "quit"}\n')
    try:
        reply()
    except (ValueError, OSError):
        pass


if sys.argv[1] == "first-output":
    first_output(sys.argv[2:])
else:
    hmp(sys.argv[2], sys.argv[3:])
