#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets: Fuzz/corpus/frames/ and Fuzz/corpus/requests/.

Each seed is a stream of real frames as docs/protocol.md describes them (and as
Sources/PeachTesting/RawProtocolClient.swift sends them): u32 length of what follows, u8 kind,
u8 flags, u32 id, u16 opcode, body; a request body is the credential, then the message.
Among them are the inputs that once crashed or hurt the server (issue 7,
Tests/PeachServerTests/HostileRequestTests.swift).

In the request target (Sources/PeachFuzzing/RequestFuzzing.swift) a FID with volume 0xFFFFFFFF
names the input's own fresh directory (vnode 0, HOME below) or the n-th file the input created
or looked up (vnode n), so `recent(1)` below is the first file the seed creates. Run from anywhere: paths are relative to
the repository. The output is deterministic.
"""
import os
import struct
import sys

REQUEST, REPLY, DATA, PUSH, PUSH_ACK = 1, 2, 3, 4, 5
LAST_CHUNK = 1
# frame flags in the request target: bit 0 root-squashed machine, bit 1 client "b", bit 2 read-only,
# bit 3 an NFS-mode connection (granted no callbacks)
SQUASHED, CLIENT_B, NFS = 1, 2, 8

OP = dict(hello=1, ping=2, fetchStatus=3, bulkStatus=4, fetchData=5, storeData=6, storeStatus=7,
          createFile=8, makeDir=9, symlink=10, link=11, removeFile=12, removeDir=13, rename=14,
          giveUpCallBacks=15, getVolumeStatus=16, lookup=34, read=35, write=36, commit=37, readDir=38,
          readlink=46)
REGULAR, DIRECTORY, SYMLINK, FIFO, SOCKET, CHAR_DEVICE, BLOCK_DEVICE = range(1, 8)
PROTOCOL_VERSION = 5
AFS_DESIGN, NFS_DESIGN = 1, 2
U64_MAX = (1 << 64) - 1


def u8(v): return struct.pack(">B", v)
def u16(v): return struct.pack(">H", v)
def u32(v): return struct.pack(">I", v)
def u64(v): return struct.pack(">Q", v)
def i64(v): return struct.pack(">q", v)
def string(s): b = s.encode(); return u16(len(b)) + b
WHOLE = (1 << 64) - 1  # a FetchData length: to the end


def fid(vnode, volume=1, unique=1): return u32(volume) + u64(vnode) + u32(unique)
def recent(n): return fid(n, volume=0xFFFFFFFF)
def timespec(seconds=1_700_000_000, nanoseconds=0): return i64(seconds) + u32(nanoseconds)
def optional(fmt, v): return u8(0) if v is None else u8(1) + struct.pack(fmt, v)
ROOT = fid(1)
HOME = recent(0)


def credential(uid=0, gid=0, groups=()):
    return u32(uid) + u32(gid) + u8(len(groups)) + b"".join(u32(g) for g in groups)


def frame(kind, opcode, body=b"", id=1, flags=0):
    return u32(8 + len(body)) + u8(kind) + u8(flags) + u32(id) + u16(opcode) + body


class Stream:
    """Request frames with fresh ids, as one connection sends them."""

    def __init__(self, flags=0, cred=None):
        self.bytes, self.id, self.flags = b"", 0, flags
        self.cred = credential() if cred is None else cred

    def request(self, op, message=b"", flags=None):
        self.id += 1
        self.bytes += frame(REQUEST, OP[op], self.cred + message, self.id, self.flags if flags is None else flags)
        return self

    def data(self, body, last=True):
        self.bytes += frame(DATA, OP["storeData"], body, self.id, LAST_CHUNK if last else 0)
        return self

    def raw(self, b):
        self.bytes += b
        return self

    def hello(self, client="fuzz-seed", epoch=1, design=AFS_DESIGN):
        return self.request("hello", u16(PROTOCOL_VERSION) + string(client) + u64(epoch) + u8(design))


def create_message(directory, name, type=REGULAR, mode=0o644, uid=0, gid=0, rdev=0, target=""):
    return directory + string(name) + u8(type) + u32(mode) + u32(uid) + u32(gid) + u64(rdev) + string(target)


def set_attributes(f, mode=None, uid=None, gid=None, size=None, atime=b"\x00", mtime=b"\x00"):
    return f + optional(">I", mode) + optional(">I", uid) + optional(">I", gid) + optional(">Q", size) + atime + mtime


def store_status(mode=None, uid=None, gid=None, atime=b"\x00", base=None):
    """The status a StoreData carries (no change by default), then its base version (none: unconditional)."""
    return optional(">I", mode) + optional(">I", uid) + optional(">I", gid) + atime + optional(">Q", base)


def with_victim(**kw):
    """Hello, then CreateFile of a regular file "victim" in the root: recent(1) is the victim."""
    return Stream(**kw).hello().request("createFile", create_message(HOME, "victim"))


def seeds():
    hostile = {
        # WRITE at offset 2^63 and at UInt64.max with 2 bytes: once trapped in offset + count.
        "write-offset-2p63": with_victim().request("write", recent(1) + u64(1 << 63) + u32(1) + b"\x01"),
        "write-uint64max-2-bytes": with_victim().request("write", recent(1) + u64(U64_MAX) + u32(2) + b"\x01\x02"),
        # SETATTR of the size to 2^63: once trapped converting to off_t.
        "setattr-size-2p63": with_victim().request("storeStatus", set_attributes(recent(1), size=1 << 63)),
        # CREATE of a block device with rdev 2^63: once trapped converting to dev_t / Int64.
        "create-blockdev-rdev-2p63": Stream().hello().request(
            "createFile", create_message(HOME, "dev", type=BLOCK_DEVICE, mode=0o600, rdev=1 << 63)),
        # StoreData announcing UInt64.max bytes, then one byte.
        "storedata-size-uint64max": with_victim().request(
            "storeData", recent(1) + u64(U64_MAX) + timespec() + store_status()).data(b"\x01"),
        # A header announcing a 4 MiB body (the limit) that never comes, and one just over it.
        "header-4mib": Stream().raw(u32((4 << 20) + 8) + u8(REQUEST) + u8(0) + u32(1) + u16(OP["ping"])),
        "header-over-4mib": Stream().raw(u32((4 << 20) + 9) + u8(REQUEST) + u8(0) + u32(1) + u16(OP["ping"])),
        # A frame cut short: a WRITE of 16 bytes whose frame ends after 6 of them.
        "truncated-write": Stream().raw(with_victim().request(
            "write", recent(1) + u64(0) + u32(16) + bytes(range(16))).bytes[:-10]),
        # A header shorter than the fixed part (length < 8).
        "length-below-header": Stream().raw(u32(3) + b"\x01\x00\x00"),
        # An acknowledgement with a wrong opcode (the push's opcode + 7) and one with a body.
        "pushack-wrong-opcode": Stream().hello().raw(frame(PUSH_ACK, 1 + 7, b"", id=1)).request("ping"),
        "pushack-with-body": Stream().hello().raw(frame(PUSH_ACK, 1, b"\x00", id=1)),
        # Found by the request fuzzer: Hello with an epoch of 2^63 or more trapped VolumeStore.introduce
        # (Int64(epoch)); fixed, and replayed by FuzzCorpusReplayTests.
        "hello-epoch-2p63": Stream().hello(epoch=1 << 63).request("ping"),
    }
    tour = (with_victim(flags=NFS)
            .request("write", recent(1) + u64(0) + u32(5) + b"hello")
            .request("read", recent(1) + u64(0) + u32(4096))
            .request("write", recent(1) + u64((1 << 40) - 1) + u32(1) + b"\x01")
            .request("storeStatus", set_attributes(recent(1), mode=0o4755, size=1 << 20, atime=b"\x01",
                                               mtime=b"\x02" + timespec(5, 999_999_999)))
            .request("commit", recent(1))
            .request("makeDir", create_message(HOME, "dir", type=DIRECTORY, mode=0o777))
            .request("symlink", create_message(HOME, "link", type=SYMLINK, mode=0o777, target="victim"))
            .request("readlink", recent(3))
            .request("link", HOME + string("hard") + recent(1))
            .request("readDir", HOME + u32(0) + u32(4096))
            .request("lookup", HOME + string("victim"))
            .request("rename", HOME + string("victim") + recent(2) + string("moved"))
            .request("removeFile", recent(2) + string("moved"))
            .request("removeDir", HOME + string("dir"))
            .request("createFile", create_message(HOME, "fifo", type=FIFO, mode=0o600))
            .request("createFile", create_message(HOME, "chr", type=CHAR_DEVICE, mode=0o600, rdev=(1 << 8) | 3)))
    afs = (with_victim()
           .request("fetchStatus", recent(1))
           .request("storeData", recent(1) + u64(3) + timespec()
                    + store_status(mode=0o640, atime=b"\x02" + timespec(7))).data(b"abc")
           .request("storeData", recent(1) + u64(2) + timespec() + store_status(base=2)).data(b"de")
           .request("fetchData", recent(1) + u64(0) + u64(WHOLE))
           .request("fetchData", recent(1) + u64(1) + u64(1))
           .request("fetchData", recent(1) + u64(1 << 63) + u64(WHOLE))
           .request("fetchData", ROOT + u64(0) + u64(WHOLE))
           .request("bulkStatus", u32(3) + ROOT + recent(1) + fid(999))
           .request("storeStatus", set_attributes(recent(1), mode=0o600, uid=1000, gid=1000))
           .request("makeDir", create_message(HOME, "d", type=DIRECTORY, mode=0o755))
           .request("symlink", create_message(HOME, "s", type=SYMLINK, mode=0o777, target="/etc/passwd"))
           .request("link", HOME + string("h") + recent(1))
           .request("rename", HOME + string("h") + recent(2) + string("h2"))
           .request("removeFile", recent(2) + string("h2"))
           .request("removeDir", HOME + string("d"))
           .request("giveUpCallBacks", u32(1) + recent(1))
           .request("getVolumeStatus")
           .request("ping", flags=CLIENT_B)
           .request("fetchStatus", recent(1), flags=CLIENT_B)
           .request("createFile", create_message(HOME, "x"), flags=CLIENT_B))
    # A local user's request on a root-squashed machine connection, and one that may only read.
    squashed = (with_victim()
                .request("storeStatus", set_attributes(recent(1), mode=0o600))
                .request("write", recent(1) + u64(0) + u32(2) + b"no", flags=SQUASHED)
                .request("storeStatus", set_attributes(recent(1), mode=0o4777), flags=SQUASHED)
                .request("createFile", create_message(ROOT, "mine"), flags=SQUASHED)
                .request("createFile", create_message(HOME, "mine"), flags=SQUASHED)
                .request("createFile", create_message(HOME, "ro"), flags=SQUASHED | 4))
    user = (Stream(cred=credential(1001, 1001, [1, 2, 3])).hello()
            .request("createFile", create_message(HOME, "u")).request("createFile", create_message(ROOT, "u")))
    requests = dict(hostile, **{"tour-nfs": tour, "tour-afs": afs, "root-squashed": squashed, "user-1001": user})

    frames = {name: s.bytes for name, s in requests.items()}
    frames.update({
        "reply-error": frame(REPLY, OP["write"], u16(18)),
        "reply-pong": frame(REPLY, OP["ping"], u16(0)),
        "reply-hello": frame(REPLY, OP["hello"], u16(0) + u16(PROTOCOL_VERSION) + u64(7) + u8(1)),
        "push-callback": frame(PUSH, 1, u8(1) + u32(2) + ROOT + fid(2), id=9),
        "push-init": frame(PUSH, 2, b"", id=10),
        "data-listing": frame(DATA, OP["fetchData"], u32(2) + string("a") + fid(2) + u8(REGULAR)
                              + string("b") + fid(3) + u8(DIRECTORY), flags=LAST_CHUNK),
        "fid-list-huge-count": frame(REQUEST, OP["bulkStatus"], credential() + u32(0xFFFFFFFF) + ROOT),
        "credential-33-groups": frame(REQUEST, OP["ping"], u32(0) + u32(0) + u8(33) + b"\x00" * 132),
        "unknown-kind": u32(8) + u8(9) + u8(0) + u32(1) + u16(2),
    })
    return frames, {name: s.bytes for name, s in requests.items()}


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Fuzz", "corpus")
    frames, requests = seeds()
    for kind, corpus in (("frames", frames), ("requests", requests)):
        directory = os.path.join(root, kind)
        os.makedirs(directory, exist_ok=True)
        for name, data in sorted(corpus.items()):
            with open(os.path.join(directory, "seed-" + name), "wb") as f:
                f.write(data)
        print(f"{len(corpus)} seeds in {os.path.normpath(directory)}", file=sys.stderr)


if __name__ == "__main__":
    main()
