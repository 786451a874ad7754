"""The normalizer's bounded memory (recent frames, recent trade ids) against plain OrderedDict references."""

import random
from collections import OrderedDict

import numpy as np

from collectors.frame_scan import ProductTable, scan
from collectors.normalizer_store import RecentFrames, RecentTradeIds


def test_recent_trade_ids_equal_a_fifo_dict():
    rng = random.Random(3)
    for size in (1, 5, 64):
        ring, ref = RecentTradeIds(size), OrderedDict()
        top = 0
        for _ in range(3000):
            x = rng.random()
            tid = top + rng.randrange(1, 3) if x < 0.7 else rng.randrange(max(0, top - 3 * size), top + 1)
            if x > 0.98:
                tid = -rng.randrange(0, 5)  # negative and zero ids too
            assert (tid in ring) == (tid in ref), (size, tid)
            if tid not in ref:
                ring.add(tid)
                ref[tid] = None
                if len(ref) > size:
                    ref.popitem(last=False)
                top = max(top, tid)
            assert len(ring) == len(ref)


def test_adding_increasing_ids_at_once_equals_adding_them_one_by_one():
    rng = random.Random(4)
    for size in (1, 5, 64):
        bulk, single = RecentTradeIds(size), RecentTradeIds(size)
        top = -3
        for _ in range(400):
            ids = np.cumsum([top] + [rng.randrange(1, 4) for _ in range(rng.randrange(0, 3 * size))])[1:]
            bulk.add_increasing(ids)
            for tid in ids.tolist():
                single.add(tid)
            top = int(ids[-1]) if len(ids) else top
            assert bulk.n == single.n and bulk.top == single.top and len(bulk) == len(single)
            assert sorted(bulk.ids[:len(bulk)].tolist()) == sorted(single.ids[:len(single)].tolist())
            for tid in range(top - 3 * size - 2, top + 3):
                assert (tid in bulk) == (tid in single)


def test_recent_frames_equal_a_fifo_dict_across_texts_and_blocks():
    """Frames fed one by one (str) and taken from scan blocks (escaped bytes, blocks dropped and copied out)."""
    rng = random.Random(5)
    table = ProductTable({})
    ring, ref = RecentFrames(8), OrderedDict()
    seq = 0
    for _ in range(300):
        if rng.random() < 0.5:
            text = f'{{"n":{seq},"q":"é\\"{rng.randrange(3)}"}}'
            ring.add(seq, text)
            ref[seq] = text
            seq += 1
        else:  # a block of m lines; lines that are not FAST still have raw0/raw1 set by hand here
            m = rng.randrange(1, 12)
            texts = [f'{{"n":{seq + k},"r":{rng.randrange(3)}}}' for k in range(m)]
            lines = [b'{"ts_recv_ns":1,"raw":' + _dumps(t) + b"}" for t in texts]
            block = scan(np.frombuffer(b"\n".join(lines) + b"\n", np.uint8), table)
            for k, line in enumerate(lines):
                start = int(block.lines["start"][k])
                block.lines["raw0"][k] = start + line.index(b'"raw":"') + 7
                block.lines["raw1"][k] = start + len(line) - 2
                block.seq[k] = block.lines["seq"][k] = seq + k
            ring.add_block(block, 0, m)
            for k, t in enumerate(texts):
                ref[seq + k] = t
            seq += m
        while len(ref) > 8:
            ref.popitem(last=False)
        for probe in range(max(0, seq - 12), seq):
            for candidate in ([ref[probe]] if probe in ref else []) + [f'{{"n":{probe},"r":1}}', "x"]:
                assert ring.same_text(probe, candidate) == (ref.get(probe) == candidate), (probe, candidate)


def _dumps(text):
    import orjson

    return orjson.dumps(text)


def test_interleave_equals_np_insert_over_several_pieces():
    """Extra rows inserted into pieces that are cut, not concatenated first: the same rows as ``np.insert`` into
    their concatenation, for random piece lengths (empty pieces too) and insertion points."""
    from collectors.normalizer_store import _interleave
    from l2lab.schema import L2_EVENT_DTYPE

    rng = np.random.default_rng(1)
    for _ in range(2000):
        pieces, n = [], 0
        for length in rng.integers(0, 5, rng.integers(1, 5)).tolist():
            p = np.zeros(length, L2_EVENT_DTYPE)
            p["seq"] = np.arange(n, n + length)
            pieces.append(p)
            n += length
        extra = np.zeros(int(rng.integers(1, 5)), L2_EVENT_DTYPE)
        extra["seq"] = -1 - np.arange(len(extra))
        at = np.sort(rng.integers(0, n + 1, len(extra)))
        want = np.insert(np.concatenate(pieces), at, extra)
        assert _interleave(pieces, extra, at).tobytes() == want.tobytes(), ([len(p) for p in pieces], at)
