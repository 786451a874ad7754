"""The bulk ingest path (compiled scanner + ``feed_scanned``) gives exactly what frame-by-frame ``feed`` gives.

Every test ingests the same capture through both readers (``ingest_capture(bulk=True/False)``) and compares
every bronze data set row for row, the normalizer's counters and the frame count. Captures: random sessions
with sequence gaps, duplicates, late frames, several connections (also interleaved), big snapshots, odd number
and time formats, unicode product ids, foreign encodings of the capture line; a capture recorded from the
loopback exchange with its fault injector; a capture with a bad line (same error, same batches written before).
Small batches, pieces and recent-frame rings make every boundary happen many times.
"""

from __future__ import annotations

import asyncio
import json
import random

import numpy as np
import orjson
import pytest

import collectors.capture as capture_mod
import collectors.ingest as ingest_mod
import collectors.normalizer_store as store_mod
from collectors.bronze import read_dataset
from collectors.capture import CaptureError
from collectors.coinbase import CoinbaseNormalizer, ProductScale
from collectors.frame_scan import FAST, FAST_TRADES, SLOW, scan
from collectors.ingest import ingest_capture
from l2lab.schema import L2_EVENT_DTYPE, TRADE_DTYPE

PRODUCTS = {"BTC-USD": ProductScale(2, 8), "ÉTH-€": ProductScale(1, 3), "SOL-USD": ProductScale(0, 0)}
DATASETS = ("l2_events", "trades", "gaps", "quarantine")
T0 = 1_767_571_200_000_000_000  # 2026-01-05T00:00:00Z


def ingest_both(tmp_path, cap, products=PRODUCTS):
    out = {}
    for bulk in (True, False):
        root = tmp_path / ("bulk" if bulk else "frames")
        res = ingest_capture(cap, root, products=products, bulk=bulk)
        out[bulk] = (res, {ds: read_dataset(root / "bronze", ds) for ds in DATASETS})
    (res_b, tabs_b), (res_f, tabs_f) = out[True], out[False]
    assert res_b == res_f
    for ds in DATASETS:
        assert tabs_b[ds].num_rows == tabs_f[ds].num_rows, ds
        assert tabs_b[ds].equals(tabs_f[ds]), ds
    return res_f, tabs_f


@pytest.fixture
def small_pieces(monkeypatch):
    """Batches, read pieces and recent-frame rings small enough that their boundaries fall everywhere."""
    monkeypatch.setattr(ingest_mod, "BATCH_FRAMES", 97)
    monkeypatch.setattr(capture_mod, "CHUNK_BYTES", 3000)
    monkeypatch.setattr(store_mod, "RECENT_FRAMES", 16)


# -- frames -------------------------------------------------------------------------------------------------------
def ts_text(ns: int) -> str:
    sec, frac = divmod(ns, 1_000_000_000)
    base = np.datetime64(sec, "s").astype(str)
    return f"{base}.{frac:09d}".rstrip("0").rstrip(".") + "Z"


ODD_NUMBERS = ["0.10", "1e-8", "00.1", "-0", "0", "5.", ".5", "1.000000000", "123456789012345678901234",
               "92233720368547758.07", "9223372036854775807", " 1", "1 ", "", "0x10", "１", "1.23456789", "+1",
               "0.00000001", "000", "7", "1.5e3", "NaN", "99999999999999999.9"]
ODD_TIMES = ["2026-01-05T00:00:01Z", "2026-01-05T00:00:01+00:00", "2026-01-05T00:00:01.1234567891Z",
             "1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-32T00:00:00Z",
             "2026-01-05T25:61:61Z", "2026-01-05 00:00:01Z", "2026-01-05T00:00:01.Z", "2026-01-05T00:00:01z",
             "2300-01-01T00:00:00Z", "1800-06-30T12:00:00.5Z", "２026-01-05T00:00:01Z", ""]


def js(value):
    return json.dumps(value, ensure_ascii=False)


def update_text(side, t, price, qty):
    return f'{{"side":{js(side)},"event_time":{js(t)},"price_level":{js(price)},"new_quantity":{js(qty)}}}'


def event_text(etype, product, updates):
    return (f'{{"type":{json.dumps(etype)},"product_id":{json.dumps(product, ensure_ascii=False)},'
            f'"updates":[{",".join(updates)}]}}')


def l2_text(seq, t, events, client_id=""):
    return (f'{{"channel":"l2_data","client_id":{js(client_id)},"timestamp":{js(t)},'
            f'"sequence_num":{seq},"events":[{",".join(events)}]}}')


class Session:
    """A random capture: frames on one or more connections with faults. ``rng`` draws everything."""

    def __init__(self, rng: random.Random, odd: float):
        self.rng, self.odd = rng, odd
        self.ts = T0
        self.seq: dict[int, int] = {}
        self.sent: dict[int, list] = {}
        self.lines: list[bytes] = []
        self.last_trade: dict[str, int] = {}

    def number(self, exp, positive=True):
        r = self.rng
        if r.random() < self.odd:
            return r.choice(ODD_NUMBERS)
        whole = r.randrange(0, 100_000)
        frac = r.randrange(0, 10**exp) if exp else 0
        text = f"{whole}.{frac:0{exp}d}".rstrip("0").rstrip(".") if exp else str(whole)
        if not positive and r.random() < 0.3:
            return "0"
        return text

    def time(self):
        if self.rng.random() < self.odd / 2:
            return self.rng.choice(ODD_TIMES)
        return ts_text(self.ts - self.rng.randrange(0, 10**6))

    def product(self):
        r = self.rng
        if r.random() < self.odd / 3:
            return r.choice(["XRP-USD", "btc-usd", "BTC-USD ", "ÉTH-\u20ac\u0000", "É\"TH"])
        return r.choice(list(PRODUCTS))

    def event(self, etype=None, levels=None):
        r = self.rng
        product = self.product()
        scale = PRODUCTS.get(product, ProductScale(2, 8))
        etype = etype or ("snapshot" if r.random() < 0.05 else "update")
        if r.random() < self.odd / 4:
            etype = r.choice(["delta", "Snapshot", ""])
        n = levels if levels is not None else (r.randrange(50, 400) if etype == "snapshot" else r.randrange(1, 4))
        if r.random() < self.odd / 4:
            n = 0
        sides = ["bid", "offer", "ask"] + (["middle", "BID"] if r.random() < self.odd else [])
        ups = [update_text(r.choice(sides), self.time(), self.number(scale.price_exp),
                           self.number(scale.size_exp, positive=False)) for _ in range(n)]
        return event_text(etype, product, ups)

    def frame(self, conn):
        """A frame text for ``conn`` with its next sequence number (and sometimes an odd variant)."""
        r = self.rng
        seq = self.seq.get(conn, 0)
        self.seq[conn] = seq + 1
        t = self.time()
        kind = r.random()
        if kind < 0.80:
            events = [self.event() for _ in range(1 if r.random() < 0.9 else r.randrange(2, 4))]
            if r.random() < self.odd / 4:
                events = []
            text = l2_text(seq, t, events, client_id=r.choice(["", "", "abc", "é", 'q"x']) if r.random() < self.odd
                           else "")
            if r.random() < self.odd / 2:  # other encodings of the same content, extra fields, reordering
                msg = orjson.loads(text) if _is_json(text) else None
                if msg is not None:
                    variant = r.randrange(4)
                    if variant == 0:
                        text = json.dumps(msg)  # spaces, \u escapes
                    elif variant == 1:
                        text = orjson.dumps({"sequence_num": msg["sequence_num"], **msg}).decode()
                    elif variant == 2:
                        text = orjson.dumps({**msg, "extra": 1}).decode()
                    else:
                        text = text.replace(f'"sequence_num":{seq}', r.choice(
                            [f'"sequence_num":0{seq}', f'"sequence_num":{seq}.0', f'"sequence_num":"{seq}"',
                             f'"sequence_num":-{seq + 1}', '"sequence_num":true',
                             '"sequence_num":92233720368547758070']))
            return text
        if kind < 0.90:
            p = self.product()
            scale = PRODUCTS.get(p, ProductScale(2, 8))
            trades = ",".join(
                f'{{"trade_id":"{tid}","product_id":{json.dumps(p, ensure_ascii=False)},'
                f'"price":"{self.number(scale.price_exp)}","size":"{self.number(scale.size_exp)}",'
                f'"side":"{r.choice(["BUY", "SELL"])}",'
                f'"time":"{self.time()}"}}' for tid in self.trade_ids(p))
            return (f'{{"channel":"market_trades","client_id":"","timestamp":"{t}","sequence_num":{seq},'
                    f'"events":[{{"type":"update","trades":[{trades}]}}]}}')
        if kind < 0.95:
            return (f'{{"channel":"heartbeats","client_id":"","timestamp":"{t}","sequence_num":{seq},'
                    f'"events":[{{"current_time":"x","heartbeat_counter":{seq}}}]}}')
        self.seq[conn] = seq  # these carry no sequence number
        return r.choice(['{"type":"error","message":"boom"}', "{", "[1]", "", "null", '{"channel":"l2_data"}',
                         '{"channel":"other","sequence_num":%d}' % seq])

    def trade_ids(self, product):
        """1-3 trade ids, newest first as the venue lists them: mostly new and increasing; sometimes a recent
        id again, an old one, a repeat inside the frame or another order."""
        r = self.rng
        last = self.last_trade.get(product, r.randrange(0, 50))
        ids = []
        for _ in range(r.randrange(1, 4)):
            x = r.random()
            if x < 0.85:
                last += r.randrange(1, 3)
                ids.append(last)
            elif x < 0.95:
                ids.append(max(0, last - r.randrange(0, 5)))  # a recent id again (a subscription's replay)
            else:
                ids.append(ids[-1] if ids else r.randrange(0, last + 1))
        self.last_trade[product] = last
        return ids[::-1] if r.random() < 0.85 else r.sample(ids, len(ids))

    def emit(self, raw, conn, style="orjson"):
        self.ts += self.rng.randrange(1, 10**6)
        if style == "orjson":
            rec = {"ts_recv_ns": self.ts, "raw": raw} if conn is None else {"ts_recv_ns": self.ts, "raw": raw,
                                                                            "conn": conn}
            line = orjson.dumps(rec)
        elif style == "json":
            line = json.dumps({"ts_recv_ns": self.ts, "raw": raw, "conn": conn or 0}).encode()
        elif style == "reordered":
            line = orjson.dumps({"raw": raw, "conn": conn or 0, "ts_recv_ns": self.ts})
        else:  # blank line
            line = b""
        self.lines.append(line)
        self.sent.setdefault(conn, []).append(raw)

    def run(self, n, conns):
        r = self.rng
        conn = conns[0]
        for _ in range(n):
            if r.random() < 0.01:
                conn = r.choice(conns)  # a new connection (or, adversarially, back to an old one)
            x = r.random()
            if x < 0.02 and self.sent.get(conn):
                self.emit(r.choice(self.sent[conn][-30:]), conn)  # duplicate (or late, if reordered in between)
            elif x < 0.03:
                self.seq[conn] = self.seq.get(conn, 0) + r.randrange(1, 4)  # a gap
                self.emit(self.frame(conn), conn)
            elif x < 0.04 and self.seq.get(conn, 0) > 3:
                saved = self.seq[conn]
                self.seq[conn] = saved - r.randrange(2, 4)  # a late frame with other content
                self.emit(self.frame(conn), conn)
                self.seq[conn] = saved
            elif x < 0.045:
                self.emit("", conn, style=r.choice(["json", "reordered", "blank"]) if self.odd else "orjson")
                if self.lines[-1] == b"":
                    self.sent[conn].pop()
            else:
                style = "orjson" if r.random() > self.odd / 4 else r.choice(["json", "reordered"])
                self.emit(self.frame(conn), conn, style)
        return self.lines


def _is_json(text):
    try:
        return isinstance(orjson.loads(text), dict)
    except orjson.JSONDecodeError:
        return False


def write_lines(path, lines, final_newline=True, streamed=False):
    """A capture file; ``.zst``: zstd frames of known size cut every 1-4 KB wherever that falls (mid-line
    too), so the frame-by-frame reader's pieces and carried partial lines fall everywhere; ``streamed``: one
    frame of unknown size instead (the streaming reader, in pieces of ``CHUNK_BYTES``)."""
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    if path.name.endswith(".zst"):
        import zstandard

        cctx = zstandard.ZstdCompressor()
        if streamed:
            with open(path, "wb") as fh, cctx.stream_writer(fh) as sink:
                sink.write(b"\n".join(lines) + (b"\n" if final_newline else b""))
            return path
        rng = random.Random(len(data))
        cuts, pos = [], 0
        while pos < len(data):
            cuts.append((pos, min(len(data), pos + rng.randrange(1000, 4000))))
            pos = cuts[-1][1]
        data = b"".join(cctx.compress(data[a:b]) for a, b in cuts)
    path.write_bytes(data)
    return path


# -- tests --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed,odd,conns", [(1, 0.0, [None]), (3, 0.1, [1, 2, 3]), (4, 0.3, [0, 5]),
                                            (5, 0.03, [None, 9])])
def test_random_sessions_bulk_equals_frame_by_frame(tmp_path, small_pieces, seed, odd, conns):
    lines = Session(random.Random(seed), odd).run(500, conns)
    cap = write_lines(tmp_path / "capture-1.jsonl.zst", lines, final_newline=seed % 2 == 0, streamed=seed in (3, 5))
    res, tabs = ingest_both(tmp_path, cap)
    assert res["normalizer"]["l2_rows"] > 0
    if odd:
        assert tabs["quarantine"].num_rows > 0


def test_clean_session_takes_frames_in_bulk(tmp_path):
    """Ordinary frames really go the compiled way (so the equality above is not all fallbacks), and the rows of a
    scanned l2_data frame are what feed() stages for it."""
    lines = Session(random.Random(11), 0.0).run(400, [3])
    norm = CoinbaseNormalizer(PRODUCTS)
    block = scan(np.frombuffer(b"\n".join(lines) + b"\n", np.uint8), norm.scan_table)
    status = block.lines["status"][:block.n]
    raws = [orjson.loads(line)["raw"] if line else "" for line in lines]
    channel = np.array([orjson.loads(r).get("channel") if _is_json(r) and "events" in orjson.loads(r) else None
                        for r in raws])
    assert (status[channel == "l2_data"] == FAST).all() and (status[channel == "market_trades"] == FAST_TRADES).all()
    assert (status[(channel != "l2_data") & (channel != "market_trades")] == SLOW).all()
    # the scanned rows of each FAST line are what feed() stages for that frame
    for i in np.flatnonzero(status == FAST)[:50].tolist():
        ref = CoinbaseNormalizer(PRODUCTS)
        rec = orjson.loads(lines[i])
        ref.feed(rec["ts_recv_ns"], rec["raw"], rec.get("conn", 0))
        idx = np.arange(block.lines["row0"][i], block.lines["row0"][i + 1])
        for product, rows in ref.drain().l2.items():
            mine = idx[block.rows["prod"][idx] == norm.scan_table.names.index(product)]
            assert block.block_rows.rows_as(mine, L2_EVENT_DTYPE).tobytes() == rows[rows["kind"] != 3].tobytes()
    # and those of each FAST_TRADES line what feed() stages for that frame (before any dedupe)
    checked = 0
    for i in np.flatnonzero(status == FAST_TRADES)[:50].tolist():
        ref = CoinbaseNormalizer(PRODUCTS)
        rec = orjson.loads(lines[i])
        ref.feed(rec["ts_recv_ns"], rec["raw"], rec.get("conn", 0))
        ids = [t[3] for _, t in block.trades_of(i)]
        if len(set(ids)) < len(ids):
            continue  # a repeat inside the frame: feed() keeps the first only
        idx = np.arange(block.lines["row0"][i], block.lines["row0"][i + 1])
        staged = ref.drain().trades
        assert staged and [(p, tuple(t)) for p, t in block.trades_of(i)] == [
            (p, tuple(t)) for p, rows in staged.items() for t in rows.tolist()]
        for product, rows in staged.items():
            mine = idx[block.rows["prod"][idx] == norm.scan_table.names.index(product)]
            assert block.block_rows.rows_as(mine, TRADE_DTYPE).tobytes() == rows.tobytes()
            checked += 1
    assert checked > 5


def test_clean_session_is_taken_by_feed_scanned(tmp_path, monkeypatch):
    """Bulk ingest of ordinary frames leaves few of them to ``feed`` (so the equality tests are not all fallbacks),
    and a normalizer with a row hook takes nothing in bulk (block rows would bypass the hook)."""
    lines = Session(random.Random(11), 0.0).run(400, [3])
    cap = write_lines(tmp_path / "capture-1.jsonl", lines)
    fed = []
    feed = CoinbaseNormalizer.feed
    monkeypatch.setattr(CoinbaseNormalizer, "feed", lambda self, *a, **k: (fed.append(1), feed(self, *a, **k))[1])
    one_by_one = []  # trade frames whose trades are deduplicated one by one (an id not above all before it)
    accept = CoinbaseNormalizer._accept_trades
    monkeypatch.setattr(CoinbaseNormalizer, "_accept_trades",
                        lambda self, staged: (one_by_one.append(1), accept(self, staged))[1])
    res = ingest_capture(cap, tmp_path / "bulk", products=PRODUCTS)
    assert res["frames"] == 400 and len(fed) < 100  # heartbeats, error frames, gaps, first frames: ~15%
    trade_frames = sum(b'market_trades' in line for line in lines)
    assert res["normalizer"]["trades"] > 0 and len(one_by_one) < trade_frames / 2
    norm = CoinbaseNormalizer(PRODUCTS)
    block = scan(np.frombuffer(b"\n".join(lines) + b"\n", np.uint8), norm.scan_table)
    i = 0
    while True:  # feed frames one by one until a bulk run starts: with a hook set, none is taken
        norm.on_rows = lambda *a: None
        assert norm.feed_scanned(block, i, block.n) == i
        norm.on_rows = None
        if norm.feed_scanned(block, i, block.n) > i:
            break
        rec = orjson.loads(block.line_bytes(i))
        norm.feed(rec["ts_recv_ns"], rec["raw"], rec["conn"])
        i += 1
    assert i < 100


def test_plain_segment_with_a_cut_last_line_and_blank_lines(tmp_path, small_pieces):
    lines = Session(random.Random(21), 0.05).run(300, [4])
    lines.insert(10, b"")
    lines.append(b'{"ts_recv_ns":1,"raw":"{\\"chan')  # a crash cut this line
    ingest_both(tmp_path, write_lines(tmp_path / "capture-5.jsonl", lines, final_newline=False))


def test_a_bad_line_raises_the_same_error_after_the_same_batches(tmp_path, small_pieces):
    lines = Session(random.Random(31), 0.0).run(200, [1])
    lines.insert(150, b'{"ts_recv_ns":"x","raw":"y"}')
    cap = write_lines(tmp_path / "capture-2.jsonl.zst", lines)
    errors, written = [], []
    for bulk in (True, False):
        root = tmp_path / ("bulk" if bulk else "frames")
        with pytest.raises(CaptureError) as exc:
            ingest_capture(cap, root, products=PRODUCTS, bulk=bulk)
        errors.append(str(exc.value))
        written.append({ds: read_dataset(root / "bronze", ds) for ds in DATASETS})
    assert errors[0] == errors[1] and "line 151" in errors[0]
    for ds in DATASETS:
        assert written[0][ds].equals(written[1][ds]), ds


def test_several_segments_and_big_snapshots(tmp_path, small_pieces):
    rng = random.Random(41)
    folder = tmp_path / "raw"
    folder.mkdir()
    sess = Session(rng, 0.0)
    for k in range(3):
        sess.lines = []
        sess.emit(l2_text(sess.seq.get(k, 0), ts_text(sess.ts), [sess.event("snapshot", levels=1500)]), k)
        sess.seq[k] = sess.seq.get(k, 0) + 1
        sess.run(150, [k])
        write_lines(folder / f"capture-{sess.ts}.jsonl.zst", sess.lines)
    ingest_both(tmp_path, folder)


@pytest.mark.timeout(60)
def test_loopback_capture_with_injected_faults(tmp_path, small_pieces):
    """Frames the loopback exchange sent through its fault injector (drops, gaps, duplicates, reorders,
    malformed frames, error frames, disconnects), recorded per connection as the collector would."""
    import websockets

    from collectors.live import scales_from_markets
    from loopback.clients import coinbase_markets
    from loopback.faults import FaultConfig
    from loopback.server import LoopbackExchange
    from simulator.l2 import MarketSimulator

    faults = FaultConfig(seed=5, drop=0.02, duplicate=0.03, reorder=0.02, gap=0.01, malformed=0.01, error=0.005,
                         disconnect=0.004, warmup_frames=20)
    symbols = ["BTC-USD", "ETH-USD", "SOL-USD"]
    records: list[tuple[int, str, int]] = []

    async def session():
        sim = MarketSimulator(seed=3, record_latent=False)
        async with LoopbackExchange(sim=sim, speed=None, perps=False, faults=faults) as ex:
            for conn in range(3):
                async with websockets.connect(ex.ws_url, max_size=None) as ws:
                    for channel in ("level2", "market_trades", "heartbeats"):
                        await ws.send(orjson.dumps({"type": "subscribe", "product_ids": symbols, "channel": channel}))
                    for _ in range(4):
                        await ex.advance(0.25)
                        try:
                            while True:
                                text = await asyncio.wait_for(ws.recv(), 0.2)
                                records.append((T0 + len(records), text, conn))
                        except (asyncio.TimeoutError, websockets.ConnectionClosed):
                            pass
                        if ws.state.name == "CLOSED":
                            break
            return sim.products

    scales = scales_from_markets({m["id"]: m for m in coinbase_markets(asyncio.run(session()))})
    cap = tmp_path / "capture-3.jsonl.zst"
    lines = [orjson.dumps({"ts_recv_ns": ts, "raw": text, "conn": conn}) for ts, text, conn in records]
    write_lines(cap, lines)
    res, tabs = ingest_both(tmp_path, cap, products=scales)
    assert res["normalizer"]["l2_rows"] > 1000
    assert tabs["gaps"].num_rows > 3 and tabs["quarantine"].num_rows > 0
