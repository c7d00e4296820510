"""schedulers.files: atomic writes keep the old file on failure and leave no temporary file."""

import json
import os

import pytest

from schedulers.files import atomic_path, write_bytes_atomic, write_json_atomic


def test_a_failed_write_keeps_the_old_file_and_cleans_up(tmp_path):
    target = tmp_path / "sub" / "result.json"
    write_json_atomic(target, {"a": 1})  # creates the folder
    assert json.loads(target.read_text()) == {"a": 1}
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target, ".json") as tmp:
            with open(tmp, "w") as f:
                f.write('{"a": 2')  # half written
            raise RuntimeError("disk full")
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(os.listdir(target.parent)) == ["result.json"]
    payload = os.urandom(4096)
    write_bytes_atomic(target, payload)
    assert target.read_bytes() == payload and oct(target.stat().st_mode & 0o777) == "0o644"
