"""ttybot.py - a bot that tries to reach a terminal, for the worker's
no-terminal test: it opens /dev/tty (its session's controlling terminal,
if the session has one) and, if that works, pushes one byte into the
terminal's input (TIOCSTI: what the shell reading that terminal would take
as typed).  A spawn-mode bot; the fork server runs it in pool and fork
mode too.  Its result: {"tty": "opened" or the errno's name, "tiocsti":
"pushed" or the errno's name (only if opened), "sid": its session id,
"pid": its pid}.
"""
import errno
import fcntl
import json
import os
import sys
import termios


def main():
    sys.stdin.buffer.read()
    out = {"sid": os.getsid(0), "pid": os.getpid()}
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError as e:
        out["tty"] = errno.errorcode.get(e.errno, str(e.errno))
    else:
        out["tty"] = "opened"
        try:
            fcntl.ioctl(fd, termios.TIOCSTI, b"#")
            out["tiocsti"] = "pushed"
        except OSError as e:
            out["tiocsti"] = errno.errorcode.get(e.errno, str(e.errno))
        os.close(fd)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
