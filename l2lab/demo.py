"""``l2lab demo``: the whole pipeline on the simulator, end to end (grows as capabilities land)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the pipeline end to end on the simulator")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of simulated market to stream")
    p.add_argument("--speed", type=float, default=10.0, help="simulated seconds per wall-clock second")
    p.set_defaults(func=run)


def run(args) -> int:
    raise NotImplementedError("demo lands with the loopback exchange")
