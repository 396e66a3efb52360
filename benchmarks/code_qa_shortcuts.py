"""How often surface rules answer code_qa without following assignments, beside exact chance.

For each evaluated hop count: every rule of `th1nker.tasks.code_qa_shortcuts` scored on the recipe's own
evaluation questions (the held-out ones `th1nker train` evaluates) and on 20,000 fresh generated ones.

    python benchmarks/code_qa_shortcuts.py recipes/thinking_lm_qa.yaml [--generated 20000]
"""

from __future__ import annotations

import argparse
import json

from th1nker.recipe import load_recipe
from th1nker.tasks import make_task
from th1nker.tasks.code_qa_shortcuts import chance, generated, shortcut_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--generated", type=int, default=20_000, help="fresh questions per hop count")
    parser.add_argument("--set", action="append", default=[], help="recipe override, e.g. train.init=null")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, ["train.init=null", *args.set])
    task = make_task(recipe.task, recipe.seed)
    hops = {}
    for h in recipe.task.eval:
        questions = task.eval_questions(h)
        hops[h] = {"evaluation_questions": len(questions), "on_evaluation": shortcut_scores(questions),
                   "on_generated": shortcut_scores(generated(h, args.generated, seed=h))}
    print(json.dumps({"benchmark": "code_qa_shortcuts", "chance": chance(), "generated": args.generated,
                      "hops": hops}))


if __name__ == "__main__":
    main()
