"""The thinking language model: the stdlib code corpus, the exact-whitespace tokenizer, the prelude run
once per window, and generation whose KV cache gives the tokens of the uncached path."""

import json

import pytest
import torch
from typer.testing import CliRunner

from th1nker.cli import app
from th1nker.errors import DataError
from th1nker.generate import decode_text, encode_text, generate, next_logits
from th1nker.model import Th1nker
from th1nker.recipe import load_recipe
from th1nker.tasks import make_task
from th1nker.tasks.code_corpus import build_code_corpus, stdlib_files
from th1nker.thought import DecodeCache

from conftest import RECIPES

runner = CliRunner()
SMALL = 120_000  # bytes of stdlib code: enough for a tokenizer and a few windows


@pytest.fixture
def corpus(tmp_path):
    build_code_corpus(tmp_path / "code", max_bytes=SMALL)
    return tmp_path / "code"


def small_lm(corpus, *extra):
    """recipes/thinking_lm.yaml on the small corpus, with a small width and a tokenizer trained on it."""
    recipe = load_recipe(RECIPES / "thinking_lm.yaml", [f"task.path={corpus}", "task.tokenizer=null", "model.dim=32",
                                                        "task.eval_examples=4", *extra])
    task = make_task(recipe.task, recipe.seed)
    torch.manual_seed(0)
    return recipe, task, Th1nker(recipe, task.spec).eval()


def test_corpus_is_split_by_file_and_reproducible(corpus, tmp_path):
    manifest = json.loads((corpus / "manifest.json").read_text())
    train, held = (manifest["splits"][s]["files"] for s in ("train.txt", "held_out.txt"))
    assert train and held and not set(train) & set(held)
    assert all("test/" not in f and "site-packages" not in f for f in train + held)
    text = (corpus / "held_out.txt").read_text()
    assert text.startswith(f"# file: {held[0]}\n") and all(f"# file: {f}\n" in text for f in held)
    again = build_code_corpus(tmp_path / "again", max_bytes=SMALL)
    assert again["splits"] == manifest["splits"]  # same files, same bytes, same sha256
    assert manifest["splits"]["train.txt"]["bytes"] + manifest["splits"]["held_out.txt"]["bytes"] <= SMALL + 2 * len(train + held) * 80
    assert len(stdlib_files()) > 500


def test_text_lm_on_a_corpus_folder_keeps_code_exactly(corpus):
    recipe, task, _ = small_lm(corpus)
    lines = (corpus / "held_out.txt").read_text().split("\n")
    assert decode_text(task.tokenizer, task.held_ids.tolist()) == "\n".join(lines) + "\n"
    held_bytes = sum(len(line.encode()) + 1 for line in lines)
    assert task.bytes_per_token == pytest.approx(held_bytes / len(task.held_ids))
    indented = "    def f(x):\n        return  x  # two  spaces"
    assert decode_text(task.tokenizer, encode_text(task.tokenizer, indented)) == indented


def test_prelude_runs_once_per_gradient_window_and_the_coda_only_where_graded(corpus):
    """In training, the window without gradients runs prelude and core only: the coda's state feeds only the
    head, whose outputs nothing reads there."""
    recipe, task, model = small_lm(corpus)
    calls = {"prelude": 0, "core": 0, "coda": 0}
    for name in calls:
        model.blocks[name].layers[0].register_forward_hook(lambda *a, n=name: calls.__setitem__(n, calls[n] + 1))
    from th1nker.loop import think
    from th1nker.plans import Window

    batch = task.eval_batch(64, 2)
    model.train()
    events = list(think(model, batch, plan=[Window(3, False), Window(2, True)]))
    assert calls == {"prelude": 2, "core": 5, "coda": 2}
    assert [type(e).__name__ for e in events].count("WindowEnd") == 1
    assert [c.block for c in model.latent_calls(model.calls)] == ["prelude", "core"]
    with torch.no_grad():  # without a plan (evaluation) every step has its outputs
        events = list(think(model, batch, steps=3))
    assert calls["coda"] == 5 and all(e.thought.outputs for e in events if type(e).__name__ == "StepEnd")


def test_cached_generation_gives_the_uncached_tokens(corpus):
    recipe, task, model = small_lm(corpus)
    prompt = encode_text(task.tokenizer, "import os\ndef main(")
    cached = [t for t, _ in generate(model, prompt, 12, steps=3)]
    uncached = [t for t, _ in generate(model, prompt, 12, steps=3, use_cache=False)]
    assert cached == uncached
    # and the logits themselves: the prompt plus 5 tokens, token by token vs all at once
    ids = torch.tensor([prompt + cached[:5]])
    decoding = DecodeCache()
    next_logits(model, ids[:, :len(prompt)], 3, decoding)
    for i in range(len(prompt), ids.shape[1]):
        step, _ = next_logits(model, ids[:, i:i + 1], 3, decoding)
    full, _ = next_logits(model, ids, 3)
    torch.testing.assert_close(step, full, atol=1e-4, rtol=1e-4)
    sampled = [t for t, _ in generate(model, prompt, 6, steps=2, temperature=1.0, top_k=20, top_p=0.9, seed=3)]
    assert sampled == [t for t, _ in generate(model, prompt, 6, steps=2, temperature=1.0, top_k=20, top_p=0.9,
                                               seed=3, use_cache=False)]


def test_kl_exit_stops_early_and_keeps_every_cache_aligned(corpus):
    recipe, task, model = small_lm(corpus)
    prompt = encode_text(task.tokenizer, "x = 1\n")
    out = list(generate(model, prompt, 6, steps=6, exit_kl=1e9))  # any change counts as settled
    assert [used for _, used in out] == [6] + [2] * 5  # the prompt runs every iteration, later tokens exit
    out = list(generate(model, prompt, 3, steps=6, exit_kl=-1.0))  # nothing ever settles
    assert [used for _, used in out] == [6, 6, 6]


def test_generate_cli_streams_text_and_refuses_a_bad_exit(corpus, tmp_path):
    from th1nker.train.run import train_recipe

    recipe = tmp_path / "lm.yaml"
    recipe.write_text(f"base: {RECIPES / 'thinking_lm.yaml'}\ntask: {{path: {corpus}, tokenizer: null, "
                      "eval_examples: 4}\nmodel: {dim: 32}\n")
    train_recipe(recipe, ["train.max_updates=2", "train.batch_size=2", "tracking.enabled=false", "eval.steps=[1]"],
                 tmp_path / "run", resume=False)
    res = runner.invoke(app, ["generate", str(recipe), "--checkpoint", str(tmp_path / "run"), "--prompt", "def f(",
                              "--steps", "2", "--max-new-tokens", "5"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("def f(") and "5 tokens in" in res.output and "cache on" in res.output
    res = runner.invoke(app, ["generate", str(recipe), "--checkpoint", str(tmp_path / "run"), "--prompt", "x",
                              "--exit", "kl:-1"])
    assert res.exit_code == 2 and "kl:EPS" in res.output
    args = ["generate", str(recipe), "--checkpoint", str(tmp_path / "run"), "--prompt", "def f(", "--steps", "2",
            "--max-new-tokens", "5"]
    compiled = runner.invoke(app, [*args, "--compile"])
    assert compiled.exit_code == 0, compiled.output
    assert "compiled static cache" in compiled.output and compiled.output.split("\n")[0] == res_text(args)
    res = runner.invoke(app, [*args, "--compile", "--no-cache"])
    assert res.exit_code == 2 and "--no-cache" in res.output


def res_text(args):
    """The text `th1nker generate args` prints, eagerly and without the cache."""
    res = runner.invoke(app, [*args, "--no-cache"])
    assert res.exit_code == 0, res.output
    return res.output.split("\n")[0]


def test_output_text_decodes_answers_of_their_own_length_with_an_exact_cache():
    from th1nker.loop import run_to_end

    recipe = load_recipe(RECIPES / "text_answer.yaml", ["model.dim=32"])
    task = make_task(recipe.task, recipe.seed)
    torch.manual_seed(0)
    model = Th1nker(recipe, task.spec).eval()
    batch = task.eval_batch(1, 8)
    thought = run_to_end(model, batch, steps=2)
    block, state = model.blocks["answer"], thought.latest["answer"].logits
    assert state.shape == thought.states["latent"].shape  # a step keeps the state; nothing decoded yet
    cached = block.predict(state)
    assert cached.shape == (8, recipe.model.blocks["answer"].max_len)
    assert torch.equal(cached, block.predict(state, use_cache=False))
    loss = model.step_loss(thought, batch)  # teacher forcing over the target's own length
    assert loss.ndim == 0 and torch.isfinite(loss)
    # exact match: a decoder that writes the answer then anything scores, one that misses a token does not
    longer = torch.cat([batch.target.clamp(min=0), torch.zeros(8, 5, dtype=torch.long)], 1)
    assert task.score(longer, batch).all() and not task.score(batch.target[:, :1].clamp(min=0) + 1, batch).any()


def test_thinker_lm_recipe_trains_the_real_thinker_that_generate_and_convert_use(tmp_path):
    """recipes/thinker_lm.yaml is one thinker_lm block: a ThinkerLM trained by the normal trainer, whose
    cached generate `th1nker generate` runs and whose run `th1nker convert to-hf` writes."""
    from th1nker.omni.convert import read_llama_folder
    from th1nker.omni.thinker import ThinkerLM
    from th1nker.train.evaluate import load_model
    from th1nker.train.run import train_recipe

    (tmp_path / "c.txt").write_text("".join(f"line {i} of the little corpus, with words.\n" for i in range(300)))
    recipe = tmp_path / "lm.yaml"
    recipe.write_text(f"base: {RECIPES / 'thinker_lm.yaml'}\ntask: {{path: {tmp_path / 'c.txt'}, train: [16, 16], "
                      "eval: [16], eval_examples: 4}\nmodel: {dim: 32, blocks: {lm: {layers: 2}}}\n")
    train_recipe(recipe, ["train.max_updates=3", "train.batch_size=4", "tracking.enabled=false"], tmp_path / "run", False)
    _, task, model = load_model(recipe, tmp_path / "run", [])
    lm = model.blocks["lm"].lm
    assert isinstance(lm, ThinkerLM) and lm.config.rope_pairs == "half" and lm.head.weight is lm.embed.weight
    assert sum(p.numel() for p in model.encoders.parameters()) == 0  # the ThinkerLM embeds the ids itself
    prompt = encode_text(task.tokenizer, "line 7 of")
    looped = [t for t, _ in generate(model, prompt, 10, steps=1)]
    assert looped == [t for t, _ in generate(model, prompt, 10, steps=1, use_cache=False)]
    assert lm.generate(torch.tensor([prompt]), 10)[0, len(prompt):].tolist() == looped
    res = runner.invoke(app, ["generate", str(recipe), "--checkpoint", str(tmp_path / "run"), "--prompt", "line 7 of",
                              "--max-new-tokens", "10"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(decode_text(task.tokenizer, prompt + looped)) and "ThinkerLM.generate" in res.output
    res = runner.invoke(app, ["generate", str(recipe), "--checkpoint", str(tmp_path / "run"), "--prompt", "x",
                              "--steps", "4"])
    assert res.exit_code == 2 and "one forward pass per token" in res.output
    res = runner.invoke(app, ["convert", "to-hf", str(tmp_path / "run"), "--out", str(tmp_path / "hf")])
    assert res.exit_code == 0, res.output
    ids = torch.tensor([prompt])
    with torch.no_grad():
        torch.testing.assert_close(read_llama_folder(tmp_path / "hf")(ids)[0], lm(ids)[0], atol=1e-5, rtol=0)
    res = runner.invoke(app, ["convert", "to-hf", str(tmp_path), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "no recipe.yaml" in res.output


@pytest.mark.parametrize("fused", [True, False])
def test_compiled_static_cache_gives_the_uncached_tokens_with_few_graphs(corpus, fused):
    """`generate(compile=True)`: fixed-size caches; a thinking step as one compiled graph (every call fusable)
    or, with a halting head, one graph per block step; reused by every token and by prompts of other lengths
    in the same capacity bucket; early exit pads static caches too."""
    from th1nker.train import speed

    recipe, task, model = small_lm(corpus, *([] if fused else ["model.blocks.head.halt=true"]))
    prompt = encode_text(task.tokenizer, "import os\ndef main(")
    uncached = [t for t, _ in generate(model, prompt, 12, steps=3, use_cache=False)]
    before = speed.compiled_graphs()
    assert [t for t, _ in generate(model, prompt, 12, steps=3, compile=True)] == uncached
    built = speed.compiled_graphs() - before
    per_block = [name for name in ("prelude", "core", "coda", "head") if model.blocks[name]._compiled_steps]
    if fused:  # one graph with the prelude computing (a token's first step), one reusing its value
        assert len(model._fused_steps) == 1 and not per_block and built <= 2
    else:  # at most one per step function; equal shapes share one (also with earlier tests')
        assert not model._fused_steps and per_block == ["prelude", "core", "coda", "head"] and built <= 4
    other = encode_text(task.tokenizer, "x = 1\n")
    assert ([t for t, _ in generate(model, other, 20, steps=3, compile=True)] ==
            [t for t, _ in generate(model, other, 20, steps=3, use_cache=False)])
    # every later token exits after 2 of 5 iterations: the skipped calls' caches are filled from the last one
    exits = list(generate(model, prompt, 10, steps=5, exit_kl=1e9, compile=True))
    assert exits == list(generate(model, prompt, 10, steps=5, exit_kl=1e9)) and exits[-1][1] == 2
    assert speed.compiled_graphs() - before == built


def test_generate_refuses_compile_without_the_cache(corpus, tmp_path):
    recipe, task, model = small_lm(corpus)
    with pytest.raises(DataError, match="--no-cache"):
        next(generate(model, [1, 2], 3, steps=2, use_cache=False, compile=True))
