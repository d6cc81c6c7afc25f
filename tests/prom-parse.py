#!/usr/bin/env python3
"""prom-parse.py FILE: a strict reader of Prometheus's text exposition format 0.0.4.

Exits 1 with the line at fault unless every line is a # HELP, a # TYPE or a sample of
the grammar below, every family has one HELP and one TYPE before its samples, a family's
samples are together, no sample repeats (name and labels), counters end in _total and
are not negative, and the text ends with a newline. On success prints the samples as
JSON, [[name, {label: value}, value], ...], for the caller's own checks."""
import json
import math
import re
import sys

NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*'
# A label value: any character but a backslash, a quote or a newline, or one of the three
# escapes the format defines (\\, \" and \n).
LVALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
VALUE = r'(?:[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|NaN|[+-]Inf)'
SAMPLE = re.compile(r'^(%s)(?:\{((?:%s=%s)(?:,%s=%s)*)?,?\})? (%s)(?: -?[0-9]+)?$'
                    % (NAME, LABEL, LVALUE, LABEL, LVALUE, VALUE))
PAIR = re.compile(r'(%s)=(%s)' % (LABEL, LVALUE))
HELP = re.compile(r'^# HELP (%s) ((?:[^\\\n]|\\[\\n])*)$' % NAME)
TYPE = re.compile(r'^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$' % NAME)


def unescape(v):
    return re.sub(r'\\(.)', lambda m: {'n': '\n'}.get(m.group(1), m.group(1)), v[1:-1])


def fail(no, line, why):
    sys.exit('line %d: %s: %r' % (no, why, line))


def main():
    text = open(sys.argv[1], encoding='utf-8').read()
    if not text.endswith('\n'):
        sys.exit('the text does not end with a newline')
    helps, types, done, seen, samples = {}, {}, set(), set(), []
    current = None
    for no, line in enumerate(text[:-1].split('\n'), 1):
        if line.startswith('#'):
            m = HELP.match(line) or TYPE.match(line)
            if not m:
                if line.startswith('# HELP') or line.startswith('# TYPE'):
                    fail(no, line, 'malformed HELP or TYPE')
                continue  # another comment
            name = m.group(1)
            table = helps if line.startswith('# HELP') else types
            if name in table:
                fail(no, line, 'second HELP or TYPE for %s' % name)
            if name in done or name == current and any(s[0] == name for s in samples):
                fail(no, line, 'HELP or TYPE after the samples of %s' % name)
            table[name] = m.group(2)
            if current and current != name:
                done.add(current)
            current = name
            continue
        m = SAMPLE.match(line)
        if not m:
            fail(no, line, 'not a sample')
        name, labels, value = m.group(1), m.group(2) or '', m.group(3)
        if name != current:
            fail(no, line, 'sample of %s outside its family (%s)' % (name, current))
        if name not in types or name not in helps:
            fail(no, line, 'sample before the HELP and TYPE of %s' % name)
        pairs = PAIR.findall(labels)
        names = [k for k, _ in pairs]
        if len(set(names)) != len(names):
            fail(no, line, 'a label twice')
        key = (name, tuple(sorted(pairs)))
        if key in seen:
            fail(no, line, 'the same sample twice')
        seen.add(key)
        v = float(value.replace('Inf', 'inf'))
        if types[name] == 'counter':
            if not name.endswith('_total'):
                fail(no, line, 'a counter whose name does not end in _total')
            if math.isnan(v) or v < 0:
                fail(no, line, 'a counter below 0')
        samples.append([name, {k: unescape(x) for k, x in pairs}, v])
    for name in types:
        if not any(s[0] == name for s in samples):
            sys.exit('family %s has no sample' % name)
    json.dump(samples, sys.stdout)


main()
