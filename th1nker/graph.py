"""The block graph: which block instances may follow which, where a step starts and ends."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx

from th1nker.errors import GraphError
from th1nker.schema import unknown_name_message

if TYPE_CHECKING:
    from th1nker.recipe import Recipe

HALT = "halt"


def _is(config, role: str) -> bool:
    return type(config).role == role


class BlockGraph:
    """A networkx DiGraph over the recipe's block instances.

    `actions` are the instances a schedule or policy may choose (every block but probes), in recipe
    order; action index `len(actions)` means halt. Build with `BlockGraph(recipe)`; it raises
    `GraphError` listing every problem (see `problems`).
    """

    def __init__(self, recipe: Recipe):
        problems = self.problems(recipe)
        if problems:
            raise GraphError("recipe graph: " + "; ".join(problems))
        blocks = recipe.model.blocks
        self.kinds = {name: cfg.kind for name, cfg in blocks.items()}
        self.g = nx.DiGraph()
        self.g.add_nodes_from(blocks)
        self.g.add_edges_from((a, b) for a, nexts in recipe.graph.edges.items() for b in nexts)
        self.start = tuple(recipe.graph.start)
        self.end = tuple(recipe.graph.end or [n for n, c in blocks.items() if _is(c, "output")])
        self.actions = tuple(n for n, c in blocks.items() if not _is(c, "probe"))
        self.index = {name: i for i, name in enumerate(self.actions)}

    # -- validation ---------------------------------------------------------------------------
    @staticmethod
    def problems(recipe: Recipe) -> list[str]:
        """Every way the graph and schedule disagree with the recipe's blocks, one line each."""
        blocks = recipe.model.blocks
        out: list[str] = []

        def check(path: str, name: str) -> bool:
            if name not in blocks:
                out.append(f"{path}: {unknown_name_message('block', name, blocks)}")
                return False
            return True

        graph, sched = recipe.graph, recipe.schedule
        for name in graph.start:
            check("graph.start", name)
        for name in graph.end or []:
            check("graph.end", name)
        for src, nexts in graph.edges.items():
            check("graph.edges", src)
            for dst in nexts:
                check(f"graph.edges.{src}", dst)
        step = sched.blocks()
        known_step = all([check("schedule.step", n) for n in step])
        if out:
            return out
        edges = {(a, b) for a, nexts in graph.edges.items() for b in nexts}
        if known_step and step:
            if step[0] not in graph.start:
                out.append(f"schedule.step: starts with '{step[0]}', which is not in graph.start {graph.start}")
            for a, b in dict.fromkeys(zip(step, step[1:])):
                if (a, b) not in edges:
                    out.append(f"schedule.step: '{a}' -> '{b}' is not an edge; add it to graph.edges.{a}")
            if sched.steps > 1 and (step[-1], step[0]) not in edges:
                out.append(f"schedule.step: the next step cannot follow this one: add '{step[0]}' "
                           f"to graph.edges.{step[-1]}")
        g = nx.DiGraph(list(edges))
        g.add_nodes_from(blocks)
        ends = graph.end or [n for n, c in blocks.items() if _is(c, "output")]
        if not ends:
            out.append("model.blocks: no output block (e.g. kind: output_tokens); thinking must produce something")
        elif not any(nx.has_path(g, s, e) for s in graph.start for e in ends):
            out.append(f"graph: no path from a start block {graph.start} to an output block {sorted(ends)}")
        if sched.kind == "probe":
            if sched.probe is None:
                out.append("schedule.probe: the probe schedule needs the name of a probe block")
            elif check("schedule.probe", sched.probe) and not _is(blocks[sched.probe], "probe"):
                out.append(f"schedule.probe: '{sched.probe}' is a {blocks[sched.probe].kind}, not a probe")
        if sched.min_len > sched.max_len:
            out.append(f"schedule.min_len: {sched.min_len} is larger than schedule.max_len {sched.max_len}")
        live = BlockGraph.reachable(recipe, g)
        for name in blocks:
            if name not in live:
                out.append(f"model.blocks.{name}: no step can run this block (the fixed schedule never calls it "
                           "and no graph walk reaches it); call it in schedule.step, or delete it (in a child "
                           f"recipe: `{name}: null`)")
        return out

    @staticmethod
    def reachable(recipe: Recipe, g: nx.DiGraph) -> set[str]:
        """The blocks some schedule of this recipe may run: the fixed step's, the probe, and (for every
        other schedule, or when RL chooses blocks) those a walk from a start block reaches."""
        sched = recipe.schedule
        out = set(sched.blocks()) | ({sched.probe} if sched.probe else set())
        if sched.kind != "fixed" or recipe.rl is not None:
            for s in recipe.graph.start:
                out |= {s} | nx.descendants(g, s)
            out |= {n for n, c in recipe.model.blocks.items() if _is(c, "probe")}
        return out

    # -- queries ------------------------------------------------------------------------------
    def successors(self, name: str) -> list[str]:
        return list(self.g.successors(name))

    def is_walk(self, names: list[str], previous: str | None = None) -> bool:
        """Whether `names` is a step the graph allows (continuing from the block `previous`)."""
        if not names or names[0] not in self.start:
            return False
        if previous is not None and not self.g.has_edge(previous, names[0]):
            return False
        return all(self.g.has_edge(a, b) for a, b in zip(names, names[1:])) and names[-1] in self.end

    def mask(self, last: str | None, first_of_step: bool = False) -> list[bool]:
        """Bool mask over `actions + [halt]`: what may run after `last` (None = nothing ran yet).

        Halting is allowed only right after an end block.
        """
        m = [False] * (len(self.actions) + 1)
        if last is None:
            allowed = self.start
        else:
            allowed = [n for n in self.g.successors(last) if n in self.index]
            if first_of_step:
                allowed = [n for n in allowed if n in self.start]
            m[-1] = last in self.end
        for n in allowed:
            m[self.index[n]] = True
        return m

    def distance_to_end(self) -> dict[str, int]:
        """Fewest blocks from each node to the end of a step (1 for an end block)."""
        rev = self.g.reverse(copy=False)
        dist: dict[str, int] = {}
        for e in self.end:
            for n, d in nx.single_source_shortest_path_length(rev, e).items():
                dist[n] = min(dist.get(n, d + 1), d + 1)
        return dist

    # -- rendering ----------------------------------------------------------------------------
    def to_mermaid(self) -> str:
        lines = ["flowchart LR", "  start((start))"]
        for n, k in self.kinds.items():
            shape = f'{n}(["{n}<br/><small>{k}</small>"])' if n in self.end else f'{n}["{n}<br/><small>{k}</small>"]'
            lines.append(f"  {shape}")
        lines += [f"  start --> {n}" for n in self.start]
        lines += [f"  {a} --> {b}" for a, b in self.g.edges]
        return "\n".join(lines)

    def draw(self, path: Path) -> None:
        """Write the graph as a PNG (atomically)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from th1nker.io import atomic_write

        g = self.g.copy()
        g.add_edges_from(("START", n) for n in self.start)
        pos = nx.circular_layout(g) if len(g) > 2 else nx.spring_layout(g, seed=0)
        fig, ax = plt.subplots(figsize=(6, 4.5))
        colours = ["#dddddd" if n == "START" else "#f4b183" if n in self.end else "#9dc3e6" for n in g]
        nx.draw_networkx(g, pos, ax=ax, node_color=colours, node_size=1800, font_size=9,
                         labels={n: n if n == "START" else f"{n}\n{self.kinds[n]}" for n in g},
                         arrowsize=18, connectionstyle="arc3,rad=0.12")
        ax.set_axis_off()
        fig.tight_layout()
        atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=110))
        plt.close(fig)
