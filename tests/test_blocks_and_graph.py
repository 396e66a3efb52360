import pytest
import torch
import yaml
from pydantic import Field

from th1nker.blocks import Block, ProcessLayer
from th1nker.errors import RecipeError
from th1nker.graph import BlockGraph
from th1nker.model import Th1nker
from th1nker.recipe import BlockConfig, load_recipe, validate_recipe
from th1nker.registry import register
from th1nker.schedule import PolicySchedule, RandomSchedule
from th1nker.tasks import make_task


def build(data):
    recipe = validate_recipe(data)
    task = make_task(recipe.task, recipe.seed)
    return recipe, task, Th1nker(recipe, task.spec)


def tiny_data(tiny_recipe):
    return yaml.safe_load(tiny_recipe.read_text())


@register("scale_latent")
class ScaleLatent(Block):
    """Multiplies the latent by a learned scalar (a plugin defined in a test file)."""

    class Config(BlockConfig):
        init: float = Field(1.0, description="initial scale")

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.scale = torch.nn.Parameter(torch.tensor(config.init))

    def forward(self, thought):
        thought.latent = thought.latent * self.scale
        return thought


def test_block_registered_in_a_test_file_is_usable_from_a_recipe(tiny_recipe):
    data = tiny_data(tiny_recipe)
    data["model"]["blocks"]["scale"] = {"kind": "scale_latent", "init": 0.5}
    data["graph"]["edges"]["read"] = ["scale"]
    data["graph"]["edges"]["scale"] = ["think"]
    data["schedule"]["step"] = ["read", "scale", "think", "answer"]
    recipe, task, model = build(data)
    thought = model.think(task.eval_batch(8, 4), steps=2)
    assert thought.trace == ["read", "scale", "think", "answer"] * 2
    assert model.blocks["scale"].scale.item() == 0.5


def test_weight_sharing_by_instance_name(tiny_recipe):
    data = tiny_data(tiny_recipe)
    data["schedule"]["step"] = ["read", "think", "think", "think", "answer"]
    _, _, model = build(data)
    assert sum(isinstance(b, ProcessLayer) for b in model.modules()) == 1
    one = sum(p.numel() for p in model.blocks["think"].parameters())

    data = tiny_data(tiny_recipe)
    data["model"]["blocks"]["think_b"] = dict(data["model"]["blocks"].pop("think"))
    data["model"]["blocks"]["think_a"] = dict(data["model"]["blocks"]["think_b"])
    data["graph"]["edges"] = {"read": ["think_a"], "think_a": ["think_b"], "think_b": ["answer"], "answer": ["read"]}
    data["schedule"]["step"] = ["read", "think_a", "think_b", "answer"]
    _, _, model2 = build(data)
    assert sum(isinstance(b, ProcessLayer) for b in model2.modules()) == 2
    a, b = model2.blocks["think_a"], model2.blocks["think_b"]
    assert {id(p) for p in a.parameters()}.isdisjoint(id(p) for p in b.parameters())
    assert sum(p.numel() for p in a.parameters()) == one


def test_fixed_schedule_trace_is_the_step_n_times(tiny_recipe):
    _, task, model = build(tiny_data(tiny_recipe))
    thought = model.think(task.eval_batch(8, 4), steps=7)
    assert thought.trace == ["read", "think", "answer"] * 7
    assert thought.step == 7 and [o.step for o in thought.outputs] == [6]  # outputs live for one step
    assert torch.allclose(thought.cost, torch.full((4,), 7 * (1 + 1 + 0.25)))


def branching_data(tiny_recipe):
    data = tiny_data(tiny_recipe)
    data["model"]["blocks"]["recall"] = {"kind": "read_latent", "heads": 2}
    data["graph"] = {"start": ["read", "recall"],
                     "edges": {"read": ["think", "recall"], "recall": ["think", "answer"],
                               "think": ["think", "answer", "recall"], "answer": ["read", "recall"]}}
    data["schedule"].update(kind="random", min_len=2, max_len=5)
    return data


def test_random_schedules_only_walk_the_graph(tiny_recipe):
    recipe, task, model = build(branching_data(tiny_recipe))
    batch = task.eval_batch(8, 2)
    lengths = set()
    for seed in range(60):
        sched = RandomSchedule(2, 5, torch.Generator().manual_seed(seed))
        thought = model.think(batch, sched, steps=3)
        steps, cur = [], []
        for name in thought.trace:
            cur.append(name)
            if name in model.graph.end:
                steps.append(cur)
                cur = []
        assert not cur, thought.trace
        prev = None
        for step in steps:
            assert model.graph.is_walk(step, prev), (seed, thought.trace)
            assert 2 <= len(step) <= 5
            lengths.add(len(step))
            prev = step[-1]
    assert len(lengths) >= 3  # the walks really vary


def test_probe_schedule_chooses_per_example_and_halts(tiny_recipe):
    data = branching_data(tiny_recipe)
    data["model"]["blocks"]["probe"] = {"kind": "probe", "halt_bias": -5.0}
    data["schedule"].update(kind="probe", probe="probe", max_len=4)
    recipe, task, model = build(data)
    probe = model.blocks["probe"]
    assert probe.net[-1].bias[-1].item() == -5.0
    assert len(probe.actions) == 4  # every block but the probe itself
    thought = model.think(task.eval_batch(8, 6), steps=3)
    assert thought.step == 3 and not thought.halted.any()
    assert model.prediction(thought).shape == (6, 8)

    # a legal policy (answer when allowed, else the first allowed block) that halts example 0 after one step
    answer = model.graph.actions.index("answer")
    halt = len(model.graph.actions)

    def policy(thought, mask):
        choice = mask[:, :halt].float().argmax(1)
        choice = torch.where(mask[:, answer], torch.full_like(choice, answer), choice)
        if mask[0, halt]:
            choice[0] = halt
        assert mask[torch.arange(len(choice)), choice].all()
        return choice

    sched = PolicySchedule(policy, max_len=4)
    thought = model.think(task.eval_batch(8, 3), sched, steps=3)
    assert thought.halted[0] and not thought.halted[1:].any()
    assert thought.cost[0] < thought.cost[1]


def test_graph_problems_are_all_named(tiny_recipe):
    data = tiny_data(tiny_recipe)
    data["graph"]["edges"]["think"] = ["thnk", "answer"]
    data["schedule"]["step"] = ["read", "answer"]
    with pytest.raises(RecipeError) as e:
        validate_recipe(data)
    assert "graph.edges.think: unknown block 'thnk'; did you mean 'think'?" in str(e.value)

    data = tiny_data(tiny_recipe)
    data["schedule"]["step"] = ["read", "answer"]
    with pytest.raises(RecipeError, match="'read' -> 'answer' is not an edge; add it to graph.edges.read"):
        validate_recipe(data)

    data = tiny_data(tiny_recipe)
    data["graph"]["edges"] = {"read": ["think"], "think": ["think"]}
    data["schedule"]["step"] = ["read", "think"]
    data["schedule"]["steps"] = 1
    with pytest.raises(RecipeError, match="no path from a start block"):
        validate_recipe(data)

    data = tiny_data(tiny_recipe)
    data["schedule"].update(kind="probe", probe="probe")
    with pytest.raises(RecipeError, match="schedule.probe: unknown block 'probe'"):
        validate_recipe(data)
    data["schedule"].update(probe="think")
    with pytest.raises(RecipeError, match="'think' is a process, not a probe"):
        validate_recipe(data)


def test_masks_follow_edges(tiny_recipe):
    recipe = load_recipe(tiny_recipe)
    g = BlockGraph(recipe)
    assert g.actions == ("read", "think", "answer")
    assert g.mask(None) == [True, False, False, False]
    assert g.mask("think") == [False, True, True, False]
    assert g.mask("answer") == [True, False, False, True]  # halting only after an output


def test_mermaid_and_png(tiny_recipe, tmp_path):
    g = BlockGraph(load_recipe(tiny_recipe))
    text = g.to_mermaid()
    assert text.startswith("flowchart LR") and "think --> answer" in text and "start --> read" in text
    g.draw(tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("mixer,slots,task", [("attention", "input", "prefix_parity"), ("conv2d", "input", "maze"),
                                              ("mlp", 12, "prefix_parity")])
def test_mixers_and_latent_modes(tiny_recipe, mixer, slots, task):
    data = tiny_data(tiny_recipe)
    data["task"].update(kind=task, train=[3, 3], eval=[3])
    data["model"]["blocks"]["think"]["mixer"] = mixer
    data["model"]["latent"] = {"slots": slots, "init": "learned"}
    if slots != "input":
        data["model"]["blocks"]["read"]["mode"] = "attention"
    _, task_obj, model = build(data)
    batch = task_obj.eval_batch(3, 2)
    thought = model.think(batch, steps=2)
    length = batch.target.shape[1] if slots == "input" else slots
    assert thought.latent.shape == (2, length, 16)
    assert torch.isfinite(thought.latent).all()


def test_latent_inits(tiny_recipe):
    for init in ("random", "fixed", "learned"):
        data = tiny_data(tiny_recipe)
        data["model"]["latent"] = {"init": init}
        _, task, model = build(data)
        batch = task.eval_batch(8, 3)
        a = model.start(batch, torch.Generator().manual_seed(0)).latent
        b = model.start(batch, torch.Generator().manual_seed(1)).latent
        assert a.shape == (3, 8, 16)
        assert torch.equal(a, b) == (init != "random")
        assert torch.equal(a[0], a[1]) == (init != "random")


def test_read_latent_reads_the_store(tiny_recipe):
    data = tiny_data(tiny_recipe)
    data["model"]["blocks"]["recall"] = {"kind": "read_latent"}
    data["graph"]["edges"]["read"] = ["recall"]
    data["graph"]["edges"]["recall"] = ["think"]
    data["schedule"]["step"] = ["read", "recall", "think", "answer"]
    _, task, model = build(data)
    thought = model.think(task.eval_batch(8, 2), steps=3)
    assert len(thought.store) == 3
    assert thought.store.tokens().shape == (2, 24, 16)
