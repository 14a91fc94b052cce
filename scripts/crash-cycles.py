#!/usr/bin/env python3
"""Crash cycles: kill -9 of the server or of the cache manager during a write-heavy workload,
then check every file, CYCLES times (issue 9's "done when"; docs/recovery.md).

Each cycle mounts an AFS-mode cache manager (the same cache directory every cycle) on a real
`peach server`, runs writers that rewrite 16 files whole (each version self-describing: a
header naming the file and version, then a body derived from them), kills the server (odd
cycles; it is restarted and the hard mount carries on) or the cache manager (even cycles; it is
mounted again on the same cache, which stores what was dirty), and then reads every file through
a fresh NFS-mode mount. A file is torn if its bytes are not exactly one version's; lost if its
version is older than the last one whose close(2) returned 0.

Usage: scripts/crash-cycles.py [--cycles 100] [--peach .build/debug/peach]
Prints one line per cycle and a summary; exits 1 if anything was lost or torn.
"""
import argparse
import hashlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

FILES = 16


def body(name, version):
    seed = hashlib.sha256(f"{name}/{version}".encode()).digest()
    size = 1 + int.from_bytes(seed[:4], "big") % 200_000
    return (seed * (size // len(seed) + 1))[:size]


def content(name, version):
    return f"{name} {version}\n".encode() + body(name, version)


def parse(data):
    """(name, version, whole) if data is one version, whole or cut short (a prefix: the write()
    in progress when the cache manager was killed), else None."""
    header, _, rest = data.partition(b"\n")
    try:
        name, version = header.decode().split(" ")
        version = int(version)
    except ValueError:
        return None
    full = body(name, version)
    if rest == full:
        return (name, version, True)
    return (name, version, False) if full.startswith(rest) else None


def is_mounted(path):
    """From /proc/mounts: a mount whose cache manager died fails stat, so os.path.ismount misses it."""
    with open("/proc/mounts") as mounts:
        return any(line.split()[1] == path for line in mounts)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, peach, work):
        self.peach, self.work = peach, work
        self.port = free_port()
        self.root = os.path.join(work, "root")
        self.server = None

    def start_server(self):
        log = open(os.path.join(self.work, "server.log"), "ab")
        self.server = subprocess.Popen([self.peach, "server", "--root", self.root, "--listen", f"127.0.0.1:{self.port}"],
                                       stdout=log, stderr=log)
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.025)
        raise RuntimeError("server did not start")

    def kill_server(self):
        self.server.send_signal(signal.SIGKILL)
        self.server.wait()

    def mount(self, name, mode="afs"):
        path = os.path.join(self.work, name)
        os.makedirs(path, exist_ok=True)
        log = open(os.path.join(self.work, f"{name}.log"), "ab")
        process = subprocess.Popen([self.peach, "mount", path, "--server", f"127.0.0.1:{self.port}", "--mode", mode,
                                    "--cache", os.path.join(self.work, f"cache-{name}"), "--foreground"],
                                   stdout=log, stderr=log)
        for _ in range(200):
            if is_mounted(path) and os.path.ismount(path):
                return path, process
            if process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"mount {name} did not come up")

    @staticmethod
    def unmount(path, process, kill=False):
        if kill:
            process.send_signal(signal.SIGKILL)
            process.wait()
        if is_mounted(path):
            if subprocess.call(["fusermount3", "-u", path], stderr=subprocess.DEVNULL) != 0:
                subprocess.call(["fusermount3", "-uz", path], stderr=subprocess.DEVNULL)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def writer(path, names, acked, versions, stop, closes, attempted):
    rng = random.Random()
    while not stop.is_set():
        name = rng.choice(names)
        version = versions[name] + 1
        versions[name] = version
        attempted[name].append(version)
        try:
            fd = os.open(os.path.join(path, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, content(name, version))
            finally:
                os.close(fd)
            acked[name] = version
            closes.append(1)
        except OSError:
            time.sleep(0.05)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--peach", default=".build/debug/peach")
    args = parser.parse_args()
    peach = os.path.abspath(args.peach)
    work = tempfile.mkdtemp(prefix="peach-cycles-")
    cluster = Cluster(peach, work)
    cluster.start_server()
    names = [f"f{i}" for i in range(FILES)]
    acked = {name: 0 for name in names}
    versions = {name: 0 for name in names}
    lost = torn = cut = 0
    checked = 0
    try:
        for cycle in range(1, args.cycles + 1):
            path, process = cluster.mount("a")
            stop = threading.Event()
            closes = []
            attempted = {name: [] for name in names}
            threads = [threading.Thread(target=writer, args=(path, names[i::2], acked, versions, stop, closes, attempted)) for i in range(2)]
            for t in threads:
                t.start()
            time.sleep(random.uniform(0.3, 0.8))
            target = "server" if cycle % 2 else "cache manager"
            if target == "server":
                cluster.kill_server()
                time.sleep(0.3)
                cluster.start_server()
                time.sleep(0.5)  # the hard mount carries on
                stop.set()
                for t in threads:
                    t.join()
                cluster.unmount(path, process)
            else:
                cluster.unmount(path, process, kill=True)
                stop.set()
                for t in threads:
                    t.join()
                # The next mount on the same cache stores what the killed one left dirty.
                again, process = cluster.mount("a")
                cluster.unmount(again, process)
            reader, reader_process = cluster.mount(f"reader{cycle}", mode="nfs")
            cycle_lost = cycle_torn = cycle_cut = 0
            for name in names:
                file = os.path.join(reader, name)
                if not os.path.exists(file):
                    cycle_lost += acked[name] > 0
                    continue
                with open(file, "rb") as f:
                    data = f.read()
                parsed = parse(data)
                checked += 1
                cut_short = any(content(name, v).startswith(data) and content(name, v) != data
                                for v in attempted[name] if v > acked[name])
                if target == "cache manager" and cut_short:
                    # The version being written when the kill came (opened with O_TRUNC, written
                    # in part or not at all): kept as far as it reached the cache.
                    cycle_cut += 1
                elif parsed is None or parsed[0] != name:
                    print(f"  torn: {name}: {len(data)} bytes, starts {data[:40]!r}; acked {acked[name]}, last {versions[name]}")
                    cycle_torn += 1
                elif parsed[1] < acked[name]:
                    cycle_lost += 1
                elif not parsed[2]:
                    # Only a version no close acknowledged may be cut short: the write() the kill
                    # interrupted, kept as far as it reached the cache.
                    if parsed[1] <= acked[name] or target != "cache manager":
                        cycle_torn += 1
                    else:
                        cycle_cut += 1
            cluster.unmount(reader, reader_process)
            shutil.rmtree(os.path.join(work, f"cache-reader{cycle}"), ignore_errors=True)
            lost += cycle_lost
            torn += cycle_torn
            cut += cycle_cut
            print(f"cycle {cycle:3}: killed the {target}; {len(closes)} closes returned 0; {FILES} files checked, "
                  f"{cycle_lost} lost, {cycle_torn} torn, {cycle_cut} cut by the kill", flush=True)
    finally:
        for entry in os.listdir(work):
            full = os.path.join(work, entry)
            if is_mounted(full):
                subprocess.call(["fusermount3", "-uz", full])
        if cluster.server and cluster.server.poll() is None:
            cluster.server.terminate()
            cluster.server.wait()
    print(f"{args.cycles} cycles, {checked} file checks: {lost} lost, {torn} torn; "
          f"{cut} held a version whose write() the kill of the cache manager cut short, as far as it reached the cache")
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if lost or torn else 0)


if __name__ == "__main__":
    main()
