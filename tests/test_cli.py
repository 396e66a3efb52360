
import yaml
from typer.testing import CliRunner

from th1nker.cli import app

from conftest import RECIPES

runner = CliRunner()


def test_validate_prints_the_resolved_recipe():
    res = runner.invoke(app, ["validate", str(RECIPES / "multistep.yaml")])
    assert res.exit_code == 0, res.output
    resolved = yaml.safe_load(res.stdout)
    assert resolved["name"] == "multistep" and resolved["train"]["optimizer"]["kind"] == "adamw"


def test_validate_bad_recipe_exits_2_naming_every_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base: {RECIPES / 'multistep.yaml'}\n"
                   "model:\n  blocks:\n    think: {kind: proces}\n    answer: {kind: output_tokens, colour: red}\n"
                   "train: {batch_size: many}\n")
    res = runner.invoke(app, ["validate", str(bad)])
    assert res.exit_code == 2
    out = res.output
    assert "Traceback" not in out and res.exception is None or isinstance(res.exception, SystemExit)
    assert "model.blocks.think.kind" in out and "did you mean 'process'" in out
    assert "model.blocks.answer.colour" in out
    assert "train.batch_size" in out


def test_missing_recipe_exits_2(tmp_path):
    res = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "file not found" in res.output


def test_blocks_lists_kinds_and_fields():
    res = runner.invoke(app, ["blocks"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    for kind in ("read_text", "read_latent", "process", "output_tokens", "output_class", "probe"):
        assert kind in res.output
    assert "mixer" in res.output and "halt_bias" in res.output


def test_graph_writes_png_and_prints_mermaid(tmp_path):
    out = tmp_path / "g.png"
    res = runner.invoke(app, ["graph", str(RECIPES / "multistep.yaml"), "--out", str(out)])
    assert res.exit_code == 0
    assert "flowchart LR" in res.stdout
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_bad_steps_option_exits_2(tiny_recipe, tmp_path):
    res = runner.invoke(app, ["eval", str(tiny_recipe), "--checkpoint", str(tmp_path), "--steps", "a,b"])
    assert res.exit_code == 2 and "--steps" in res.output
