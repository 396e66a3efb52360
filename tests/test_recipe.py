import pytest
import yaml

from th1nker.errors import RecipeError
from th1nker.recipe import load_recipe, validate_recipe

from conftest import RECIPES


def test_shipped_recipe_round_trips_through_yaml(tmp_path):
    recipe = load_recipe(RECIPES / "multistep.yaml")
    path = tmp_path / "resolved.yaml"
    path.write_text(recipe.to_yaml())
    assert load_recipe(path) == recipe


def _broken(tiny_recipe, **edits):
    data = yaml.safe_load(tiny_recipe.read_text())
    for dotted, value in edits.items():
        node = data
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    return data


def test_every_error_reported_at_once_with_paths(tiny_recipe):
    data = _broken(tiny_recipe, model__blocks__think={"kind": "proces", "layers": 2},
                   model__blocks__answer={"kind": "output_tokens", "colour": "red"},
                   train__batch_size="many")
    with pytest.raises(RecipeError) as e:
        validate_recipe(data, "r.yaml")
    msg = str(e.value)
    assert "3 error(s)" in msg
    assert "model.blocks.think.kind: unknown block kind 'proces'; did you mean 'process'?" in msg
    assert "read_text" in msg  # the known kinds are listed
    assert "model.blocks.answer.colour: unknown field" in msg
    assert "train.batch_size:" in msg and "'many'" in msg


def test_misspelt_field_suggests_the_right_one(tiny_recipe):
    data = _broken(tiny_recipe, train__max_update=3)
    with pytest.raises(RecipeError, match=r"train.max_update: unknown field.*did you mean 'max_updates'"):
        validate_recipe(data)


def test_wrong_block_field_type_names_its_path(tiny_recipe):
    data = _broken(tiny_recipe, model__blocks__think={"kind": "process", "layers": "two"})
    with pytest.raises(RecipeError, match=r"model\.blocks\.think\.layers: "):
        validate_recipe(data)


def test_unknown_task_names_closest(tiny_recipe):
    data = _broken(tiny_recipe, task__kind="prefix_parit")
    with pytest.raises(RecipeError, match="task.kind: unknown task 'prefix_parit'; did you mean 'prefix_parity'"):
        validate_recipe(data)


def test_base_inheritance_and_kind_change_replaces(tiny_recipe, tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("base: tiny.yaml\nname: child\nmodel:\n  dim: 32\n"
                     "  blocks:\n    think: {kind: process, mixer: attention}\n")
    r = load_recipe(child)
    assert r.name == "child" and r.model.dim == 32
    assert r.model.blocks["think"].mixer == "attention" and r.model.blocks["think"].layers == 1
    assert r.model.blocks["read"].mode == "aligned"  # inherited
    child.write_text("base: tiny.yaml\nmodel:\n  blocks:\n    answer: {kind: output_class}\n")
    assert load_recipe(child).model.blocks["answer"].kind == "output_class"


def test_base_cycle_and_missing_base(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(RecipeError, match="nowhere.yaml: file not found"):
        load_recipe(tmp_path / "c.yaml")


def test_overrides_are_typed_by_the_schema(tiny_recipe):
    r = load_recipe(tiny_recipe, ["train.max_updates=17", "train.optimizer.lr=1e-2", "name=123",
                                  "eval.steps=[1,2]", "train.ema=null", "model.latent.slots=7"])
    assert r.train.max_updates == 17 and isinstance(r.train.max_updates, int)
    assert r.train.optimizer.lr == 0.01
    assert r.name == "123"
    assert r.eval.steps == [1, 2] and r.train.ema is None and r.model.states["latent"].slots == 7
    with pytest.raises(RecipeError, match="train.max_updates"):
        load_recipe(tiny_recipe, ["train.max_updates=lots"])
    with pytest.raises(RecipeError, match="expected KEY.PATH=VALUE"):
        load_recipe(tiny_recipe, ["train.max_updates"])


def test_not_a_mapping_and_bad_yaml(tmp_path):
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(RecipeError, match="must be a mapping"):
        load_recipe(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(tmp_path / "bad.yaml")


def test_builtin_kinds_registered():
    from th1nker.registry import kinds

    assert {"read_text", "read_latent", "process", "output_tokens", "output_class", "probe"} <= set(kinds())
