"""Runs a command on a real terminal (a pty) and holds a dialog with it, as a person would: waits
until the output shows each prompt, then types the answer and Enter.

    python3 pty_dialog.py [--keys] PROMPT ANSWER [PROMPT ANSWER ...] -- COMMAND [ARG ...]

Each ANSWER is typed followed by Enter; with --keys, ANSWER is typed as written instead, with
Python escapes (\\r for Enter, \\x03 for Ctrl-C). Copies everything the command writes to standard
output as it comes (with \\r\\n as written), and exits with the command's status; exits 124 when a
prompt does not appear within 30 s.
"""
import os
import pty
import select
import sys
import time

split = sys.argv.index("--")
keys = sys.argv[1:2] == ["--keys"]
pairs = sys.argv[1 + keys:split]
command = sys.argv[split + 1:]
dialog = list(zip(pairs[0::2], pairs[1::2]))

pid, fd = pty.fork()
if pid == 0:
    os.execvp(command[0], command)

out = b""
seen = 0  # output before this offset has been matched already


def read(timeout):
    global out
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return True
    try:
        chunk = os.read(fd, 65536)
    except OSError:
        return False
    if not chunk:
        return False
    out += chunk
    sys.stdout.buffer.write(chunk)
    sys.stdout.flush()
    return True


for prompt, answer in dialog:
    deadline = time.time() + 30
    while out.find(prompt.encode(), seen) < 0:
        if time.time() > deadline or not read(0.1):
            sys.stdout.write(f"\n[pty_dialog: no prompt {prompt!r}]\n")
            os.kill(pid, 9)
            sys.exit(124)
    seen = out.find(prompt.encode(), seen) + len(prompt)
    if keys:
        os.write(fd, answer.encode().decode("unicode_escape").encode())
    else:
        os.write(fd, answer.encode() + b"\r")

deadline = time.time() + 30
while time.time() < deadline and read(0.1):
    pass
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
