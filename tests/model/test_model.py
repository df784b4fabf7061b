#!/usr/bin/env python3
"""Model-based test of chanq's job lifecycle: random sequences of
operations against a real chanqd (with a journal, compacting often), each
answer and, after every step, the jobs it touched and every queue's counts
checked against the reference model in model.py; restarts (SIGTERM and
SIGKILL) checked against the model and against the state digest taken
before the stop. docs/hacking.md ("Model-based test") has the details.

    CHANQ_MODEL_SEED=N     replay one run (the seed is printed)
    CHANQ_MODEL_STEPS=N    steps per run (default 10000)
    CHANQ_MODEL_MINUTES=M  run seed after seed for M minutes
    CHANQ_MODEL_BUGS=LIST  stop steering around known daemon bugs (names
                           in ops.KNOWN_BUGS, or "all"): the run then shows them
    CHANQ_MODEL_VERBOSE=1  print every step; CHANQ_MODEL_TALLY=1 only the
                           count of each op's outcomes at the end

Exit status: 0 pass, 1 mismatch (seed, step, the last steps and the
differing fields are printed), 77 when chanqd is not built.
"""
import os
import random
import signal
import sys
import time

sys.dont_write_bytecode = True  # the source tree may be read-only (make distcheck)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from driver import CHANQD, ServerGone  # noqa: E402
from model import Mismatch  # noqa: E402
from ops import KNOWN_BUGS  # noqa: E402
from run import Failure, Run  # noqa: E402

STEPS_DEFAULT = 10000
TIME_LIMIT_S = 900  # one run under make check; a hang fails it


def on_alarm(signum, frame):
    raise Failure("the run took longer than %d s" % TIME_LIMIT_S)


def run_one(seed, steps, bugs, verbose, tally):
    """Runs one seed; returns the finished Run, or None after a failure."""
    r = Run(seed, steps, bugs, verbose)
    print("model: seed %d, %d steps; chanqd %s" % (seed, steps, r.config))
    sys.stdout.flush()
    start = time.monotonic()
    ok = False
    try:
        r.run()
        ok = True
    except (Mismatch, Failure, AssertionError, ServerGone, OSError) as e:
        r.report(e)
        return None
    finally:
        r.close()
        r.daemon.cleanup(keep=not ok)
    print("model: seed %d passed: %d steps, %d restarts (%d digests compared), %d timer windows, "
          "%d jobs, %.1f s (%.1f s in timer windows, %.1f s in restarts)"
          % (seed, r.step, r.restarts, r.digests, r.windows, len(r.model.ids_seen),
             time.monotonic() - start, r.spent["timers"], r.spent["restarts"]))
    if verbose or tally:
        print("  " + " ".join("%s=%d" % kv for kv in sorted(r.tally.items())))
    sys.stdout.flush()
    return r


def main():
    if not os.access(CHANQD, os.X_OK):
        print("SKIP: %s is not built" % CHANQD)
        return 77
    env = os.environ
    steps = int(env.get("CHANQ_MODEL_STEPS", STEPS_DEFAULT))
    verbose = env.get("CHANQ_MODEL_VERBOSE") == "1"
    tally = env.get("CHANQ_MODEL_TALLY") == "1"
    bugs = set(b for b in env.get("CHANQ_MODEL_BUGS", "").split(",") if b)
    if "all" in bugs:
        bugs = set(KNOWN_BUGS)
    if bugs - set(KNOWN_BUGS):
        print("CHANQ_MODEL_BUGS: unknown %s (known: %s)"
              % (sorted(bugs - set(KNOWN_BUGS)), ", ".join(sorted(KNOWN_BUGS))))
        return 1
    minutes = float(env.get("CHANQ_MODEL_MINUTES", "0"))
    if "CHANQ_MODEL_SEED" in env:
        seeds = iter([int(env["CHANQ_MODEL_SEED"])])
    else:
        seeds = iter(lambda: random.SystemRandom().randrange(1, 2 ** 31), None)
    if minutes <= 0:
        # Failing on a hang (rather than blocking make check) also stops its chanqd.
        signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(TIME_LIMIT_S)
        return 0 if run_one(next(seeds), steps, bugs, verbose, tally) else 1
    end = time.monotonic() + minutes * 60
    start = time.monotonic()
    passed = total = restarts = digests = 0
    for seed in seeds:
        if time.monotonic() >= end:
            break
        r = run_one(seed, steps, bugs, verbose, tally)
        if r is None:
            print("model: %d seeds (%d steps) passed before seed %d failed"
                  % (passed, total, seed))
            return 1
        passed += 1
        total += r.step
        restarts += r.restarts
        digests += r.digests
    print("model: %d seeds, %d steps, %d restarts (%d digests compared) passed in %.1f minutes"
          % (passed, total, restarts, digests, (time.monotonic() - start) / 60))
    return 0


if __name__ == "__main__":
    sys.exit(main())
