"""What counts as a changed input for resuming runs and reusing training sets."""

import os

import research.fingerprint as fp


def test_code_fingerprint_follows_library_code_not_notebooks(tmp_path, monkeypatch):
    for rel, text in [("research/a.py", "x = 1"), ("research/notebooks/01_x.py", "# nb"), ("kernels/k.py", "y = 2"),
                      ("collectors/c.py", "z = 3"), ("feature_repo/feature_store.yaml", "project: a"),
                      ("bench/b.py", "w = 1")]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.setattr(fp, "_PROJECT", tmp_path)
    first = fp.code_fingerprint()
    (tmp_path / "research/notebooks/01_x.py").write_text("# edited")  # notebooks have their own source hash
    (tmp_path / "bench/b.py").write_text("w = 2")  # not run by the research chain
    assert fp.code_fingerprint() == first
    seen = {first}
    for rel, text in [("kernels/k.py", "y = 3"), ("collectors/c.py", "z = 4"),
                      ("feature_repo/feature_store.yaml", "project: b")]:
        (tmp_path / rel).write_text(text)
        now = fp.code_fingerprint()
        assert now not in seen, rel
        seen.add(now)


def touch(path):
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # rewritten, same bytes


def test_data_fingerprint_follows_one_exchanges_layers_and_the_sessions(tmp_path):
    def part(layer, exchange):
        p = tmp_path / layer / "table" / f"exchange={exchange}" / "symbol=A" / "date=2026-01-04" / "p.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"1")
        return p

    parts = {layer: part(layer, "sim") for layer in fp.DATA_LAYERS}
    other = part("silver", "coinbase")
    first = fp.data_fingerprint(tmp_path, "sim")
    touch(other)  # another exchange's features: not this session's input
    assert fp.data_fingerprint(tmp_path, "sim") == first
    assert fp.data_fingerprint(tmp_path) != first  # ... but part of every exchange's
    seen = {first}
    for layer in fp.DATA_LAYERS:
        touch(parts[layer])
        now = fp.data_fingerprint(tmp_path, "sim")
        assert now not in seen, layer
        seen.add(now)
    (tmp_path / "sim/research").mkdir(parents=True)
    (tmp_path / "sim/research/session.json").write_text("{}")
    assert fp.data_fingerprint(tmp_path, "sim") not in seen


def test_files_named_by_parameters_count_by_content(tmp_path):
    cfg = tmp_path / "bt.yaml"
    cfg.write_text("fee_bps: 1")
    first = fp.files_fingerprint([cfg, tmp_path / "missing.yaml"])
    touch(cfg)
    assert fp.files_fingerprint([cfg]) == first  # same content
    cfg.write_text("fee_bps: 2")
    assert fp.files_fingerprint([cfg]) != first
