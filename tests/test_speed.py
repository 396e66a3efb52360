"""train.precision and train.compile."""


import pytest
import torch

from th1nker.recipe import load_recipe
from th1nker.tasks import make_task
from th1nker.train import speed
from th1nker.train.loop import Trainer

from conftest import RECIPES


def trainer(recipe_path, *sets):
    recipe = load_recipe(recipe_path, ["train.ema=null", *sets])
    return Trainer(recipe, make_task(recipe.task, 0))


def test_bf16_autocasts_the_forward_on_cpu_and_trains(tiny_recipe):
    bf16, fp32 = trainer(tiny_recipe, "train.precision=bf16"), trainer(tiny_recipe, "train.precision=fp32")
    with bf16.autocast:
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.bfloat16
    with fp32.autocast:
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32
    first = [bf16.train_update()["loss"], fp32.train_update()["loss"]]
    assert first[0] == pytest.approx(first[1], abs=0.05) and first[0] != first[1]  # same run, rounded
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # weights stay fp32


def test_auto_precision_is_fp32_on_cpu_and_bf16_on_cuda():
    assert isinstance(speed.autocast("auto", torch.device("cpu")), type(speed.autocast("fp32", torch.device("cpu"))))
    assert speed.autocast("auto", torch.device("cuda")).fast_dtype == torch.bfloat16


def test_compile_falls_back_to_eager_with_one_warning(tiny_recipe, monkeypatch):
    def unavailable(self, *args, **kwargs):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(torch.nn.Module, "compile", unavailable)
    with pytest.warns(UserWarning, match="train.compile") as caught:
        t = trainer(tiny_recipe, "train.compile=true")
    assert len([w for w in caught if "train.compile" in str(w.message)]) == 1
    assert t.train_update()["loss"] > 0


def test_one_host_copy_per_update_for_the_logged_numbers(tiny_recipe, monkeypatch):
    t = trainer(tiny_recipe)
    monkeypatch.setattr(t.optimizer, "step", lambda: None)  # CPU Adam reads its step count with .item()
    calls = []
    original = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: calls.append(1) or original(self))
    metrics = t.train_update()
    assert calls == [] and len(metrics["per_step"]) >= 1  # per-window .item() calls are gone


@pytest.mark.slow
def test_compiled_training_equals_eager_and_does_not_recompile_per_step_count(tiny_recipe):
    eager, compiled = trainer(tiny_recipe), trainer(tiny_recipe, "train.compile=true")
    for _ in range(3):
        assert compiled.train_update()["loss"] == pytest.approx(eager.train_update()["loss"], rel=1e-4)
    graphs = speed.compiled_graphs()
    for _ in range(5):  # new plans: other step counts, other string lengths (batch shapes)
        compiled.train_update()
    assert speed.compiled_graphs() == graphs


def thinker_lm_recipe(tmp_path):
    (tmp_path / "c.txt").write_text("".join(f"line {i} of a corpus.\n" for i in range(200)))
    recipe = tmp_path / "lm.yaml"
    recipe.write_text(f"base: {RECIPES / 'thinker_lm.yaml'}\ntask: {{path: {tmp_path / 'c.txt'}, train: [16, 16], "
                      "eval: [16], eval_examples: 4}\nmodel: {dim: 32, blocks: {lm: {layers: 2}}}\n")
    return recipe


def test_eval_compile_compiles_the_blocks_and_the_thinker_lm_decode_step(tmp_path):
    """eval.compile (and `generate --compile`) compiles each block, and makes any ThinkerLM (whose own
    generate bypasses the blocks) decode through its compiled static-cache step."""
    from th1nker.train.evaluate import load_model

    recipe = thinker_lm_recipe(tmp_path)
    _, _, eager = load_model(recipe, None, [])
    _, _, model = load_model(recipe, None, ["eval.compile=true"])
    assert eager.blocks["lm"]._compiled_call_impl is None
    assert model.blocks["lm"]._compiled_call_impl is not None
    assert not eager.blocks["lm"].lm.compile_generate and model.blocks["lm"].lm.compile_generate


@pytest.mark.slow
def test_compiled_generation_gives_the_eager_tokens(tmp_path):
    from th1nker.train.evaluate import load_model

    _, _, model = load_model(thinker_lm_recipe(tmp_path), None, [])
    lm, prompt = model.blocks["lm"].lm, torch.tensor([[3, 1, 4, 1, 5]])
    eager = lm.generate(prompt, 12)
    assert speed.compile_blocks(model, "eval.compile")
    assert torch.equal(lm.generate(prompt, 12), eager)
