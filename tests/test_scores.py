"""The one score type: packing, selecting, joining, and its files (streamed, versioned, older QA files read)."""

import numpy as np
import pytest

from foldnlp import artifacts
from foldnlp.errors import InputError
from foldnlp.scores import LOGPROB, VALUE, Scores, concat_scores


def words(ids, arrays):
    return Scores.from_lists(ids, [np.asarray(a, dtype=np.float32) for a in arrays], "word", ("O", "B", "I"))


def test_pack_select_and_concat_keep_rows_units_and_channels():
    one = words(["x", "y"], [np.zeros((3, 3)), np.ones((2, 3))])
    two = words(["z"], [np.full((4, 3), -2.0)])
    joined = concat_scores([one, two])
    assert list(joined.ids) == ["x", "y", "z"] and joined.lengths.tolist() == [3, 2, 4]
    assert joined.values.dtype == np.float16 and joined.channels == ("O", "B", "I") and joined.unit == "word"
    picked = joined.select(["z", "x"])
    np.testing.assert_array_equal(picked.example(0), np.full((4, 3), -2.0, np.float16))
    assert picked.lengths.tolist() == [4, 3]


def test_concat_refuses_scores_of_another_unit():
    chars = Scores.from_lists(["a"], [np.zeros((2, 2))], "char", ("start", "end"))
    with pytest.raises(ValueError, match="cannot join logprob scores per char"):
        concat_scores([words(["x"], [np.zeros((1, 3))]), chars])


def test_inconsistent_shapes_are_refused():
    with pytest.raises(AssertionError):
        Scores(np.array(["a"]), np.array([0, 3]), np.zeros((2, 2), np.float16), "char", ("start", "end"))


def test_file_round_trip_streamed_in_parts_records_format_unit_and_channels(tmp_path):
    scores = words(["x", "y", "z"], [np.zeros((3, 3)), np.ones((2, 3)), np.full((4, 3), -3.0)])
    with artifacts.ScoresWriter(tmp_path / "s.npz", scores.ids, scores.lengths, "word", ("O", "B", "I")) as writer:
        writer.write(scores.select(["x"]))
        writer.write(scores.select(["y", "z"]))
    back = artifacts.load_scores(tmp_path / "s.npz")
    assert (back.unit, back.channels, list(back.ids)) == ("word", ("O", "B", "I"), ["x", "y", "z"])
    np.testing.assert_array_equal(back.values, scores.values)
    with np.load(tmp_path / "s.npz", allow_pickle=False) as z:
        assert int(z["format"]) == artifacts.SCORES_FORMAT
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_writer_refuses_parts_out_of_order_or_of_another_shape(tmp_path):
    scores = words(["x", "y"], [np.zeros((3, 3)), np.ones((2, 3))])
    with pytest.raises(ValueError, match="declared order"):
        with artifacts.ScoresWriter(tmp_path / "s.npz", scores.ids, scores.lengths, "word", scores.channels) as w:
            w.write(scores.select(["y"]))
    with pytest.raises(ValueError, match="counts differ"):
        with artifacts.ScoresWriter(tmp_path / "s.npz", scores.ids, [3, 3], "word", scores.channels) as w:
            w.write(scores)
    assert not (tmp_path / "s.npz").exists() and not list(tmp_path.glob(".*tmp"))


def test_qa_files_of_the_previous_format_still_load(tmp_path):
    """Format 1 (before the task seam): ids, offsets, start, end."""
    start, end = np.array([-1.0, -2.0, -3.0], np.float16), np.array([-4.0, -5.0, -6.0], np.float16)
    np.savez(tmp_path / "old.npz", ids=np.array(["a", "b"]), offsets=np.array([0, 1, 3]), start=start, end=end)
    back = artifacts.load_scores(tmp_path / "old.npz")
    assert (back.unit, back.channels, back.lengths.tolist()) == ("char", ("start", "end"), [1, 2])
    np.testing.assert_array_equal(back.example(1), [[-2.0, -5.0], [-3.0, -6.0]])


def test_files_of_an_unknown_format_are_refused_with_the_fix(tmp_path):
    np.savez(tmp_path / "new.npz", format=np.array(99), values=np.zeros((1, 1)))
    with pytest.raises(InputError, match="format 99, this foldnlp reads 2: re-run train_fold.py --overwrite"):
        artifacts.load_scores(tmp_path / "new.npz")
    np.savez(tmp_path / "other.npz", something=np.zeros(2))
    with pytest.raises(InputError, match="not a foldnlp scores file"):
        artifacts.load_scores(tmp_path / "other.npz")


def test_value_scores_keep_float32_through_files_and_refuse_to_join_log_probabilities(tmp_path):
    big = Scores.from_lists(["a", "b"], [np.array([[123456.789]]), np.array([[-0.001234]])], "example", ("price",),
                            VALUE)
    assert big.values.dtype == np.float32  # float16 would overflow at 65504 and keep 3 digits
    artifacts.save_scores(tmp_path / "v.npz", big)
    back = artifacts.load_scores(tmp_path / "v.npz")
    assert back.kind == VALUE and back.values.dtype == np.float32
    np.testing.assert_array_equal(back.values, big.values)
    logprob = Scores.from_lists(["c"], [np.zeros((1, 1))], "example", ("price",))
    with pytest.raises(ValueError, match="cannot join logprob scores per example"):
        concat_scores([big, logprob])


def test_files_written_before_kinds_existed_hold_log_probabilities(tmp_path):
    scores = words(["x"], [np.zeros((2, 3))])
    arrays = {"format": np.array(2), "unit": np.array("word"), "channels": np.array(scores.channels),
              "ids": scores.ids.astype(str), "offsets": scores.offsets, "values": scores.values}
    np.savez(tmp_path / "old.npz", **arrays)
    assert artifacts.load_scores(tmp_path / "old.npz").kind == LOGPROB
