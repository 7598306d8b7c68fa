#!/usr/bin/env python3
"""Reads the per-block reference history that a build configured with
-DMBQ_POOL_TRACE=ON writes to $MBQ_TRACE_FILE (layout: shm/trace.c).

  pool-trace.py FILE            the blocks whose last recorded refcount is
                                live (in use: after a run that should have
                                freed everything, the leaked ones), each
                                with its last events
  pool-trace.py FILE IDX...     every event kept for those block indices

Each line: global sequence number, kernel thread id of the process that
recorded it, event, details. Handles print as g<generation>, ref words as
g<generation>/rc<refcount field>. A debugging aid; nothing reads it but you.
"""
import struct
import sys

BLOCKS, RING, EV = 256, 2048, 32  # shm/trace.c: TRACE_BLOCKS, TRACE_RING
HDR = 8 + 8 * BLOCKS
OPS = ['?', 'INTENT_SET', 'INTENT_CLR', 'CLAIM', 'RETAIN', 'RELEASE', 'DISOWN', 'ADOPT',
       'HOLD_SET', 'DROPREFS', 'AUDIT', 'FREE', 'CACHE', 'PUB', 'TAKE', 'MOVE', 'COMPLETE',
       'DROPALL', 'RECLAIM_HOLD', 'INTENT_FORGET', 'OVERFLOW']
REF_CHANGES = {'CLAIM', 'RETAIN', 'RELEASE', 'DROPREFS', 'FREE', 'CACHE'}
TAKE_KIND = {1: 'dequeue', 2: 'drop-oldest', 3: 'reset'}


def ref(r):
    return 'g%d/rc%#x' % (r >> 32, r & 0xffffffff)


def events(m, counts, idx):
    n = counts[idx]
    for k in range(max(0, n - RING), n):
        seq, who, op, a, b = struct.unpack_from('<QIIQQ', m, HDR + (idx * RING + k % RING) * EV)
        yield seq, who, OPS[op] if op < len(OPS) else str(op), a, b


def fmt(e):
    seq, who, op, a, b = e
    if op in ('CLAIM', 'CACHE'):
        d = '%s -> %s' % (ref(a), ref(b))
    elif op in ('RETAIN', 'RELEASE', 'DROPREFS'):
        d = 'now %s (%#x)' % (ref(a), b)
    elif op == 'FREE':
        d = ref(a)
    elif op in ('PUB', 'TAKE', 'MOVE', 'COMPLETE', 'DROPALL'):
        d = 'g%d queue %#x index %d' % (a >> 32, b & 0xfff, b >> 16)
        if op == 'TAKE':
            d += ' ' + TAKE_KIND.get((b >> 12) & 0xf, '?')
    elif op == 'AUDIT':
        if b & 0xff == 0xee:
            res = b >> 8
            d = 'result %d, now %s' % (res - (1 << 56) if res >> 55 else res, ref(a))
        else:
            d = 'refcount %d, counted %d' % (a & 0xffffffff, a >> 32)
    elif op.startswith('INTENT'):
        d = 'g%d (%#x)' % (a >> 32, b)
    else:
        d = '%#x %#x' % (a, b)
    return '%12d %8d %-13s %s' % (seq, who, op, d)


def final_refcount(evs):
    rc = None
    for _, _, op, a, b in evs:
        if op in REF_CHANGES:
            rc = 0 if op == 'FREE' else (b if op in ('CLAIM', 'CACHE') else a) & 0xffffffff
    return rc


def main():
    with open(sys.argv[1], 'rb') as f:
        m = f.read()
    counts = struct.unpack_from('<%dQ' % BLOCKS, m, 8)
    if len(sys.argv) > 2:
        for idx in map(int, sys.argv[2:]):
            print('== block %d: %d events' % (idx, counts[idx]))
            for e in events(m, counts, idx):
                print(fmt(e))
        return
    for idx in range(BLOCKS):
        evs = list(events(m, counts, idx))
        rc = final_refcount(evs)
        if rc and rc < 0xff000000:  # live: neither free nor in a cache
            print('== block %d: refcount %d at its last change' % (idx, rc))
            for e in evs[-10:]:
                print(fmt(e))


if __name__ == '__main__':
    main()
