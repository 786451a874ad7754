"""What counts as a changed input for resuming runs and reusing training sets."""

import os

import research.fingerprint as fp


def test_code_fingerprint_follows_library_code_not_notebooks(tmp_path, monkeypatch):
    for rel, text in [("research/a.py", "x = 1"), ("research/notebooks/01_x.py", "# nb"), ("kernels/k.py", "y = 2"),
                      ("collectors/c.py", "z = 3")]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.setattr(fp, "_PROJECT", tmp_path)

    def code():
        fp.code_fingerprint.cache_clear()
        return fp.code_fingerprint()

    first = code()
    (tmp_path / "research/notebooks/01_x.py").write_text("# edited")  # notebooks have their own source hash
    (tmp_path / "collectors/c.py").write_text("z = 4")  # not read by the research chain
    assert code() == first
    (tmp_path / "kernels/k.py").write_text("y = 3")
    assert code() != first
    fp.code_fingerprint.cache_clear()


def test_data_fingerprint_follows_silver_gold_and_sessions(tmp_path):
    part = tmp_path / "silver/book_features_1s/exchange=sim/symbol=A/date=2026-01-04/hour=00/part-0.parquet"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"1")
    first = fp.data_fingerprint(tmp_path)
    (tmp_path / "bronze").mkdir()
    (tmp_path / "bronze/x.parquet").write_bytes(b"2")  # bronze reaches research only through silver
    assert fp.data_fingerprint(tmp_path) == first
    st = part.stat()
    os.utime(part, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # rewritten, same bytes
    second = fp.data_fingerprint(tmp_path)
    assert second != first
    (tmp_path / "gold").mkdir()
    (tmp_path / "gold/g.parquet").write_bytes(b"3")
    third = fp.data_fingerprint(tmp_path)
    assert third != second
    (tmp_path / "sim/research").mkdir(parents=True)
    (tmp_path / "sim/research/session.json").write_text("{}")
    assert fp.data_fingerprint(tmp_path) != third
