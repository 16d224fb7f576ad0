#!/usr/bin/env python3
"""A raw NBD client for the cownbd tests.

  nbd_client.py dump SOCKET         block status (both contexts) and the
                                    chunks of structured reads, as text
  nbd_client.py hostile SOCKET RO-SOCKET
                                    malformed and out-of-range messages;
                                    prints "PASS what" or "FAIL what: why"

Hostile checks expect the server on SOCKET to export a writable qcow2 image
of 64 MiB with 64 KiB clusters (-t -e 0), and RO-SOCKET the same read-only.
"""
import socket
import struct
import sys

OPTS_MAGIC = 0x49484156454F5054
REP_MAGIC = 0x0003E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
STRUCT_MAGIC = 0x668E33EF

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS = 1, 2, 3, 5
OPT_INFO, OPT_GO, OPT_STRUCTURED, OPT_LIST_META, OPT_SET_META = 6, 7, 8, 9, 10
REP_ACK, REP_SERVER, REP_INFO, REP_META = 1, 2, 3, 4
ERR_UNSUP, ERR_POLICY, ERR_INVALID, ERR_UNKNOWN = (1 << 31 | n for n in (1, 2, 3, 6))
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE, CMD_ZERO, CMD_BS = range(8)
FLAG_FUA, FLAG_NO_HOLE, FLAG_DF, FLAG_REQ_ONE, FLAG_FAST_ZERO = 1, 2, 4, 8, 16
EPERM, EINVAL, ENOSPC, ENOTSUP = 1, 22, 28, 95
TIMEOUT = 10


class Closed(Exception):
    pass


class Conn:
    def __init__(self, path, flags=3):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(TIMEOUT)
        self.s.connect(path)
        greeting = self.recv(18)
        assert greeting[:16] == b"NBDMAGICIHAVEOPT", greeting
        self.send(struct.pack(">I", flags))
        self.handle = 0

    def send(self, data):
        self.s.sendall(data)

    def recv(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise Closed()
            buf += chunk
        return buf

    def closed_by_server(self):
        """True when the server hangs up (EOF or reset) before sending more."""
        try:
            return self.s.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def option(self, opt, payload=b"", length=None):
        length = len(payload) if length is None else length
        self.send(struct.pack(">QII", OPTS_MAGIC, opt, length) + payload)

    def replies(self):
        """Option replies up to the final one: [(type, payload)]."""
        out = []
        while True:
            magic, _opt, rtype, length = struct.unpack(">QIII", self.recv(20))
            assert magic == REP_MAGIC, hex(magic)
            out.append((rtype, self.recv(length)))
            if rtype == REP_ACK or rtype & (1 << 31):
                return out

    def go(self, name=b"", structured=True, contexts=()):
        if structured:
            self.option(OPT_STRUCTURED)
            assert self.replies()[-1][0] == REP_ACK
        if contexts:
            q = b"".join(struct.pack(">I", len(c)) + c for c in contexts)
            self.option(OPT_SET_META, struct.pack(">I", len(name)) + name +
                        struct.pack(">I", len(contexts)) + q)
            self.meta = {struct.unpack(">I", p[:4])[0]: p[4:] for t, p in self.replies()
                         if t == REP_META}
        self.option(OPT_GO, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
        reps = self.replies()
        assert reps[-1][0] == REP_ACK, reps[-1]
        for t, p in reps:
            if t == REP_INFO and struct.unpack(">H", p[:2])[0] == 0:
                self.size, self.flags = struct.unpack(">QH", p[2:12])
        self.structured = structured

    def request(self, cmd, off, length, flags=0, data=b"", magic=REQ_MAGIC):
        self.handle += 1
        self.send(struct.pack(">IHHQQI", magic, flags, cmd, self.handle, off, length) + data)
        return self.handle

    def reply(self, read_len=0):
        """One whole reply: (error, data, chunks). chunks: [(type, payload)]."""
        magic = struct.unpack(">I", self.recv(4))[0]
        if magic == SIMPLE_MAGIC:
            err, handle = struct.unpack(">IQ", self.recv(12))
            assert handle == self.handle
            return err, (self.recv(read_len) if err == 0 else b""), []
        assert magic == STRUCT_MAGIC, hex(magic)
        chunks, err = [], 0
        while True:
            flags, ctype, handle, length = struct.unpack(">HHQI", self.recv(16))
            assert handle == self.handle
            payload = self.recv(length)
            chunks.append((ctype, payload))
            if ctype & (1 << 15):
                err = struct.unpack(">I", payload[:4])[0]
            if flags & 1:
                return err, b"", chunks
            assert struct.unpack(">I", self.recv(4))[0] == STRUCT_MAGIC


def dump(path):
    c = Conn(path)
    c.go(contexts=(b"base:allocation", b"qemu:allocation-depth"))
    names = {i: n.decode() for i, n in c.meta.items()}
    print("size", c.size, "flags", hex(c.flags), "contexts", sorted(names.values()))
    for ctx_id in sorted(names):
        off = 0
        while off < c.size:
            c.request(CMD_BS, off, min(c.size - off, 1 << 30))
            err, _, chunks = c.reply()
            assert err == 0, err
            for ctype, p in chunks:
                if struct.unpack(">I", p[:4])[0] != ctx_id:
                    continue
                for i in range(4, len(p), 8):
                    length, flags = struct.unpack(">II", p[i:i + 8])
                    print(names[ctx_id], off, length, flags)
                    off += length
    # Where servers split their chunks is their business: adjacent chunks
    # of one kind are merged, so what is compared is which bytes are holes.
    runs = []
    for off in range(0, c.size, 32 << 20):
        c.request(CMD_READ, off, min(32 << 20, c.size - off))
        err, _, chunks = c.reply()
        assert err == 0, err
        for ctype, p in sorted(chunks, key=lambda ch: struct.unpack(">Q", ch[1][:8])[0]):
            if ctype == 1:
                run = ["data", struct.unpack(">Q", p[:8])[0], len(p) - 8]
            elif ctype == 2:
                run = ["hole", *struct.unpack(">QI", p)]
            else:
                continue
            if runs and runs[-1][0] == run[0] and runs[-1][1] + runs[-1][2] == run[1]:
                runs[-1][2] += run[2]
            else:
                runs.append(run)
    for kind, off, length in runs:
        print("read", kind, off, length)
    c.request(CMD_DISC, 0, 0)


RESULTS = []


def result(ok, what, why=""):
    RESULTS.append(ok)
    print(("PASS " if ok else "FAIL ") + what + ("" if ok else ": " + why), flush=True)


def expect_rep_err(c, what, expected):
    try:
        reps = c.replies()
        result(reps[-1][0] == expected, what, "reply type %#x" % reps[-1][0])
    except Exception as e:
        result(False, what, repr(e))


def expect_hangup(c, what):
    try:
        result(c.closed_by_server(), what, "connection still open")
    except Exception as e:
        result(False, what, repr(e))


def handshake_cases(path):
    c = Conn(path, flags=0xff)
    expect_hangup(c, "unknown client flags: disconnect")
    c = Conn(path)
    c.send(struct.pack(">QII", 0x1234, OPT_LIST, 0))
    expect_hangup(c, "bad option magic: disconnect")
    c = Conn(path)
    c.option(OPT_LIST, length=64 << 20)
    expect_hangup(c, "option length over 32 MiB: disconnect")

    c = Conn(path)
    c.option(99, b"xyz")
    expect_rep_err(c, "unknown option: NBD_REP_ERR_UNSUP", ERR_UNSUP)
    c.option(OPT_INFO, struct.pack(">I", 500) + b"abc")
    expect_rep_err(c, "name longer than the option: NBD_REP_ERR_INVALID", ERR_INVALID)
    c.option(OPT_INFO, struct.pack(">I", 5000) + b"a" * 5000 + b"\0\0")
    expect_rep_err(c, "name over 4096 bytes: NBD_REP_ERR_INVALID", ERR_INVALID)
    c.option(OPT_INFO, struct.pack(">I", 3) + b"a\0b" + b"\0\0")
    expect_rep_err(c, "embedded NUL in the name: NBD_REP_ERR_INVALID", ERR_INVALID)
    c.option(OPT_INFO, struct.pack(">I", 4) + b"nope" + b"\0\0")
    expect_rep_err(c, "unknown export: NBD_REP_ERR_UNKNOWN", ERR_UNKNOWN)
    c.option(OPT_INFO, struct.pack(">I", 0) + struct.pack(">H", 3) + b"\0\1")
    expect_rep_err(c, "info request count beyond the payload: NBD_REP_ERR_INVALID", ERR_INVALID)
    c.option(OPT_STARTTLS)
    expect_rep_err(c, "STARTTLS: NBD_REP_ERR_POLICY", ERR_POLICY)
    c.option(OPT_SET_META, struct.pack(">II", 0, 0))
    expect_rep_err(c, "SET_META_CONTEXT before structured replies: NBD_REP_ERR_INVALID",
                   ERR_INVALID)
    c.option(OPT_LIST, b"junk")
    expect_rep_err(c, "LIST with a payload: NBD_REP_ERR_INVALID", ERR_INVALID)
    c.option(OPT_STRUCTURED)
    expect_rep_err(c, "STRUCTURED_REPLY", REP_ACK)
    c.option(OPT_STRUCTURED)
    expect_rep_err(c, "STRUCTURED_REPLY twice: NBD_REP_ERR_INVALID", ERR_INVALID)
    c.option(OPT_LIST_META, struct.pack(">I", 0) + struct.pack(">I", 2) +
             struct.pack(">I", 9000) + b"q" * 10)
    expect_rep_err(c, "meta context query longer than the option: NBD_REP_ERR_INVALID",
                   ERR_INVALID)
    c.option(OPT_LIST)
    try:
        reps = c.replies()
        result(reps[0][0] == REP_SERVER and reps[-1][0] == REP_ACK,
               "the connection still works after the errors (LIST)", repr(reps))
    except Exception as e:
        result(False, "the connection still works after the errors (LIST)", repr(e))
    c.option(OPT_ABORT)
    expect_rep_err(c, "ABORT is acknowledged", REP_ACK)

    c = Conn(path)
    c.option(OPT_EXPORT_NAME, b"wrong")
    expect_hangup(c, "EXPORT_NAME of an unknown export: disconnect")
    c = Conn(path, flags=0)
    c.option(OPT_LIST)
    expect_hangup(c, "options other than EXPORT_NAME without fixed newstyle: disconnect")
    c = Conn(path)
    c.option(OPT_INFO, b"\0\0", length=100)
    c.s.close()
    c = Conn(path)
    c.send(b"IHAVE")
    c.s.close()
    c = Conn(path)
    c.option(OPT_EXPORT_NAME, b"")
    try:
        size, flags = struct.unpack(">QH", c.recv(10))
        result(size == 64 << 20, "EXPORT_NAME after truncated handshakes of others",
               "size %d" % size)
    except Exception as e:
        result(False, "EXPORT_NAME after truncated handshakes of others", repr(e))


def expect_error(c, what, expected, read_len=0):
    try:
        err, _, chunks = c.reply(read_len)
        result(err == expected, what, "error %d, chunks %r" % (err, chunks[:2]))
    except Exception as e:
        result(False, what, repr(e))


def transmission_cases(path):
    size = 64 << 20
    c = Conn(path)
    c.go(contexts=(b"base:allocation",))
    result(c.size == size, "GO gives the export size", str(c.size))
    data = bytes(range(256)) * 16
    c.request(CMD_WRITE, 4096, len(data), FLAG_FUA, data)
    expect_error(c, "WRITE with FUA", 0)
    c.request(CMD_READ, 4096, len(data), FLAG_DF)
    try:
        err, _, chunks = c.reply()
        result(err == 0 and chunks[0][0] == 1 and chunks[0][1][8:] == data,
               "structured READ returns the written data", repr(chunks[:1])[:80])
    except Exception as e:
        result(False, "structured READ returns the written data", repr(e))
    c.request(CMD_READ, size - 512, 1024)
    expect_error(c, "READ past the end: EINVAL", EINVAL)
    c.request(CMD_READ, (1 << 64) - 512, 1024)
    expect_error(c, "READ at an offset that wraps around: EINVAL", EINVAL)
    c.request(CMD_READ, 0, 64 << 20)
    expect_error(c, "READ over 32 MiB: EINVAL", EINVAL)
    c.request(CMD_WRITE, size - 512, 1024, 0, b"x" * 1024)
    expect_error(c, "WRITE past the end: ENOSPC", ENOSPC)
    c.request(CMD_ZERO, size, 1)
    expect_error(c, "WRITE_ZEROES past the end: ENOSPC", ENOSPC)
    c.request(CMD_TRIM, size + 4096, 4096)
    expect_error(c, "TRIM past the end: EINVAL", EINVAL)
    c.request(42, 0, 0)
    expect_error(c, "unknown command: EINVAL", EINVAL)
    c.request(CMD_FLUSH, 0, 0, 0x8000)
    expect_error(c, "unknown command flags: EINVAL", EINVAL)
    c.request(CMD_WRITE, 0, 512, FLAG_DF, b"y" * 512)
    expect_error(c, "DF on a write: EINVAL", EINVAL)
    c.request(CMD_BS, 0, 0)
    expect_error(c, "BLOCK_STATUS of length 0: EINVAL", EINVAL)
    c.request(CMD_ZERO, 1000, 5000, FLAG_FAST_ZERO)
    expect_error(c, "unaligned FAST_ZERO on qcow2: ENOTSUP", ENOTSUP)
    c.request(CMD_ZERO, 1 << 20, 1 << 20, FLAG_FAST_ZERO | FLAG_NO_HOLE)
    expect_error(c, "cluster-aligned FAST_ZERO", 0)
    c.request(CMD_CACHE, 0, 1 << 20)
    expect_error(c, "CACHE", 0)
    c.request(CMD_BS, 0, size, FLAG_REQ_ONE)
    try:
        err, _, chunks = c.reply()
        p = chunks[0][1]
        result(err == 0 and chunks[0][0] == 5 and len(p) == 12, "BLOCK_STATUS with REQ_ONE",
               repr(chunks))
    except Exception as e:
        result(False, "BLOCK_STATUS with REQ_ONE", repr(e))
    c.request(CMD_READ, 4096, len(data))
    try:
        err, _, chunks = c.reply()
        got = b"".join(p[8:] for t, p in chunks if t == 1)
        result(err == 0 and got == data, "the connection still serves reads after the errors",
               "error %d" % err)
    except Exception as e:
        result(False, "the connection still serves reads after the errors", repr(e))
    c.request(CMD_WRITE, 0, 64 << 20)
    expect_error(c, "WRITE over 32 MiB: EINVAL", EINVAL)
    expect_hangup(c, "... then disconnect (the payload cannot be skipped)")

    c = Conn(path)
    c.go(structured=False)
    c.request(CMD_READ, 4096, len(data))
    try:
        err, got, _ = c.reply(len(data))
        result(err == 0 and got == data, "simple READ reply", "error %d" % err)
    except Exception as e:
        result(False, "simple READ reply", repr(e))
    c.request(CMD_READ, size, 512)
    expect_error(c, "simple READ past the end: EINVAL, no data", EINVAL)
    c.request(CMD_BS, 0, 4096)
    expect_error(c, "BLOCK_STATUS without a meta context: EINVAL", EINVAL)
    c.request(CMD_READ, 0, 512, FLAG_DF)
    expect_error(c, "DF without structured replies: EINVAL", EINVAL)
    c.request(CMD_READ, 0, 512, magic=0xdeadbeef)
    expect_hangup(c, "bad request magic: disconnect")

    c = Conn(path)
    c.go()
    c.send(struct.pack(">IHH", REQ_MAGIC, 0, CMD_READ))
    c.s.close()
    c = Conn(path)
    c.go()
    c.request(CMD_WRITE, 0, 65536, 0, b"z" * 1000)
    c.s.close()
    # Pipelining: more requests in flight than the server takes at once;
    # every handle is answered once, replies in any order. Small enough for
    # the socket buffers, as this client writes all before reading. Then a
    # client that hangs up mid-stream.
    c = Conn(path)
    c.go()
    batch = b"".join(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ if i % 2 else CMD_WRITE,
                                 1000 + i, i * 8192, 512) + (b"" if i % 2 else b"p" * 512)
                     for i in range(48))
    c.send(batch)
    seen = []
    try:
        done = {}
        while len(done) < 48:
            magic = struct.unpack(">I", c.recv(4))[0]
            if magic == SIMPLE_MAGIC:
                err, handle = struct.unpack(">IQ", c.recv(12))
                if handle % 2:
                    c.recv(512)
                done[handle] = True
                seen.append(handle)
                continue
            flags, ctype, handle, length = struct.unpack(">HHQI", c.recv(16))
            c.recv(length)
            if flags & 1:
                done[handle] = True
                seen.append(handle)
        result(sorted(seen) == list(range(1000, 1048)), "48 pipelined requests, each answered",
               repr(sorted(seen))[:80])
    except Exception as e:
        result(False, "48 pipelined requests, each answered", repr(e))
    c.send(batch)
    c.s.close()

    c = Conn(path)
    c.go()
    c.request(CMD_DISC, 0, 0)
    expect_hangup(c, "DISC: the server closes the connection")


def read_only_cases(path):
    c = Conn(path)
    c.go()
    result(c.flags & 2 != 0, "read-only export has NBD_FLAG_READ_ONLY", hex(c.flags))
    result(c.flags & (1 << 5) == 0, "read-only export does not offer TRIM", hex(c.flags))
    c.request(CMD_WRITE, 0, 512, 0, b"w" * 512)
    expect_error(c, "WRITE on a read-only export: EPERM", EPERM)
    c.request(CMD_ZERO, 0, 512)
    expect_error(c, "WRITE_ZEROES on a read-only export: EPERM", EPERM)
    c.request(CMD_TRIM, 0, 512)
    expect_error(c, "TRIM on a read-only export: EPERM", EPERM)
    c.request(CMD_READ, 4096, 512, FLAG_DF)
    expect_error(c, "READ on a read-only export", 0)


def main():
    if sys.argv[1] == "dump":
        dump(sys.argv[2])
        return 0
    for cases, path in ((handshake_cases, sys.argv[2]), (transmission_cases, sys.argv[2]),
                        (read_only_cases, sys.argv[3])):
        try:
            cases(path)
        except Exception as e:
            result(False, cases.__name__ + " ran to the end", repr(e))
    return 0 if all(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
