"""A hostile host for the availability tests: holds idle connections and floods garbage from a
loopback address of its own (127.0.0.2 by default), until its standard input closes.

    python3 flood.py PORT HOLD [GARBAGE_CONNECTIONS] [SOURCE]

Prints 'held N' once the idle connections are open (N may be less than HOLD when the server
refuses some), then keeps reconnecting what the server closes and sends garbage on
GARBAGE_CONNECTIONS further connections in a loop.
"""
import os
import socket
import sys
import threading

port = int(sys.argv[1])
hold = int(sys.argv[2])
garbage = int(sys.argv[3]) if len(sys.argv) > 3 else 0
source = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.2"
stop = threading.Event()


def connect():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def holder(count, ready):
    socks = []
    for _ in range(count):
        try:
            socks.append(connect())
        except OSError:
            pass
    ready.append(len(socks))
    # Reconnect whatever the server drops, as the report's attacker did.
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


def flooder():
    junk = os.urandom(4096)
    while not stop.is_set():
        try:
            s = connect()
            for _ in range(8):
                s.sendall(junk)
            s.close()
        except OSError:
            stop.wait(0.01)


ready = []
threads = [threading.Thread(target=holder, args=(hold, ready), daemon=True)]
threads += [threading.Thread(target=flooder, daemon=True) for _ in range(garbage)]
for t in threads:
    t.start()
while not ready:
    stop.wait(0.01)
print(f"held {ready[0]}", flush=True)
sys.stdin.read()
stop.set()
for t in threads:
    t.join(timeout=2)
