"""Offline normalization of raw captures into bronze, through the very normalizer the live collector uses.

``ingest_capture(path, data_root)`` reads every frame, feeds it to a :class:`collectors.coinbase.CoinbaseNormalizer`
with the connection ids recorded in the capture, and writes bronze every ``BATCH_FRAMES`` frames. The product
table (fixed-point exponents) comes from ``products.json`` beside the capture (the collector writes it) or is
given explicitly.

Two readers give the same bronze rows, gaps and quarantine (tests/collectors/test_ingest_bulk.py):

* ``bulk=True`` (default): each segment is read in pieces of whole lines, scanned by the compiled
  :mod:`collectors.frame_scan`, and runs of ordinary ``l2_data`` frames are taken by
  ``CoinbaseNormalizer.feed_scanned``; every other line is parsed by ``collectors.capture.parse_line`` and fed
  with ``feed``, one by one, exactly as the frame-by-frame reader does.
* ``bulk=False``: ``collectors.capture.read_capture`` and ``feed`` for every frame (the reference).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from collectors.bronze import BronzeWriter
from collectors.capture import capture_files, parse_line, read_capture, read_chunks
from collectors.coinbase import CoinbaseNormalizer, ProductScale
from collectors.frame_scan import SLOW, scan
from l2lab import atomic

BATCH_FRAMES = 200_000


def write_products(folder: Path, scales: dict[str, ProductScale]) -> Path:
    path = Path(folder) / "products.json"
    atomic.write_json(path, {p: {"price_exp": s.price_exp, "size_exp": s.size_exp} for p, s in scales.items()})
    return path


def read_products(path: str | os.PathLike) -> dict[str, ProductScale]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        return {p: ProductScale(int(v["price_exp"]), int(v["size_exp"])) for p, v in data.items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a product table ({exc})") from None


def find_products(capture: Path) -> Path:
    """``products.json`` in the capture's folder or any parent up to ``exchange=…``."""
    start = capture if capture.is_dir() else capture.parent
    for folder in [start, *start.parents]:
        if (folder / "products.json").exists():
            return folder / "products.json"
        if folder.name.startswith("exchange="):
            break
    raise ValueError(f"no products.json beside {capture}: pass --products FILE")


def ingest_capture(path: str | os.PathLike, data_root: Path, *, exchange: str = "coinbase",
                   products: dict[str, ProductScale] | None = None, progress=None, bulk: bool = True) -> dict:
    path = Path(path)
    scales = products or read_products(find_products(path))
    norm = CoinbaseNormalizer(scales, source=f"ingest:{path.name}")
    bronze = BronzeWriter(Path(data_root) / "bronze", exchange)

    def batch_done(n: int) -> None:
        _write(norm, bronze, scales)
        if progress:
            progress(n)

    n = (_feed_bulk if bulk else _feed_frames)(path, norm, batch_done)
    norm.finish()
    _write(norm, bronze, scales)
    return {"frames": n, "normalizer": dict(norm.stats),
            "bronze_rows": {k: v for k, v in bronze.rows_written.items() if v}}


def _feed_frames(path: Path, norm: CoinbaseNormalizer, batch_done) -> int:
    n = 0
    for rec in read_capture(path):
        norm.feed(rec.ts_recv_ns, rec.raw, rec.conn, where=f"{rec.file}:{rec.line}")
        n += 1
        if n % BATCH_FRAMES == 0:
            batch_done(n)
    return n


def _feed_bulk(path: Path, norm: CoinbaseNormalizer, batch_done) -> int:
    """The same frames in the same order as :func:`_feed_frames`, batches at the same frame counts."""
    n = 0
    for f in capture_files(path):
        first_line = 1
        for data in read_chunks(f):
            block = scan(np.frombuffer(data, np.uint8), norm.scan_table, first_line)
            first_line += block.n  # every line of a piece ends with a newline but a final unterminated one
            i = 0
            while i < block.n:
                stop = min(block.n, i + BATCH_FRAMES - n % BATCH_FRAMES)
                j = norm.feed_scanned(block, i, stop) if block.status[i] != SLOW else i
                if j > i:
                    n += j - i
                    i = j
                else:
                    rec = parse_line(f, block.first_line + i, block.line_bytes(i))
                    i += 1
                    if rec is None:
                        continue
                    norm.feed(rec.ts_recv_ns, rec.raw, rec.conn, where=f"{rec.file}:{rec.line}")
                    n += 1
                if n % BATCH_FRAMES == 0:
                    batch_done(n)
    return n


def _write(norm: CoinbaseNormalizer, bronze: BronzeWriter, scales) -> None:
    batch = norm.drain()
    for product, rows in batch.l2.items():
        s = scales[product]
        bronze.write_events("l2_events", product, rows, s.price_exp, s.size_exp)
    for product, rows in batch.trades.items():
        s = scales[product]
        bronze.write_events("trades", product, rows, s.price_exp, s.size_exp)
    bronze.write_records("gaps", batch.gaps)
    bronze.write_records("quarantine", batch.quarantine)
