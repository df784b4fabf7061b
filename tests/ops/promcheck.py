#!/usr/bin/env python3
"""Strict checker for the Prometheus text exposition format 0.0.4.

Usage: promcheck.py FILE|-   (exit 0 when valid, 1 with the reasons on stderr)

Stricter than Prometheus itself, on purpose, for chanqd's /metrics:
- metric and label names match the documented syntax; no label name
  starting with "__"; label values use only the escapes \\\\, \\" and \\n
  and are valid UTF-8;
- every family has exactly one # HELP and one # TYPE, both before its
  first sample; the samples of a family are contiguous, and a family does
  not appear twice;
- a sample's name is its family's (plus _bucket/_sum/_count for a
  histogram, _sum/_count for a summary); counter families end in _total;
- values are floats as Go parses them (NaN, +Inf, -Inf included); counters
  and histogram counts are not negative;
- no series (name plus label set) appears twice;
- histograms: per label set, le values increase, bucket counts are
  cumulative (never decrease), the last bucket is le="+Inf", and _sum and
  _count are present with _count equal to the +Inf bucket;
- the text ends with a newline.
"""
import math
import re
import sys

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
FLOAT = re.compile(r"[+-]?(?:Inf|NaN|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class Bad(Exception):
    pass


def parse_float(text):
    if not FLOAT.match(text):
        raise Bad("bad value %r" % text)
    return float(text.replace("Inf", "inf").replace("NaN", "nan"))


def parse_labels(text, pos):
    """Parses {a="x",b="y"} starting at text[pos] == '{'; returns (dict, end)."""
    labels = {}
    pos += 1
    while True:
        if pos < len(text) and text[pos] == "}":
            return labels, pos + 1
        m = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*").match(text, pos)
        if not m:
            raise Bad("bad label name at column %d" % (pos + 1))
        name = m.group(0)
        if name.startswith("__"):
            raise Bad("reserved label name %r" % name)
        if name in labels:
            raise Bad("label %r repeated" % name)
        pos = m.end()
        if text[pos:pos + 2] != '="':
            raise Bad("label %r: expected =\"" % name)
        pos += 2
        value = []
        while True:
            if pos >= len(text):
                raise Bad("unterminated label value")
            c = text[pos]
            if c == "\\":
                esc = text[pos + 1:pos + 2]
                if esc not in ("\\", '"', "n"):
                    raise Bad("bad escape \\%s in label %r" % (esc, name))
                value.append("\n" if esc == "n" else esc)
                pos += 2
            elif c == '"':
                pos += 1
                break
            elif c == "\n":
                raise Bad("raw newline in label value")
            else:
                value.append(c)
                pos += 1
        labels[name] = "".join(value)
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        if pos < len(text) and text[pos] == "}":
            return labels, pos + 1
        raise Bad("expected , or } after label %r" % name)


def family_of(sample_name, families):
    """The family a sample belongs to, given the declared families."""
    if sample_name in families:
        return sample_name
    for suffix in ("_bucket", "_sum", "_count"):
        if sample_name.endswith(suffix):
            base = sample_name[: -len(suffix)]
            ftype = families.get(base, {}).get("type")
            if ftype == "histogram" or (ftype == "summary" and suffix != "_bucket"):
                return base
    return None


def check_histogram(name, samples, errors):
    groups = {}
    for sname, labels, value, lineno in samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        g = groups.setdefault(key, {"buckets": [], "sum": None, "count": None})
        if sname == name + "_bucket":
            if "le" not in labels:
                errors.append("line %d: %s_bucket without le" % (lineno, name))
                continue
            try:
                le = parse_float(labels["le"])
            except Bad as e:
                errors.append("line %d: le: %s" % (lineno, e))
                continue
            g["buckets"].append((le, value, lineno))
        elif sname == name + "_sum":
            g["sum"] = value
        elif sname == name + "_count":
            g["count"] = value
        else:
            errors.append("line %d: %s is not part of histogram %s" % (lineno, sname, name))
    for key, g in groups.items():
        where = "histogram %s%s" % (name, dict(key) if key else "")
        b = g["buckets"]
        if not b:
            errors.append("%s: no buckets" % where)
            continue
        for (le0, c0, _), (le1, c1, ln) in zip(b, b[1:]):
            if not le1 > le0:
                errors.append("line %d: %s: le %g after %g" % (ln, where, le1, le0))
            if c1 < c0:
                errors.append("line %d: %s: bucket counts not cumulative" % (ln, where))
        if b[-1][0] != math.inf:
            errors.append("%s: last bucket is not le=\"+Inf\"" % where)
        if g["sum"] is None or g["count"] is None:
            errors.append("%s: _sum or _count missing" % where)
        elif g["count"] != b[-1][1]:
            errors.append("%s: _count %g != +Inf bucket %g" % (where, g["count"], b[-1][1]))
        if any(c < 0 for _, c, _ in b):
            errors.append("%s: negative bucket count" % where)


def check(text):
    errors = []
    if text and not text.endswith("\n"):
        errors.append("the text does not end with a newline")
    families = {}  # name -> {"help", "type", "samples", "closed"}
    series = set()
    current = None
    for lineno, line in enumerate(text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"), 1):
        try:
            if line.strip() == "":
                continue
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    name = parts[2]
                    if not NAME.match(name):
                        raise Bad("bad metric name %r" % name)
                    fam = families.setdefault(name, {"help": None, "type": None, "samples": [], "closed": False})
                    if fam["samples"] or fam["closed"]:
                        raise Bad("# %s for %s after its samples" % (parts[1], name))
                    if current not in (None, name):
                        families[current]["closed"] = True
                    current = name
                    if parts[1] == "HELP":
                        if fam["help"] is not None:
                            raise Bad("second # HELP for %s" % name)
                        helptext = parts[3] if len(parts) > 3 else ""
                        if re.search(r"\\[^\\n]", helptext.replace("\\\\", "")):
                            raise Bad("bad escape in # HELP of %s" % name)
                        fam["help"] = helptext
                    else:
                        if fam["type"] is not None:
                            raise Bad("second # TYPE for %s" % name)
                        if len(parts) != 4 or parts[3] not in TYPES:
                            raise Bad("bad # TYPE line")
                        fam["type"] = parts[3]
                        if fam["type"] == "counter" and not name.endswith("_total"):
                            raise Bad("counter %s does not end in _total" % name)
                continue
            m = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*").match(line)
            if not m:
                raise Bad("bad metric name")
            sname = m.group(0)
            pos = m.end()
            labels = {}
            if pos < len(line) and line[pos] == "{":
                labels, pos = parse_labels(line, pos)
            if pos >= len(line) or line[pos] != " ":
                raise Bad("expected a space before the value")
            rest = line[pos + 1:].split(" ")
            if len(rest) not in (1, 2) or rest[0] == "":
                raise Bad("expected 'value [timestamp]'")
            value = parse_float(rest[0])
            if len(rest) == 2 and not re.match(r"-?\d+\Z", rest[1]):
                raise Bad("bad timestamp %r" % rest[1])
            fname = family_of(sname, families)
            if fname is None:
                raise Bad("sample %s has no # TYPE before it" % sname)
            fam = families[fname]
            if fam["help"] is None or fam["type"] is None:
                raise Bad("family %s lacks # HELP or # TYPE before its samples" % fname)
            if fam["closed"] or (current != fname):
                raise Bad("samples of %s are not contiguous" % fname)
            if fam["type"] == "counter" and not (value >= 0):
                raise Bad("counter %s is negative or NaN" % sname)
            key = (sname, tuple(sorted(labels.items())))
            if key in series:
                raise Bad("series %s%s appears twice" % (sname, labels))
            series.add(key)
            fam["samples"].append((sname, labels, value, lineno))
        except Bad as e:
            errors.append("line %d: %s: %r" % (lineno, e, line))
    for name, fam in families.items():
        if fam["help"] is None or fam["type"] is None:
            errors.append("family %s lacks # HELP or # TYPE" % name)
        if fam["type"] == "histogram" and fam["samples"]:
            check_histogram(name, fam["samples"], errors)
    return errors


def main(argv):
    if len(argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    data = sys.stdin.buffer.read() if argv[1] == "-" else open(argv[1], "rb").read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        print("promcheck: not UTF-8: %s" % e, file=sys.stderr)
        return 1
    errors = check(text)
    for e in errors:
        print("promcheck: %s" % e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
