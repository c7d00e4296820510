"""schedulers.files: atomic writes keep the old file on failure and leave no temporary file."""

import json
import os

import numpy as np
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


def test_read_npz_returns_the_arrays_and_none_for_a_missing_damaged_or_incomplete_file(tmp_path):
    import numpy as np

    from schedulers.files import read_npz, write_npz_atomic

    rng = np.random.default_rng(3)
    arrays = {"X": rng.standard_normal((5, 3)), "y": rng.integers(0, 9, 5)}
    path = tmp_path / "data.npz"
    write_npz_atomic(path, **arrays)
    assert sorted(os.listdir(tmp_path)) == ["data.npz"]  # no temporary file left
    found = read_npz(path, ("X", "y"))
    assert set(found) == {"X", "y"} and all(np.array_equal(found[k], arrays[k]) for k in arrays)
    told = []
    assert read_npz(tmp_path / "absent.npz", ("X",), told.append) is None and told == []
    assert read_npz(path, ("X", "z"), told.append) is None and "no z" in told[-1]
    optional = read_npz(path, ("X",), optional=("y", "z"))  # an optional key it lacks is left out
    assert set(optional) == {"X", "y"} and np.array_equal(optional["y"], arrays["y"])
    path.write_bytes(path.read_bytes()[:100])  # cut short
    assert read_npz(path, ("X", "y"), told.append) is None
    assert str(path) in told[-1] and "rebuilding" in told[-1]


def test_a_folder_of_another_record_is_refused_naming_only_the_values_that_differ(tmp_path):
    """A rerun refused after one label folder changed names that folder's hash, not every data set
    twice in full; the folder's record is kept, and its own record is accepted again."""
    from schedulers.files import SHOWN_DIFFERENCES, claim_folder

    record = {"config": {"budgets": [0.1, 0.2]},
              "datasets": [{"name": "a", "clips": ["c0", "c1"], "labels": "sha-a"},
                           {"name": "b", "clips": ["c2"], "labels": "sha-b"}]}
    claim_folder(tmp_path, "run.json", record, "another run")
    edited = {**record, "datasets": [record["datasets"][0], {**record["datasets"][1], "labels": "sha-new"}]}
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "cell.json").write_text("{}")  # the run did some work: the folder is its
    with pytest.raises(ValueError) as error:
        claim_folder(tmp_path, "run.json", edited, "another run")
    message = str(error.value)
    assert "datasets[1].labels: 'sha-b' there, 'sha-new' now" in message
    assert "c0" not in message and "budgets" not in message
    wider = {**record, "config": {"budgets": list(range(20))}}
    with pytest.raises(ValueError, match=f"and {20 - SHOWN_DIFFERENCES} more"):
        claim_folder(tmp_path, "run.json", wider, "another run")
    assert json.loads((tmp_path / "run.json").read_text()) == record
    claim_folder(tmp_path, "run.json", record, "another run")
    # Items in order (b[1] before b[10]); a value only one side has is "absent"; a list that became
    # a number, and an empty dictionary, are one difference each.
    for changed, expected in (({**record, "config": {"budgets": [0.1] + list(range(11))}},
                               "config.budgets[1]: 0.2 there, 0 now; config.budgets[2]: absent there, 1 now"),
                              ({**record, "config": {"budgets": 0.1}}, "config.budgets: [0.1, 0.2] there, 0.1 now"),
                              ({**record, "config": {}}, "config.budgets: [0.1, 0.2] there, absent now"),
                              ({**record, "extra": {}}, "extra: absent there, {} now")):
        with pytest.raises(ValueError) as error:
            claim_folder(tmp_path, "run.json", changed, "another run")
        assert f"({expected}" in str(error.value), str(error.value)


def test_a_folder_holding_only_another_record_is_claimed_again(tmp_path):
    """A run that stopped on bad input before any work left its record alone (empty subfolders
    aside): the corrected rerun takes the folder; once any other file is there, it is refused."""
    from schedulers.files import claim_folder

    claim_folder(tmp_path, "run.json", {"data": "sha-old"}, "another data set")
    (tmp_path / "checkpoints").mkdir()
    claim_folder(tmp_path, "run.json", {"data": "sha-new"}, "another data set", write=False)
    assert json.loads((tmp_path / "run.json").read_text()) == {"data": "sha-old"}  # a check writes nothing
    claim_folder(tmp_path, "run.json", {"data": "sha-new"}, "another data set")
    assert json.loads((tmp_path / "run.json").read_text()) == {"data": "sha-new"}
    (tmp_path / "checkpoints" / "ckpt-1.index").write_text("")
    with pytest.raises(ValueError, match="holds another data set"):
        claim_folder(tmp_path, "run.json", {"data": "sha-newer"}, "another data set")


def test_check_file_names_a_folder_and_a_missing_file(tmp_path):
    from schedulers.files import check_file

    good = tmp_path / "p.json"
    good.write_bytes(np.random.default_rng(0).bytes(32))
    assert check_file(good, "predictor file") == str(good)
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(IsADirectoryError, match=r"predictor file '.*dir.json' is a folder, not a file$"):
        check_file(tmp_path / "dir.json", "predictor file")
    with pytest.raises(IsADirectoryError, match=r"is a folder, not a table$"):
        check_file(tmp_path / "dir.json", "predictor file", "a table")
    with pytest.raises(FileNotFoundError, match=r"predictor file '.*gone.json' does not exist"):
        check_file(tmp_path / "gone.json", "predictor file")


def test_check_keras_file_names_a_folder_a_missing_file_its_metadata_and_a_file_that_is_no_zip(tmp_path):
    import zipfile

    from schedulers.files import check_keras_file

    good = tmp_path / "m.keras"
    with zipfile.ZipFile(good, "w") as archive:
        archive.writestr("config.json", os.urandom(64).hex())
    assert check_keras_file(good, "model file") == str(good)
    (tmp_path / "dir.keras").mkdir()
    with pytest.raises(IsADirectoryError, match=r"model file '.*dir.keras' is a folder, not a .keras file"):
        check_keras_file(tmp_path / "dir.keras", "model file")
    with pytest.raises(FileNotFoundError, match=r"model file '.*gone.keras' does not exist"):
        check_keras_file(tmp_path / "gone.keras", "model file")
    with pytest.raises(FileNotFoundError, match=r"m.keras' has no metadata file beside it \('.*m.keras.json'\)"):
        check_keras_file(good, "decision model file", metadata=str(good) + ".json")
    (tmp_path / "text.keras").write_bytes(os.urandom(200))
    with pytest.raises(ValueError, match=r"text.keras' is not a .keras file \(a .keras file is a zip archive"):
        check_keras_file(tmp_path / "text.keras", "model file")
