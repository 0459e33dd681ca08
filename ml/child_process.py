"""Child processes that cannot outlive the process that started them.

Each child runs in a process group of its own, so it and whatever it starts are killed together on
cancel or timeout (`kill_group`), and it asks Linux to SIGKILL it when its parent dies
(PR_SET_PDEATHSIG): a killed job worker leaves no `dvc` command running behind its record's back.

The child makes that request itself, `python -m ml.child_process PARENT_PID COMMAND...`, then
execs COMMAND (the setting survives exec), because a preexec_fn is unsafe in a threaded parent.
Linux sends the signal when the parent *thread* that started the child ends, so a child is started
by the thread that waits for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1
ORPHANED_EXIT = 137  # as if SIGKILLed: the parent was gone before the child could ask


def command(args: list[str]) -> list[str]:
    """`args` as a command that dies with this process."""
    return [sys.executable, "-m", "ml.child_process", str(os.getpid()), *args]


def popen(args: list[str], **options) -> subprocess.Popen:
    """Start `args` in a process group of its own (its id is the child's pid), dying with us."""
    return subprocess.Popen(command(args), process_group=0, **options)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the child and everything in its process group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def run(args: list[str], *, timeout: float | None = None, **options) -> subprocess.CompletedProcess:
    """subprocess.run(args, capture_output=True, text=True) for a child that dies with us; on
    timeout its whole group is killed before TimeoutExpired is raised."""
    with popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options) as child:
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except BaseException:  # a timeout, or this thread interrupted: the child goes too
            kill_group(child)
            child.communicate()
            raise
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)


def die_with_parent(parent: int) -> None:
    """Ask for SIGKILL when the parent dies; exit at once if it already has."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the process group still helps
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(ORPHANED_EXIT)


def main(argv: list[str]) -> None:
    parent, *args = argv
    die_with_parent(int(parent))
    os.execvp(args[0], args)


if __name__ == "__main__":
    main(sys.argv[1:])
