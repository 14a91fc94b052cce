#!/usr/bin/env python3
"""Many misbehaving connections against a running `peach server`, then its resident memory.

Usage: hostile-load.py SERVER_PID PORT KIND COUNT [VNODE.UNIQUIFIER]

KIND is one of:
  partial  each connection sends the header of a 1 MiB frame and 512 KiB of its body, then waits
  reads    each connection says Hello and sends 200 READs of 64 KiB of that file, reading nothing
  fetches  each connection says Hello and sends 8 FetchData of that file, reading nothing
  idle     each connection says nothing at all

Prints the server's VmRSS and VmHWM before, while the connections are held, and after they close.
Loopback only; it stops by itself.
"""
import socket
import struct
import sys
import time

REQUEST, DATA = 1, 3
HELLO, FETCH_DATA, READ = 1, 5, 35


def credential():
    return struct.pack(">IIB", 0, 0, 0)


def frame(kind, ident, opcode, body):
    return struct.pack(">IBBIH", 8 + len(body), kind, 0, ident, opcode) + body


def hello(ident):
    client_id = ("hostile-%d" % ident).encode()
    body = credential() + struct.pack(">H", 2) + struct.pack(">H", len(client_id)) + client_id + struct.pack(">Q", 1)
    return frame(REQUEST, 1, HELLO, body)


def fid(vnode, unique):
    return struct.pack(">IQI", 1, vnode, unique)


def memory(pid):
    values = {}
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                values[key] = int(value.split()[0]) // 1024
    return "RSS %d MiB, peak %d MiB" % (values["VmRSS"], values["VmHWM"])


def main():
    pid, port, kind, count = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    # A file's uniquifier is random: `peach fs whereis PATH` shows its FID, VOLUME.VNODE.UNIQUIFIER.
    vnode, unique = (int(part) for part in (sys.argv[5] if len(sys.argv) > 5 else "1.1").split("."))
    print("before: " + memory(pid), flush=True)
    sockets = []
    for i in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(0.2)
        if kind == "partial":
            payload = struct.pack(">I", 1 << 20) + bytes(512 << 10)
        elif kind == "reads":
            payload = hello(i) + b"".join(
                frame(REQUEST, 2 + n, READ, credential() + fid(vnode, unique) + struct.pack(">QI", 0, 64 << 10)) for n in range(200))
        elif kind == "fetches":
            payload = hello(i) + b"".join(frame(REQUEST, 2 + n, FETCH_DATA, credential() + fid(vnode, unique)) for n in range(8))
        else:
            payload = b""
        try:
            s.sendall(payload)  # what does not fit in the socket buffers within 0.2 s stays unsent
        except (socket.timeout, BlockingIOError):
            pass
        sockets.append(s)
    time.sleep(5)
    print("holding %d %s connections: %s" % (len(sockets), kind, memory(pid)), flush=True)
    for s in sockets:
        s.close()
    time.sleep(3)
    print("after they closed: " + memory(pid), flush=True)


if __name__ == "__main__":
    main()
