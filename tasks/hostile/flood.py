"""A hostile host for the availability tests and the hostile-load bench: it attacks one server
from a loopback address of its own (127.0.0.2 by default), so that the server's per-address limits
apply to it and not to the legitimate client on 127.0.0.1, until its standard input closes.

    python3 flood.py PORT [--source ADDR] [--hold N] [--garbage N]
                          [--replay N --flight HEX [--flight HEX ...]] [--tls N]

  --hold N      hold N idle connections, reconnecting whatever the server drops
  --garbage N   N threads, each connecting and sending 32 KiB of random bytes, again and again
  --replay N    N threads, each connecting, sending each --flight (a frame, in hex) and reading one
                frame back after each, then hanging up, again and again: a handshake flood
  --tls N       N threads, each completing a TLS handshake (no verification) and hanging up

Prints 'ready held H' once the connections are held and each flood has had its first answer (or
failure), and at the end 'held H answers A refused R failed F': replayed exchanges answered to the
last flight, refused (a reply whose first byte is 0x7f, the lab's error), and failed otherwise
(TLS handshakes count as answers or failures).
"""
import argparse
import os
import socket
import ssl
import struct
import sys
import threading

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("--source", default="127.0.0.2")
parser.add_argument("--hold", type=int, default=0)
parser.add_argument("--garbage", type=int, default=0)
parser.add_argument("--replay", type=int, default=0)
parser.add_argument("--flight", action="append", default=[])
parser.add_argument("--tls", type=int, default=0)
args = parser.parse_args()
if args.replay and not args.flight:
    parser.error("--replay needs at least one --flight")
flights = [bytes.fromhex(f) for f in args.flight]

stop = threading.Event()
lock = threading.Lock()
counts = {"answers": 0, "refused": 0, "failed": 0}
started = threading.Event()


def count(what):
    with lock:
        counts[what] += 1
    started.set()


def connect(timeout=2):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((args.source, 0))
    s.connect(("127.0.0.1", args.port))
    return s


def holder(count_, ready):
    socks = []
    for _ in range(count_):
        try:
            socks.append(connect())
        except OSError:
            pass
    ready.append(len(socks))
    while not stop.is_set():
        for i, s in enumerate(socks):
            try:
                s.setblocking(False)
                if s.recv(1) == b"":
                    raise OSError("closed")
            except BlockingIOError:
                continue
            except OSError:
                try:
                    s.close()
                    socks[i] = connect()
                except OSError:
                    pass
        stop.wait(0.05)
    for s in socks:
        s.close()


def garbage():
    junk = os.urandom(4096)
    while not stop.is_set():
        try:
            s = connect()
            for _ in range(8):
                s.sendall(junk)
            s.close()
        except OSError:
            stop.wait(0.01)


def read_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    return data


def replay():
    while not stop.is_set():
        s = None
        try:
            s = connect(10)
            for flight in flights:
                s.sendall(flight)
                (length,) = struct.unpack(">I", read_exact(s, 4))
                reply = read_exact(s, length)
                if reply[:1] == b"\x7f":
                    count("refused")
                    break
            else:
                count("answers")
        except OSError:
            count("failed")
            stop.wait(0.01)
        finally:
            if s is not None:
                s.close()


def tls():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    while not stop.is_set():
        try:
            with ctx.wrap_socket(connect(10)) as s:
                s.do_handshake()
            count("answers")
        except (OSError, ssl.SSLError):
            count("failed")
            stop.wait(0.01)


ready = []
threads = [threading.Thread(target=holder, args=(args.hold, ready), daemon=True)]
threads += [threading.Thread(target=garbage, daemon=True) for _ in range(args.garbage)]
threads += [threading.Thread(target=replay, daemon=True) for _ in range(args.replay)]
threads += [threading.Thread(target=tls, daemon=True) for _ in range(args.tls)]
for t in threads:
    t.start()
while not ready:
    stop.wait(0.01)
if args.replay or args.tls:
    started.wait(30)
print(f"ready held {ready[0]}", flush=True)
sys.stdin.read()
stop.set()
for t in threads:
    t.join(timeout=12)
print(
    f"held {ready[0]} answers {counts['answers']} refused {counts['refused']} failed {counts['failed']}",
    flush=True,
)
