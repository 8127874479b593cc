import pytest

from xrfcore.fileio import atomic_open, atomic_path


def test_atomic_open_replaces_only_on_success(tmp_path):
    target = tmp_path / "a.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("half of the new")
            raise RuntimeError("disk full")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]   # no temp file left
    with atomic_open(target) as f:
        f.write("new\n")
    assert target.read_text() == "new\n"


def test_atomic_path_for_libraries_writing_by_name(tmp_path):
    target = tmp_path / "sub" / "w.bin"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and not target.exists()
        tmp.write_bytes(b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
