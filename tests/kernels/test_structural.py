"""Structural features against a slow, obviously-right per-row reference in plain Python."""

import math

import numpy as np
import pytest
from kernel_frames import random_frame

from kernels import structural as S


def levels(px_row, sz_row):
    return [(p, q) for p, q in zip(px_row, sz_row) if q > 0]


def ratio(a, b):
    return a / b if b > 0 else math.nan


def reference_row(f, i) -> dict:
    nan = math.nan
    out = {}
    bids, asks = levels(f.bid_px[i], f.bid_sz[i]), levels(f.ask_px[i], f.ask_sz[i])
    for k in range(20):
        out[f"bid_px_L{k}"], out[f"bid_sz_L{k}"] = bids[k] if k < len(bids) else (nan, 0.0)
        out[f"ask_px_L{k}"], out[f"ask_sz_L{k}"] = asks[k] if k < len(asks) else (nan, 0.0)
    (b0, qb), (a0, qa) = (bids[0] if bids else (nan, 0.0)), (asks[0] if asks else (nan, 0.0))
    mid = (b0 + a0) / 2
    out["mid"], out["spread"] = mid, a0 - b0
    out["spread_bps"] = ratio(a0 - b0, mid) * 1e4 if not math.isnan(mid) else nan
    out["microprice"] = ratio(a0 * qb + b0 * qa, qb + qa) if bids and asks else nan
    def vwap(side):
        top = side[:5]
        return ratio(sum(p * q for p, q in top), sum(q for _, q in top))
    out["weighted_mid_k5"] = (vwap(bids) + vwap(asks)) / 2
    out["imbalance_l1"] = ratio(qb - qa, qb + qa)
    for k in S.TOPK:
        sb, sa = sum(q for _, q in bids[:k]), sum(q for _, q in asks[:k])
        out[f"imbalance_top{k}"] = ratio(sb - sa, sb + sa)
    for w in S.BANDS_BPS:
        if math.isnan(mid):
            db = da = 0.0
        else:
            db = sum(q for p, q in bids if (mid - p) / mid * 1e4 <= w)
            da = sum(q for p, q in asks if (p - mid) / mid * 1e4 <= w)
        out[f"bid_depth_{w}bps"], out[f"ask_depth_{w}bps"] = db, da
        out[f"depth_imbalance_{w}bps"] = ratio(db - da, db + da)
    for lam in S.SMART_LAMBDAS_BPS:
        if math.isnan(mid):
            sb = sa = 0.0
        else:
            sb = sum(q * math.exp(-abs((mid - p) / mid * 1e4) / lam) for p, q in bids)
            sa = sum(q * math.exp(-abs((p - mid) / mid * 1e4) / lam) for p, q in asks)
        out[f"smart_imbalance_{lam}bps"] = ratio(sb - sa, sb + sa)
    for name, side, sign in (("bid_slope", bids, -1), ("ask_slope", asks, 1)):
        pts, cum = [], 0.0
        for p, q in side[:10]:
            cum += q
            if not math.isnan(mid):
                pts.append((sign * (p - mid) / mid * 1e4, cum))
        if len(pts) >= 2:
            mx = sum(x for x, _ in pts) / len(pts)
            my = sum(y for _, y in pts) / len(pts)
            var = sum((x - mx) ** 2 for x, _ in pts)
            out[name] = sum((x - mx) * (y - my) for x, y in pts) / var if var > 0 else nan
        else:
            out[name] = nan
    out["bid_levels"], out["ask_levels"] = float(len(bids)), float(len(asks))
    out["bid_depth_top20"] = sum(q for _, q in bids)
    out["ask_depth_top20"] = sum(q for _, q in asks)
    if not f.valid[i]:
        out = {k: nan for k in out}
    return out


@pytest.mark.parametrize("seed,adversarial", [(0, False), (1, True), (2, True)])
def test_structural_matches_reference(seed, adversarial):
    f = random_frame(250, seed=seed, adversarial=adversarial)
    got = S.compute(f)
    assert set(got) == {s.name for s in S.FEATURES} and len(S.FEATURES) >= 109
    for i in range(f.n):
        ref = reference_row(f, i)
        for name, want in ref.items():
            have = got[name][i]
            if math.isnan(want):
                assert math.isnan(have), (name, i, have)
            else:
                assert have == pytest.approx(want, rel=1e-10, abs=1e-12), (name, i)


def test_known_values():
    f = random_frame(1, seed=0)
    f.bid_px[0, :2], f.bid_sz[0, :2] = [99.0, 98.0], [1.0, 3.0]
    f.ask_px[0, :2], f.ask_sz[0, :2] = [101.0, 102.0], [3.0, 1.0]
    f.bid_px[0, 2:], f.bid_sz[0, 2:], f.ask_px[0, 2:], f.ask_sz[0, 2:] = np.nan, 0, np.nan, 0
    out = S.compute(f)
    assert out["mid"][0] == 100.0 and out["spread"][0] == 2.0 and out["spread_bps"][0] == 200.0
    assert out["microprice"][0] == (101 * 1 + 99 * 3) / 4  # 99.5: more size on the ask pulls it down
    assert out["imbalance_l1"][0] == -0.5 and out["imbalance_top2"][0] == 0.0
