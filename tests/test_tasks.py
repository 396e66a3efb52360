"""The built-in tasks: seeded generation, correct targets, exact scoring, encode/decode, user errors."""

from __future__ import annotations

import types
from collections import deque

import pytest
import torch

from th1nker.errors import DataError
from th1nker.tasks import IGNORE, make_task, task_names
from th1nker.tasks.text_qa import DEFAULT_PATH, CharVocab, parse_pairs

try:
    from th1nker.recipe import TaskConfig
except Exception:  # the recipe module may be mid-edit; the tasks only read attributes
    TaskConfig = None

# kind -> (difficulty used in tests, eval difficulties)
KINDS = {"prefix_parity": (12, [8]), "addition": (6, [4]), "maze": (5, [4]), "text_qa": (0, [0, 1])}


def config(kind, path=None, eval=None, stand_in=False):
    fields = dict(kind=kind, train=(KINDS[kind][0],) * 2, eval=eval or KINDS[kind][1], eval_examples=16, path=path)
    if TaskConfig is None or stand_in:
        return types.SimpleNamespace(**fields)
    return TaskConfig(**fields)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def same(a, b):
    return (a.target.shape == b.target.shape and torch.equal(a.target, b.target)
            and torch.equal(a.inputs["text"], b.inputs["text"]))


def test_all_registered():
    assert {"prefix_parity", "addition", "maze", "text_qa"} <= set(task_names())


@pytest.mark.parametrize("stand_in", [False, True])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_seeded_shapes_and_scoring(kind, stand_in):
    task = make_task(config(kind, stand_in=stand_in), seed=3)
    d = KINDS[kind][0]
    a, b, c = task.batch(32, d, gen(1)), task.batch(32, d, gen(1)), task.batch(32, d, gen(2))
    assert same(a, b) and not same(a, c)
    x, y = a.inputs["text"], a.target
    assert x.dtype == y.dtype == torch.long and x.shape == y.shape and x.shape[0] == len(a) == 32
    assert x.min() >= 0 and x.max() < task.spec.vocab
    scored = y[y != IGNORE]
    assert scored.min() >= 0 and scored.max() < task.spec.classes
    assert task.score(y, a).all()
    wrong = y.clone()
    for i in range(len(a)):  # flip one scored position per example
        j = int((y[i] != IGNORE).nonzero()[i % int((y[i] != IGNORE).sum())])
        wrong[i, j] = (y[i, j] + 1) % task.spec.classes
    assert not task.score(wrong, a).any()
    e1, e2 = task.eval_batch(task.config.eval[0]), task.eval_batch(task.config.eval[0])
    assert same(e1, e2) and len(e1) == 16
    assert same(task.eval_batch(task.config.eval[0]), make_task(config(kind), seed=3).eval_batch(task.config.eval[0]))
    tb = task.train_batch(8, gen(0))
    assert same(tb, task.train_batch(8, gen(0)))


def test_prefix_parity_targets():
    task = make_task(config("prefix_parity"))
    b = task.batch(64, 12, gen(0))
    for x, y in zip(b.inputs["text"].tolist(), b.target.tolist()):
        acc = 0
        for xi, yi in zip(x, y):
            acc ^= xi
            assert yi == acc
    assert task.decode(task.encode("0110").target) == "0100"
    with pytest.raises(DataError, match="0 and 1"):
        task.encode("012")


def test_addition_targets_and_text():
    task = make_task(config("addition"))
    b = task.batch(128, 6, gen(0))
    assert b.inputs["text"].shape == (128, 7) and b.difficulty == 6
    for x, y in zip(b.inputs["text"].tolist(), b.target.tolist()):
        assert x[-1] == 0
        a = sum((v // 10) * 10**i for i, v in enumerate(x))
        c = sum((v % 10) * 10**i for i, v in enumerate(x))
        assert task.decode(torch.tensor(y)) == str(a + c)
        assert sum(v * 10**i for i, v in enumerate(y)) == a + c
    e = task.encode(" 123 + 456 ")
    assert e.inputs["text"].tolist() == [[36, 25, 14, 0]] and task.decode(e.target) == "579"
    e = task.encode("999+1")
    assert e.inputs["text"].tolist() == [[91, 90, 90, 0]] and task.decode(e.target) == "1000"
    assert task.decode(task.encode("0+0").target) == "0"
    for bad in ["12-3", "1+", "a+b", "1.5+2", "-1+2", "1+2+3", ""]:
        with pytest.raises(DataError, match=r"addition takes .* e\.g\. 123\+456"):
            task.encode(bad)
    with pytest.raises(DataError, match="digits"):
        task.batch(2, 0, gen(0))


def maze_text(tokens, h, w):
    chars = "#.SG"
    return "\n".join("".join(chars[t] for t in tokens[r * w:(r + 1) * w]) for r in range(h))


def bfs_path(tokens, h, w):
    """Independent check: the squares of the start->goal path via BFS distances (walls = 0)."""
    s, g = tokens.index(2), tokens.index(3)

    def dist(src):
        d = {src: 0}
        q = deque([src])
        while q:
            i = q.popleft()
            r, c = divmod(i, w)
            for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                j = rr * w + cc
                if 0 <= rr < h and 0 <= cc < w and tokens[j] != 0 and j not in d:
                    d[j] = d[i] + 1
                    q.append(j)
        return d

    ds, dg = dist(s), dist(g)
    return {i for i in ds if i in dg and ds[i] + dg[i] == ds[g]}


def test_maze_targets():
    task = make_task(config("maze"))
    n = 5
    b = task.batch(32, n, gen(0))
    h = w = 2 * n + 1
    assert b.grid == (h, w) and b.difficulty == n and b.inputs["text"].shape == (32, h * w)
    for x, y in zip(b.inputs["text"].tolist(), b.target.tolist()):
        assert x.count(2) == 1 and x.count(3) == 1
        # perfect maze: open squares = cells + (cells - 1) passages, borders are wall
        assert sum(t != 0 for t in x) == 2 * n * n - 1
        grid = torch.tensor(x).view(h, w)
        assert (grid[0] == 0).all() and (grid[-1] == 0).all() and (grid[:, 0] == 0).all() and (grid[:, -1] == 0).all()
        on = {i for i, v in enumerate(y) if v == 1}
        assert all(x[i] != 0 for i in on)  # only through open squares
        assert on == bfs_path(x, h, w)  # the unique (shortest) path, S and G included
        # connected chain from S to G: every path square except S, G has exactly two path neighbours
        for i in on:
            r, c = divmod(i, w)
            k = sum(j in on for j in (i - w, i + w, i - 1, i + 1) if 0 <= j < h * w and abs(j % w - c) <= 1)
            assert k == (1 if x[i] in (2, 3) else 2)


def test_maze_speed():
    import time

    task = make_task(config("maze"))
    task.batch(64, 8, gen(0))
    t = time.perf_counter()
    task.batch(64, 8, gen(1))
    assert time.perf_counter() - t < 0.2


def test_maze_text_round_trip():
    task = make_task(config("maze"))
    b = task.batch(4, 4, gen(5))
    h, w = b.grid
    for x, y in zip(b.inputs["text"].tolist(), b.target.tolist()):
        text = maze_text(x, h, w)
        e = task.encode(text)
        assert e.inputs["text"].tolist() == [x] and e.target.tolist() == [y] and e.grid == (h, w)
        assert e.difficulty == 4
        drawn = task.decode(e.target)
        assert drawn.replace("*", ".") == text and drawn.count("*") == sum(y) - 2
        assert task.decode(torch.tensor(y), b_one(b, x)) == drawn
    e = task.encode("#####/#S.G#/#####")
    assert e.grid == (3, 5) and task.decode(e.target) == "#####\n#S*G#\n#####"


def b_one(b, x):
    from th1nker.tasks import Batch

    return Batch({"text": torch.tensor([x])}, torch.tensor([x]), grid=b.grid)


@pytest.mark.parametrize("text,match", [
    ("", "empty"),
    ("#####/#SxG#/#####", "characters 'x'"),
    ("#####/#S.G#/####", "rectangular"),
    ("#####/#S.S#/#####", "exactly one start"),
    ("#####/#S#G#/#####", "no open path"),
])
def test_maze_errors(text, match):
    with pytest.raises(DataError, match=match):
        make_task(config("maze")).encode(text)


def test_maze_bad_difficulty():
    with pytest.raises(DataError, match=">= 2"):
        make_task(config("maze")).batch(2, 1, gen(0))


def test_text_qa_targets_and_splits():
    task = make_task(config("text_qa"), seed=0)
    pairs = dict(parse_pairs(DEFAULT_PATH.read_text()))
    assert len(task.pairs) >= 200 and DEFAULT_PATH.stat().st_size < 50_000
    train, held = set(task.splits[0]), set(task.splits[1])
    assert not train & held and len(train) + len(held) == len(task.pairs) and len(held) == len(task.pairs) // 10
    assert task.splits != make_task(config("text_qa"), seed=1).splits
    b = task.batch(64, 1, gen(0))
    v = task.vocab
    heldq = {task.pairs[i][0] for i in held}
    for x, y, m in zip(b.inputs["text"].tolist(), b.target.tolist(), b.masks["text"].tolist()):
        q = v.decode(x)
        assert q in heldq and q.endswith("?") and sum(m) == len(q) and all(m[:len(q)])
        a = pairs[q]
        n = len(a)
        assert y[:n + 1] == v.encode(a) + [CharVocab.END] and all(t == IGNORE for t in y[n + 1:])
        assert task.decode(torch.tensor(y[:n + 1])) == a
    assert b.masks["text"].dtype == torch.bool and b.masks["text"].shape == b.target.shape
    assert b.inputs["text"].shape[1] == max(max(len(v.decode(x)) for x in b.inputs["text"].tolist()),
                                             max(int((y != IGNORE).sum()) for y in b.target))
    e = task.eval_batch(1, n=len(held))  # n >= split size covers the whole split
    assert {v.decode(x) for x in e.inputs["text"].tolist()} == heldq
    assert task.sample_difficulty(gen(0)) == 0


def test_text_qa_encode_decode():
    task = make_task(config("text_qa"))
    v = task.vocab
    assert v.decode(v.encode("what is 3 plus 4?")) == "what is 3 plus 4?"
    assert v.encode("~") == [CharVocab.UNK] and v.decode([CharVocab.UNK, CharVocab.PAD, 5]) == "\ufffd" + v.chars[2]
    e = task.encode("what is 3 plus 4")
    assert v.decode(e.inputs["text"][0].tolist()) == "what is 3 plus 4?"
    assert (e.target == IGNORE).all() and e.target.shape[1] >= task.max_answer + 1
    assert int(e.masks["text"].sum()) == len("what is 3 plus 4?")
    e = task.encode("what is 3 plus 4? 7.")
    assert task.decode(e.target[0, :2]) == "7" and (e.target[0, 2:] == IGNORE).all()
    with pytest.raises(DataError, match="takes a question"):
        task.encode("  ")


def test_text_qa_file_parsing(tmp_path, monkeypatch):
    f = tmp_path / "qa.txt"
    f.write_text("what is a? b. who is c? d e.\nwhy 3.5? because 2.5 plus 1.\n\nhow? so.\n")
    monkeypatch.chdir(tmp_path)
    task = make_task(config("text_qa", path="qa.txt"))  # relative to the current directory
    assert task.pairs == [("what is a?", "b"), ("who is c?", "d e"), ("why 3.5?", "because 2.5 plus 1"),
                          ("how?", "so")]
    assert task.path == f.resolve() and task.spec.vocab == len(task.vocab) == task.spec.classes


@pytest.mark.parametrize("content,match", [
    (None, "not found"),
    ("", "empty"),
    ("  \n\n", "empty"),
    ("no questions here. none at all\n", "no question/answer pair"),
])
def test_text_qa_file_errors(tmp_path, content, match):
    f = tmp_path / "qa.txt"
    if content is not None:
        f.write_text(content)
    with pytest.raises(DataError, match=match) as err:
        make_task(config("text_qa", path=str(f)))
    assert str(f) in str(err.value) and "question? answer." in str(err.value)


def test_text_qa_bad_eval_and_tiny_file(tmp_path):
    with pytest.raises(DataError, match=r"task.eval .*0 = train, 1 = held-out"):
        make_task(config("text_qa", eval=[16, 48]))
    f = tmp_path / "one.txt"
    f.write_text("what? that.")
    task = make_task(config("text_qa", path=str(f)))
    assert len(task.batch(3, 0, gen(0))) == 3
    with pytest.raises(DataError, match="too few"):
        task.batch(3, 1, gen(0))
