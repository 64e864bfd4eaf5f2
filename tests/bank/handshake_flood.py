"""A handshake flood against Bob from a loopback address of its own (127.0.0.2 by default), until
its standard input closes: each connection says Hello and 'prove it' (which costs Bob one RSA
signature), reads Bob's proof, and hangs up, in THREADS threads at once.

    python3 handshake_flood.py PORT [THREADS] [SOURCE]

Prints 'flooding' once Bob has answered the first connection, then at the end
'proofs P refused R failed F': proofs received (signatures Bob made for the flood), refusals
(Bob's cleartext error instead of 'Hi, I'm Bob'), and connections that failed otherwise.
"""
import os
import socket
import struct
import sys
import threading

port = int(sys.argv[1])
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 8
source = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.2"
stop = threading.Event()
first = threading.Event()
lock = threading.Lock()
counts = {"proofs": 0, "refused": 0, "failed": 0}


def field(data):
    return struct.pack(">I", len(data)) + data


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


HELLO = frame(b"\x01" + field(b"Hello") + field(b"bank/1"))


def prove_it():
    return frame(b"\x03" + field(b"prove it") + field(os.urandom(32)))


def read_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    return data


def read_frame(s):
    (length,) = struct.unpack(">I", read_exact(s, 4))
    return read_exact(s, length)


def count(what):
    with lock:
        counts[what] += 1
    first.set()


def one():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(HELLO)
        hi = read_frame(s)
        if hi[:1] == b"\x7f":
            count("refused")
            return
        s.sendall(prove_it())
        proof = read_frame(s)
        count("proofs" if proof[:1] == b"\x04" else "failed")
    except OSError:
        count("failed")
    finally:
        s.close()


def flooder():
    while not stop.is_set():
        one()


workers = [threading.Thread(target=flooder, daemon=True) for _ in range(threads)]
for w in workers:
    w.start()
first.wait(30)
print("flooding", flush=True)
sys.stdin.read()
stop.set()
for w in workers:
    w.join(timeout=12)
print(f"proofs {counts['proofs']} refused {counts['refused']} failed {counts['failed']}", flush=True)
