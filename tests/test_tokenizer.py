import pytest
from typer.testing import CliRunner

from th1nker.cli_tokenizer import app
from th1nker.errors import DataError
from th1nker.omni.corpus import CORPUS_PATH, make_corpus
from th1nker.omni.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return Tokenizer.train(CORPUS_PATH, 400, tmp_path_factory.mktemp("tok") / "tok.model")


def test_shipped_corpus_is_small_and_reproducible():
    text = CORPUS_PATH.read_text()
    assert 10_000 < len(text.encode()) < 200_000
    assert text == make_corpus(1500, seed=0)
    assert make_corpus(20, seed=1) != make_corpus(20, seed=2)


def test_special_ids_are_distinct(tokenizer):
    ids = (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id)
    assert ids == (0, 1, 2, 3)
    assert 100 < tokenizer.vocab_size <= 400


def test_round_trip_on_a_corpus_sentence(tokenizer):
    line = CORPUS_PATH.read_text().splitlines()[3]
    ids = tokenizer.encode(line, bos=True, eos=True)
    assert ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.eos_id
    assert tokenizer.unk_id not in ids
    assert tokenizer.decode(ids) == line
    assert len(ids) < len(line) / 2  # BPE merges into multi-character pieces


def test_bytes_round_trip(tokenizer):
    clone = Tokenizer.from_bytes(tokenizer.to_bytes())
    assert clone.encode("Ada finds a red book.") == tokenizer.encode("Ada finds a red book.")


def test_atomic_write_leaves_only_the_model(tmp_path):
    Tokenizer.train(CORPUS_PATH, 300, tmp_path / "out" / "small.model")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["small.model"]


def test_missing_or_corrupt_model_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="missing.model"):
        Tokenizer(tmp_path / "missing.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a sentencepiece model")
    with pytest.raises(DataError, match="bad.model"):
        Tokenizer(bad)
    with pytest.raises(DataError):
        Tokenizer.from_bytes(b"")


def test_cli_train(tmp_path):
    out = tmp_path / "cli.model"
    args = ["train", str(CORPUS_PATH), "--vocab", "300", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "300" in result.output and out.is_file()
    result = CliRunner().invoke(app, ["encode", "the garden", "--model", str(out)])
    assert result.exit_code == 0 and "[the]" in result.output


def test_cli_missing_corpus_exits_2(tmp_path):
    args = ["train", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "t.model")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "nope.txt" in result.output
