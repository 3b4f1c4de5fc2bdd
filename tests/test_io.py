import json

import pytest

from vladapter.errors import DataError
from vladapter.utils.io import atomic_path, read_jsonl, write_json


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_write_json_roundtrip(tmp_path):
    write_json(tmp_path / "a" / "b.json", {"x": 1})
    assert json.loads((tmp_path / "a" / "b.json").read_text()) == {"x": 1}


def test_read_jsonl_names_bad_line(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"a": 1}\n{broken\n')
    it = read_jsonl(p)
    assert next(it) == {"a": 1}
    with pytest.raises(DataError) as e:
        next(it)
    assert "line 2" in str(e.value) and str(p) in str(e.value)
