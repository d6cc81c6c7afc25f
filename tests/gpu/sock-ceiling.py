#!/usr/bin/env python3
# sock-ceiling.py: how fast bytes cross an AF_UNIX stream socket on this machine, with
# nothing of rxgemmd's around them: one process sends a buffer of N MiB in one sendall(),
# another receives it straight into a buffer of its own (recv_into) and answers one byte.
# That is the least an operand sent inline in a frame costs (one copy into the kernel, one
# out), so it bounds the frames path of tests/gpu/run-datapath.sh from below. Each size
# runs with the socket's default send buffer and with larger ones asked for (the kernel
# caps them at net.core.wmem_max, and doubles what it grants).
#
#   python3 tests/gpu/sock-ceiling.py [MIB[,MIB...]] [REPS]
#
# Prints the sysctls, then per (size, send buffer) the median of REPS transfers after one
# warm-up: ms and GB/s.
import os
import socket
import sys
import time


def transfer(total, sndbuf, reps):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    if sndbuf:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    granted = a.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    pid = os.fork()
    if pid == 0:
        a.close()
        view = memoryview(bytearray(total))
        for _ in range(reps + 1):
            got = 0
            while got < total:
                got += b.recv_into(view[got:], total - got)
            b.send(b"k")
        os._exit(0)
    b.close()
    view = memoryview(bytearray(os.urandom(1 << 20)) * (total >> 20))
    times = []
    for _ in range(reps + 1):
        t = time.perf_counter()
        a.sendall(view)
        a.recv(1)
        times.append(time.perf_counter() - t)
    os.waitpid(pid, 0)
    a.close()
    times = sorted(times[1:])
    return granted, times[len(times) // 2]


def main():
    sizes = [int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "12,192").split(",")]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    for name in ("wmem_max", "wmem_default"):
        with open("/proc/sys/net/core/" + name) as f:
            print("net.core.%s = %s" % (name, f.read().strip()))
    for mib in sizes:
        for asked in (0, 1 << 20, 4 << 20, 16 << 20):
            granted, t = transfer(mib << 20, asked, reps)
            print("%5d MiB, send buffer asked %8d, granted %8d: %8.2f ms %6.2f GB/s"
                  % (mib, asked, granted, t * 1e3, (mib << 20) / t / 1e9))


if __name__ == "__main__":
    main()
