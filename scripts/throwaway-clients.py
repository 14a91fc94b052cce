#!/usr/bin/env python3
"""Throwaway client ids against a running `peach server` while root makes directories (issue 18,
item 3; docs/security.md).

Usage (as root): scripts/throwaway-clients.py PORT DIRECTORY [--seconds 15] [--uid 1000]

A child process, running as --uid, says Hello with a new client id every 0.5 s, takes a promise
on the volume root with FetchStatus and disconnects without a word, as a local user could. The
parent makes a directory in DIRECTORY (the root of an AFS-mode mount of the same server) every
0.2 s; each mkdir breaks the promises on the root, and a promise whose holder has vanished is
waited for until its lease runs out. Prints how long each mkdir took and a summary: with the
bound, at most about one lease per minute is lost; without it, nearly every mkdir waited.
"""
import argparse
import encodings.idna  # noqa: F401 (loaded before the child gives up root: it cannot read it after)
import os
import signal
import socket
import struct
import sys
import time
import uuid

REQUEST = 1
HELLO, FETCH_STATUS = 1, 3
PROTOCOL_VERSION = 5
AFS = 1


def frame(kind, ident, opcode, body):
    return struct.pack(">IBBIH", 8 + len(body), kind, 0, ident, opcode) + body


def credential(uid):
    return struct.pack(">IIB", uid, uid, 0)


def read_frame(s):
    header = b""
    while len(header) < 4:
        chunk = s.recv(4 - len(header))
        if not chunk:
            return None
        header += chunk
    (length,) = struct.unpack(">I", header)
    body = b""
    while len(body) < length:
        chunk = s.recv(length - len(body))
        if not chunk:
            return None
        body += chunk
    return body


def throwaway(port, uid):
    """One client id: Hello, FetchStatus of the root, gone."""
    s = socket.create_connection(("127.0.0.1", port))
    client_id = str(uuid.uuid4()).encode()
    hello = struct.pack(">HH", PROTOCOL_VERSION, len(client_id)) + client_id + struct.pack(">QB", 1, AFS)
    s.sendall(frame(REQUEST, 1, HELLO, credential(uid) + hello))
    read_frame(s)
    s.sendall(frame(REQUEST, 2, FETCH_STATUS, credential(uid) + struct.pack(">IQI", 1, 1, 1)))
    read_frame(s)
    s.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("directory")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--uid", type=int, default=1000)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the throwaway clients run as --uid, the mkdirs as root")
    child = os.fork()
    if child == 0:
        os.setgid(args.uid)
        os.setuid(args.uid)
        end = time.time() + args.seconds
        while time.time() < end:
            try:
                throwaway(args.port, args.uid)
            except OSError:
                pass
            time.sleep(0.5)
        os._exit(0)
    took = []
    try:
        end = time.time() + args.seconds
        i = 0
        while time.time() < end:
            path = os.path.join(args.directory, "throwaway-probe-%d-%d" % (os.getpid(), i))
            start = time.perf_counter()
            os.mkdir(path)
            took.append(time.perf_counter() - start)
            os.rmdir(path)
            print("mkdir %3d: %8.1f ms" % (i, took[-1] * 1000), flush=True)
            i += 1
            time.sleep(0.2)
    finally:
        os.kill(child, signal.SIGTERM)
        os.waitpid(child, 0)
    ordered = sorted(took)
    print("%d mkdirs: median %.1f ms, max %.1f ms, %d took over 1 s"
          % (len(took), ordered[len(ordered) // 2] * 1000, ordered[-1] * 1000, sum(1 for t in took if t > 1)))


if __name__ == "__main__":
    main()
