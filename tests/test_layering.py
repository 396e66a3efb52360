"""The core's layering: validating a recipe imports no torch, th1nker's modules import no cycle, and
`base:` inheritance can delete what a child does not want."""

import ast
import json
import subprocess
import sys
import textwrap

import networkx as nx
import pytest
from typer.testing import CliRunner

from th1nker.cli import app
from th1nker.errors import RecipeError
from th1nker.recipe import load_recipe

from conftest import RECIPES, ROOT

runner = CliRunner()
HEAVY = ("torch", "torchaudio", "PIL", "sentencepiece", "mlflow")


@pytest.mark.parametrize("path", sorted(RECIPES.rglob("*.yaml")), ids=lambda p: p.stem)
def test_validating_a_recipe_imports_no_torch(path):
    code = textwrap.dedent(f"""
        import json, sys
        from th1nker.cli import main
        sys.argv = ["th1nker", "validate", {str(path)!r}]
        try:
            main()
        except SystemExit as e:
            assert e.code in (0, None), e.code
        print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


PACKAGES = {"th1nker": ROOT / "th1nker", "th1nker.blocks": ROOT / "blocks", "th1nker.memory": ROOT / "memory",
            "th1nker.rl": ROOT / "rl"}


def module_imports() -> nx.DiGraph:
    """Every import between th1nker's modules, at module level or inside functions (not TYPE_CHECKING)."""
    files = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            files[".".join([package, *(parts[:-1] if parts[-1] == "__init__" else parts)])] = path
    g = nx.DiGraph()
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:
                pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rsplit(".", 1)[0]
                mod = f"{pkg}.{node.module}" if node.module else pkg
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if t in files and t != name:
                    g.add_edge(name, t)
    return g


def test_no_import_cycles_among_th1nkers_modules():
    cycles = list(nx.simple_cycles(module_imports()))
    assert cycles == []


def test_a_child_recipe_deletes_a_block_with_null(tmp_path):
    (tmp_path / "child.yaml").write_text(textwrap.dedent(f"""
        base: {RECIPES / 'multistep.yaml'}
        model:
          blocks:
            think: null
            deep: {{kind: process, mixer: conv1d, layers: 3}}
        graph: {{start: [read], edges: {{read: [deep], deep: [deep, answer], answer: [read], think: null}}}}
        schedule: {{step: [read, deep, answer]}}
    """))
    recipe = load_recipe(tmp_path / "child.yaml")
    assert "think" not in recipe.model.blocks and "think" not in recipe.graph.edges
    # a block that no step runs is reported, not silently built, checkpointed and offered to a probe
    (tmp_path / "stale.yaml").write_text(f"base: {RECIPES / 'multistep.yaml'}\n"
                                         "model: {blocks: {deep: {kind: process}}}\n")
    with pytest.raises(RecipeError, match=r"model.blocks.deep: no step can run this block.*`deep: null`"):
        load_recipe(tmp_path / "stale.yaml")


def test_null_over_a_plain_value_stays_a_value(tmp_path):
    (tmp_path / "child.yaml").write_text(f"base: {RECIPES / 'multistep.yaml'}\ntrain: {{ema: null}}\n")
    assert load_recipe(tmp_path / "child.yaml").train.ema is None


@pytest.mark.parametrize("verb", ["train", "eval"])
def test_a_policy_schedule_is_refused_by_train_and_eval(tiny_recipe, tmp_path, verb):
    args = [verb, str(tiny_recipe), "--set", "schedule.kind=policy"]
    args += ["--out", str(tmp_path / "run")] if verb == "train" else ["--checkpoint", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "schedule.kind" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_a_cuda_device_on_a_machine_without_one_is_a_clear_error(tiny_recipe, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA, wherever this runs
    result = runner.invoke(app, ["train", str(tiny_recipe), "--set", "train.device=cuda", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "train.device" in result.output
