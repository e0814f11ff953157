"""Text to blocks: packing, the deterministic split, the batch order, streaming, and every bad-data error."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from organfed.shared import data as data_module
from organfed.shared.blocks import BatchOrder, prepare_blocks, split_blocks
from organfed.shared.errors import ConfigError, DataError
from organfed.shared.tiny import byte_tokenizer

EOS = 256


@pytest.fixture(scope="module")
def tokenizer():
    return byte_tokenizer()


def test_blocks_are_the_token_stream_cut_in_order(tokenizer, tmp_path):
    # Prepare
    (tmp_path / "a.txt").write_text("abcdefghij" * 10, encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "xyz"}) + "\n\n" + json.dumps({"text": "uvw"}) + "\n", encoding="utf-8")
    ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    stream = ids("abcdefghij" * 10) + [EOS] + ids("xyz") + [EOS] + ids("uvw") + [EOS]
    # Execute
    data = prepare_blocks(tokenizer, [tmp_path], block_size=16, val_fraction=0.0)
    # Assert
    assert data.stats.files == 2 and data.stats.documents == 3 and data.stats.tokens == len(stream)
    assert data.stats.blocks == len(stream) // 16 and data.stats.dropped_tokens == len(stream) % 16
    assert data.blocks.reshape(-1).tolist() == stream[: data.stats.blocks * 16]
    assert data.stats.digest == "sha256:" + hashlib.sha256(np.asarray(stream, dtype="<u4").tobytes()).hexdigest()
    assert data.batch([1, 0]).tolist() == [stream[16:32], stream[:16]]


def test_streaming_in_small_pieces_gives_the_same_tokens(tokenizer, train_corpus, monkeypatch):
    whole = prepare_blocks(tokenizer, [train_corpus], block_size=32)
    monkeypatch.setattr(data_module, "PIECE_BYTES", 97)
    pieces = prepare_blocks(tokenizer, [train_corpus], block_size=32)
    assert pieces.stats == whole.stats
    assert np.array_equal(pieces.blocks, whole.blocks)
    assert whole.stats.documents == 2  # one per plain file, however many pieces


def test_digest_tracks_the_data(tokenizer, tmp_path):
    (tmp_path / "a.txt").write_text("some text " * 20, encoding="utf-8")
    first = prepare_blocks(tokenizer, [tmp_path / "a.txt"], block_size=8).stats.digest
    assert prepare_blocks(tokenizer, [tmp_path / "a.txt"], block_size=8).stats.digest == first
    (tmp_path / "a.txt").write_text("some text " * 19 + "same text ", encoding="utf-8")
    assert prepare_blocks(tokenizer, [tmp_path / "a.txt"], block_size=8).stats.digest != first


def test_split_is_deterministic_disjoint_and_complete():
    train, val = split_blocks(1000, 0.1, seed=7)
    again_train, again_val = split_blocks(1000, 0.1, seed=7)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(1000))
    assert 60 <= len(val) <= 140
    other_train, _ = split_blocks(1000, 0.1, seed=8)
    assert not np.array_equal(train, other_train)


def test_split_of_a_block_does_not_depend_on_the_corpus_length():
    _, short_val = split_blocks(500, 0.2, seed=3)
    _, long_val = split_blocks(5000, 0.2, seed=3)
    assert np.array_equal(short_val, long_val[long_val < 500])


def test_split_keeps_both_sides_non_empty():
    train, val = split_blocks(2, 0.01, seed=0)
    assert len(train) == 1 and len(val) == 1
    train, val = split_blocks(3, 0.0, seed=0)
    assert len(train) == 3 and len(val) == 0


def test_batch_order_is_a_pure_function_and_covers_each_epoch():
    train = np.arange(0, 40, 2)
    order = BatchOrder(train, batch_size=4, seed=1)
    epoch = np.concatenate([order(m) for m in range(5)])
    assert sorted(epoch.tolist()) == train.tolist()
    assert np.array_equal(BatchOrder(train, 4, 1)(7), order(7))
    assert not np.array_equal(np.concatenate([order(m) for m in range(5, 10)]), epoch)  # next epoch reshuffled
    assert not np.array_equal(BatchOrder(train, 4, 2)(0), order(0))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", b"", "empty"),
        ("blank.txt", b"  \n\n \t\n", "empty"),
        ("binary.txt", b"text\x00\x01\x02 more", "binary"),
        ("latin1.txt", "caf\u00e9 ".encode("latin-1") * 10, "not UTF-8"),
        ("records.jsonl", b'{"body": "no text field"}\n', "'text' field"),
        ("broken.jsonl", b'{"text": "unterminated\n', "not valid JSON"),
        ("tiny.txt", b"too short", "too small for one block"),
    ],
)
def test_bad_data_is_refused_with_a_clear_error(tokenizer, tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=message):
        prepare_blocks(tokenizer, [tmp_path / name], block_size=64)


def test_missing_paths_and_empty_directories_are_refused(tokenizer, tmp_path):
    with pytest.raises(DataError, match="no such file"):
        prepare_blocks(tokenizer, [tmp_path / "nope.txt"], block_size=8)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "image.png").write_bytes(b"\x89PNG")
    with pytest.raises(DataError, match="no text files"):
        prepare_blocks(tokenizer, [tmp_path / "dir"], block_size=8)


def test_one_block_cannot_be_split(tokenizer, tmp_path):
    (tmp_path / "a.txt").write_text("x" * 70, encoding="utf-8")
    with pytest.raises(DataError, match="at least 2"):
        prepare_blocks(tokenizer, [tmp_path / "a.txt"], block_size=64, val_fraction=0.1)
    assert prepare_blocks(tokenizer, [tmp_path / "a.txt"], block_size=64, val_fraction=0.0).stats.blocks == 1


def test_bad_split_settings_are_config_errors(tokenizer, train_corpus):
    with pytest.raises(ConfigError, match="val_fraction"):
        prepare_blocks(tokenizer, [train_corpus], block_size=32, val_fraction=1.0)
    with pytest.raises(ConfigError, match="block_size"):
        prepare_blocks(tokenizer, [train_corpus], block_size=1)


def test_the_token_file_leaves_nothing_behind(tokenizer, train_corpus, tmp_path):
    data = prepare_blocks(tokenizer, [train_corpus], block_size=32, cache_dir=tmp_path / "new" / "cache")
    assert data.stats.blocks > 0 and list((tmp_path / "new" / "cache").iterdir()) == []


def test_evaluation_and_training_put_one_end_of_text_per_document(tmp_path, monkeypatch):
    """Plain files are read in pieces; only a document's last piece gets the end-of-text token."""
    from organfed.shared import data as data_module
    from organfed.shared.data import load_token_ids
    from organfed.shared.tiny import byte_tokenizer

    monkeypatch.setattr(data_module, "PIECE_BYTES", 100)
    path = tmp_path / "doc.txt"
    path.write_text("a line of text\n" * 40)
    tokenizer = byte_tokenizer()
    ids = load_token_ids(tokenizer, [path])
    assert int((ids == tokenizer.eos_token_id).sum()) == 1 and int(ids[-1]) == tokenizer.eos_token_id
