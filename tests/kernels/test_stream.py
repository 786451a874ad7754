"""kernels.stream: the per-symbol streaming core gives the same rows whatever the chunking (one call, hour-like
partitions, one received frame at a time), availability stamps included."""

import numpy as np
import pytest

from kernels.stream import SymbolStream
from l2lab.schema import FLAG_FRAME_END
from simulator.config import load_config
from simulator.l2 import MarketSimulator
from simulator.normalized import event_rows, start_rows

START = 1_767_571_200_000_000_000
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def stream_rows():
    """40 s of BTC-USD: L2 rows and trades, the trades received 0.3 ms after the book frame of the same venue
    event (in their own frames, as on Coinbase's market_trades channel); only one L2 frame in 30 is kept, so
    quiet spells where a trade is a row's last input are common (the rows differ from the venue's book, but every
    chunking sees the same rows)."""
    sim = MarketSimulator(load_config(symbols=["BTC-USD"]), seed=2, start_ns=START, record_latent=False)
    first = start_rows(sim, "BTC-USD", START)
    l2, tr = event_rows(sim, sim.advance(START + 40 * 10**9), "BTC-USD")
    frame_id = np.r_[0, np.cumsum((l2["flags"] & FLAG_FRAME_END) != 0)[:-1]]
    l2 = l2[frame_id % 30 == 0]
    tr = tr.copy()
    tr["ts_recv_ns"] += 300_000
    return np.concatenate([first, l2]), tr


def run(events, trades, cuts, timer=False):
    """Feed in chunks ending at the receive times ``cuts`` (with ``timer``, each chunk is followed by a flush
    through its end, as the live timer does); then flush through the last frame."""
    s = SymbolStream("BTC-USD", 2, 8, grids_ms=(100, 1000))
    out = {100: [], 1000: []}
    lo = -1
    for hi in [*cuts, int(events["ts_recv_ns"].max())]:
        ev = events[(events["ts_recv_ns"] > lo) & (events["ts_recv_ns"] <= hi)]
        tr = trades[(trades["ts_recv_ns"] > lo) & (trades["ts_recv_ns"] <= hi)]
        for g, rows in s.process(ev, s.dedupe(tr), flush_through_ns=hi if timer else None).items():
            out[g].append(rows)
        lo = hi
    for g, rows in s.process(None, None, flush_through_ns=lo).items():
        out[g].append(rows)
    return out


def flat(parts):
    t = np.concatenate([p.frame.t_ns for p in parts])
    avail = np.concatenate([p.frame.avail_ns for p in parts])
    cols = {k: np.concatenate([p.columns[k] for p in parts]) for k in parts[0].columns}
    return t, avail, cols


def test_any_chunking_gives_the_same_rows(stream_rows):
    events, trades = stream_rows
    ends = events["ts_recv_ns"][(events["flags"] & FLAG_FRAME_END) != 0]
    one = run(events, trades, [])
    rng = np.random.default_rng(0)
    uneven = sorted(rng.choice(ends[:-1], 7, replace=False).tolist())
    per_frame = np.unique(np.r_[ends[:-1], trades["ts_recv_ns"]])[:-1].tolist()
    timer = sorted(rng.integers(ends[0], ends[-1], 3000).tolist())
    for cuts, flush in ((uneven, False), (per_frame[::3], False), (timer, True)):
        other = run(events, trades, cuts, flush)
        for g in (100, 1000):
            t1, a1, c1 = flat(one[g])
            t2, a2, c2 = flat(other[g])
            assert len(t1) >= 40_000 // g - 1
            np.testing.assert_array_equal(t1, t2)
            np.testing.assert_array_equal(a1, a2)  # the last trade's time is carried like its price
            for k in c1:
                np.testing.assert_array_equal(c1[k], c2[k], err_msg=f"{g} ms {k}")


def test_the_last_trade_time_is_carried_between_chunks():
    """Row 1 holds a trade received after the book's last frame; row 2 has neither a trade nor a book change.
    Its availability is the trade's time (``last_price`` still comes from that trade) in one chunk and in two."""
    from kernels.book import TopN
    from kernels.frame import build_frame
    from l2lab.schema import TRADE_DTYPE

    lv = np.zeros((2, 4, 1), np.int64)
    lv[:, 0, 0], lv[:, 1, 0], lv[:, 2, 0], lv[:, 3, 0] = 10_000, 5, 10_001, 7
    t = np.array([START + 100_000_000, START + 200_000_000])
    book_t = np.array([START + 10_000_000] * 2)
    top = TopN.from_arrays(t, book_t, np.array([3, 3]), lv, np.array([1, 1], np.uint8))
    trade = np.zeros(1, TRADE_DTYPE)
    trade["ts_recv_ns"], trade["price"], trade["size"] = START + 50_000_000, 10_000, 100
    whole = build_frame("X", top, trade, 2, 8, 100_000_000)
    assert whole.avail_ns.tolist() == [START + 50_000_000] * 2
    def rows(sl):
        return TopN(*(getattr(top, f)[sl] for f in TopN.__dataclass_fields__))

    first = build_frame("X", rows(slice(0, 1)), trade, 2, 8, 100_000_000)
    second = build_frame("X", rows(slice(1, 2)), trade[:0], 2, 8, 100_000_000, first.last_price[-1], 3,
                         prev_last_trade_ns=START + 50_000_000)
    assert first.avail_ns.tolist() + second.avail_ns.tolist() == whole.avail_ns.tolist()
    assert second.last_price.tolist() == whole.last_price[1:].tolist()
