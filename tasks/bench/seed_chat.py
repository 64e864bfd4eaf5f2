"""A seed-style chat server (seed 004), the peer of `deno task bench`'s fan-out row.

As the seed wrote it: one thread, select() over the listening socket and every client, ssl's
wrap_socket on the listening socket (so accept() does the handshake, blocking), TLS 1.2 only, and
every message sent to every other client with blocking writes. Two departures, both needed to
measure at all: the cipher is ECDHE-RSA-AES128-GCM-SHA256 rather than AES128-SHA (rustls, the
benchmark's client, has no CBC suites), and a frame is a 4-byte big-endian length and the bytes
(the seed's htonl length, without pickle).

    python3 seed_chat.py PORT CERT KEY
"""

import select
import socket
import ssl
import struct
import sys


def main():
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=cert, keyfile=key)
    context.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(1024)
    server = context.wrap_socket(server, server_side=True)
    print("listening on 127.0.0.1:%d" % port, file=sys.stderr, flush=True)
    clients = []
    buffers = {}
    while True:
        readable, _, _ = select.select([server] + clients, [], [])
        for sock in readable:
            if sock is server:
                try:
                    client, _ = server.accept()
                except (ssl.SSLError, OSError):
                    continue
                clients.append(client)
                buffers[client] = b""
                continue
            try:
                data = sock.recv(65536)
            except (ssl.SSLError, OSError):
                data = b""
            if not data:
                clients.remove(sock)
                del buffers[sock]
                sock.close()
                continue
            buf = buffers[sock] + data
            while len(buf) >= 4:
                (size,) = struct.unpack("!L", buf[:4])
                if len(buf) < 4 + size:
                    break
                frame, buf = buf[: 4 + size], buf[4 + size :]
                for other in clients:
                    if other is not sock:
                        try:
                            other.sendall(frame)
                        except (ssl.SSLError, OSError):
                            pass
            buffers[sock] = buf


if __name__ == "__main__":
    main()
