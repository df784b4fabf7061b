#!/usr/bin/env python3
"""Checks chanqd logs written with --log-format json: every line of every
*.log file in DIR must be one JSON object whose first members are "time"
(RFC 3339, UTC, milliseconds), "level" (error, warn, info or debug),
"message" (a string) and "pid" (a number), and whose other members are
strings or whole numbers. Prints what it read; exit status 1 on the first
20 bad lines (listed) or when there is nothing to check.

Usage: json-logs.py [--min-files N] DIR"""
import argparse
import collections
import json
import os
import re
import sys

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = ("error", "warn", "info", "debug")
HEAD = ["time", "level", "message", "pid"]


def line_problem(raw):
    """Why raw (bytes, without its newline) is not a good log line, or None."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return "not UTF-8 (%s)" % e
    try:
        obj = json.loads(text, object_pairs_hook=lambda pairs: pairs)
    except ValueError as e:
        return "not JSON (%s)" % e
    if not isinstance(obj, list):
        return "not an object"
    keys = [k for k, _ in obj]
    if len(set(keys)) != len(keys):
        return "a member given twice"
    if keys[:4] != HEAD:
        return "does not start with %s" % HEAD
    o = dict(obj)
    if not isinstance(o["time"], str) or not TIME.match(o["time"]):
        return "time is not RFC 3339 UTC with milliseconds"
    if o["level"] not in LEVELS:
        return "level %r" % (o["level"],)
    if not isinstance(o["message"], str) or not o["message"]:
        return "message is not a non-empty string"
    for k, v in obj[3:]:
        if not (isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))):
            return "field %s is %r" % (k, v)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--min-files", type=int, default=1)
    ap.add_argument("dir")
    args = ap.parse_args()
    files = sorted(f for f in os.listdir(args.dir) if f.endswith(".log"))
    lines = 0
    levels = collections.Counter()
    keys = collections.Counter()
    bad = []
    for name in files:
        with open(os.path.join(args.dir, name), "rb") as f:
            data = f.read()
        if data and not data.endswith(b"\n"):
            bad.append((name, data.count(b"\n") + 1, "the last line is unfinished"))
        for n, raw in enumerate(data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n"), 1):
            if not raw and n == 1 and not data:
                continue
            lines += 1
            why = line_problem(raw)
            if why:
                bad.append((name, n, "%s: %r" % (why, raw[:300])))
                continue
            obj = json.loads(raw)
            levels[obj["level"]] += 1
            keys.update(k for k in obj if k not in HEAD)
    print("json-logs: %d files, %d lines (%s); fields: %s" % (
        len(files), lines, ", ".join("%s %d" % (lv, levels[lv]) for lv in LEVELS),
        ", ".join("%s %d" % kv for kv in sorted(keys.items())) or "none"))
    for name, n, why in bad[:20]:
        print("BAD %s:%d: %s" % (name, n, why))
    if bad:
        print("json-logs: %d bad lines" % len(bad))
        return 1
    if len(files) < args.min_files or lines == 0:
        print("json-logs: expected at least %d files with lines" % args.min_files)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
