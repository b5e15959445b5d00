"""Runs a command and reports, as JSON on file descriptor 3, its wall time, the CPU seconds it
and its children used (user + system) and their peak resident set size. The benchmark runs
every contender through this, so the numbers come from the kernel's own accounting (wait4)."""
import json
import os
import resource
import subprocess
import sys
import time

started = time.monotonic()
code = subprocess.call(sys.argv[1:], stdin=subprocess.DEVNULL)
wall = time.monotonic() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with os.fdopen(3, "w") as out:
    json.dump(
        {
            "code": code,
            "seconds": wall,
            "cpuSeconds": usage.ru_utime + usage.ru_stime,
            "peakRssMb": usage.ru_maxrss / 1024,
        },
        out,
    )
sys.exit(code)
