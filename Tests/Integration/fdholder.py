#!/usr/bin/env python3
"""Holds listening TCP sockets the way systemd's socket units do and runs a daemon on them
(LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID), so that a restart refuses no connection: the
sockets stay open between the old process and the new one, and clients wait in the listen
queue. SIGUSR1 restarts the daemon as `systemctl restart` does (SIGTERM, wait for it to
exit, start it again); SIGTERM stops it and exits.

  fdholder.py NAME=ADDRESS:PORT[,NAME=ADDRESS:PORT...] COMMAND [ARG...]
"""
import os
import signal
import socket
import subprocess
import sys
import time


def main():
    specs, command = sys.argv[1], sys.argv[2:]
    socks, names = [], []
    for spec in specs.split(","):
        name, _, endpoint = spec.partition("=")
        host, _, port = endpoint.rpartition(":")
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, int(port)))
        s.listen(4096)
        socks.append(s)
        names.append(name)

    def start():
        # The sockets become fds 3, 4, ... of the child; LISTEN_PID is the child's own pid,
        # which the shell's exec keeps.
        fds = [s.fileno() for s in socks]
        script = 'LISTEN_PID=$$ exec "$0" "$@"'
        env = dict(os.environ, LISTEN_FDS=str(len(socks)), LISTEN_FDNAMES=":".join(names))
        def dup_to_3():
            for i, fd in enumerate(fds):
                os.dup2(fd, 3 + i)
                os.set_inheritable(3 + i, True)
        child = subprocess.Popen(["/bin/sh", "-c", script] + command, env=env, preexec_fn=dup_to_3, close_fds=False)
        print(f"fdholder: started pid {child.pid}", flush=True)
        return child

    child = start()
    restart = [False]
    stop = [False]
    signal.signal(signal.SIGUSR1, lambda *_: restart.__setitem__(0, True))
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    while True:
        if stop[0]:
            child.terminate()
            child.wait()
            return
        if restart[0]:
            restart[0] = False
            t0 = time.monotonic()
            child.terminate()
            code = child.wait()
            print(f"fdholder: pid {child.pid} exited {code} after {time.monotonic() - t0:.3f}s; starting again", flush=True)
            child = start()
        if child.poll() is not None:
            print(f"fdholder: pid {child.pid} exited {child.returncode} by itself", flush=True)
            sys.exit(1)
        time.sleep(0.05)


if __name__ == "__main__":
    main()
