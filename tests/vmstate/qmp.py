#!/usr/bin/env python3
"""A tiny QMP client for the tests: qmp.py SOCKET [COMMAND-JSON ...]

Connects, prints the greeting, then sends each argument (a JSON object, or
'qmp_capabilities'-style bare command names) and prints every line the
server sends back until the reply to that command (events included), one
JSON document per line. '@wait:EVENT' waits for an event; '@sleep:S' sleeps;
'@wait_output:FILE:TEXT' waits until FILE contains TEXT."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cowvisor"))
from qmp_connect import connect  # noqa: E402  (one connect loop for every Python test)


def main():
    f = connect(sys.argv[1], timeout=60)

    def readline():
        line = f.readline()
        if not line:
            print("EOF")
            sys.stdout.flush()
            sys.exit(0)
        text = line.decode().rstrip("\r\n")
        print(text)
        sys.stdout.flush()
        return json.loads(text)

    readline()  # greeting
    for arg in sys.argv[2:]:
        if arg.startswith("@wait:"):
            name = arg[6:]
            while readline().get("event") != name:
                pass
            continue
        if arg.startswith("@sleep:"):
            time.sleep(float(arg[7:]))
            continue
        if arg.startswith("@wait_output:"):
            _, fname, text = arg.split(":", 2)
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    with open(fname, errors="replace") as fh:
                        if text in fh.read():
                            break
                except OSError:
                    pass
                time.sleep(0.02)
            else:
                sys.exit("timed out waiting for %r in %s" % (text, fname))
            continue
        if arg.startswith("@raw:"):
            f.write(arg[5:].encode() + b"\n")
            readline()
            continue
        cmd = arg if arg.startswith("{") else json.dumps({"execute": arg})
        f.write(cmd.encode() + b"\n")
        while True:
            msg = readline()
            if "return" in msg or "error" in msg:
                break


main()
