"""The learned indexer over a large long-term memory: recall@8 of the block that holds the needed fact.

Trains recipes/longterm.yaml (kv_facts: each example reads a pool of 1-8 blocks; the indexer is
distilled from the read attention), then compresses a corpus of 10^4 blocks (4 * 10^4 facts, distinct
keys) into an on-disk LongTermMemory (keys = the indexer's keys, one per compressed latent; value = the
compressed latents) and asks about random facts. Recall@8 of the block holding the fact, for: the trained indexer, the same
model with an untrained indexer, cosine similarity of raw latents (no learned projection), random
blocks. Then the model answers questions reading the indexer's top-k from the store (exact torch
top-k); questions repeat with a Zipf law and a block cache reports its hit rate.

    python benchmarks/memory_index.py [--quick] [--seeds 0,1,2] [--updates N]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch
import torch.nn.functional as F

from th1nker.memory import BlockCache, Indexer, LongTermMemory
from th1nker.memory.indexer import block_scores
from th1nker.recipe import load_recipe
from th1nker.loop import run_to_end
from th1nker.tasks import make_task
from th1nker.tasks.base import Batch
from th1nker.train.evaluate import accuracy_by_steps
from th1nker.train.loop import Trainer

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "longterm.yaml"
TOP = 8


def train(updates: int, overrides: list[str]):
    recipe = load_recipe(RECIPE, [f"train.max_updates={updates}", "train.max_minutes=null", "tracking.enabled=false",
                                  *overrides])
    task = make_task(recipe.task, recipe.seed)
    trainer = Trainer(recipe, task)
    start = time.perf_counter()
    while trainer.update < updates:
        trainer.train_update()
    return recipe, task, trainer.eval_model.eval(), (time.perf_counter() - start) / 60


@torch.no_grad()
def compress(block, ids: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    return torch.cat([block.compressor(ids[lo:lo + batch]) for lo in range(0, len(ids), batch)])


@torch.no_grad()
def question_latent(model, questions: torch.Tensor) -> torch.Tensor:
    """The latent as the read_longterm block sees it: after the step's first block read the question."""
    thought = model.start(Batch({"text": questions}, torch.zeros(len(questions), dtype=torch.long)),
                          torch.Generator().manual_seed(0))
    return model.blocks["read"](thought).latent


@torch.no_grad()
def read_attention(block, latent: torch.Tensor, latents: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """(Q, N) share of the read layer's attention on each stored block (the indexer's teacher), all N at once."""
    attn, (n, m, _) = block.attn, latents.shape
    k = attn.project_kv(latents.flatten(0, 1)[None])[0][0]  # (KVH, N * M, hd)
    k = k.repeat_interleave(attn.heads // attn.kv_heads, dim=0)  # (H, N * M, hd)
    out = []
    for lo in range(0, len(latent), chunk):
        q = attn.project_q(block.norm(latent[lo:lo + chunk]))  # (Q, H, L, hd)
        w = (torch.einsum("qhld,hsd->qhls", q, k) / attn.head_dim ** 0.5).softmax(-1)
        out.append(w.mean(dim=(1, 2)).view(-1, n, m).sum(-1))
    return torch.cat(out)


def recall_at(scores: torch.Tensor, gold: torch.Tensor, k: int = TOP) -> float:
    return float((scores.topk(k, dim=1).indices == gold[:, None]).any(1).float().mean())


@torch.no_grad()
def answer_from_store(model, store: LongTermMemory, questions: torch.Tensor, answers: torch.Tensor) -> float:
    batch = Batch({"text": questions}, answers)
    g = torch.Generator().manual_seed(0)
    thought = model.start(batch, g)
    thought.longterm = store
    thought = run_to_end(model, batch, generator=g, thought=thought)
    return float((model.prediction(thought) == answers).float().mean())


def run(seed: int, updates: int, n_blocks: int, n_questions: int, overrides: list[str]) -> dict:
    """Train with one seed, then measure recall over an on-disk store of `n_blocks` blocks."""
    torch.set_num_threads(1)
    recipe, task, model, minutes = train(updates, [f"seed={seed}", *overrides])
    block = model.blocks["recall"]
    g = torch.Generator().manual_seed(7)
    keys, values, ids = task.pool(n_blocks, g)
    latents = compress(block, ids)
    facts = torch.randint(0, len(keys), (n_questions,), generator=g)
    questions, gold = keys[facts], facts // task.facts
    q_latent = question_latent(model, questions)

    with torch.no_grad():
        trained = block_scores(block.indexer.query(q_latent), block.indexer.key(latents))
        torch.manual_seed(0)
        fresh = Indexer(recipe.model.dim, block.indexer.key_dim)
        untrained = block_scores(fresh.query(q_latent), fresh.key(latents))
        cosine = block_scores(F.normalize(q_latent.mean(1), dim=-1), F.normalize(latents, dim=-1))
    random_scores = torch.rand(n_questions, n_blocks, generator=g)
    teacher = read_attention(block, q_latent, latents)
    recall = {name: round(recall_at(s, gold), 4) for name, s in
              (("trained_indexer", trained), ("untrained_indexer", untrained), ("cosine_raw_latents", cosine),
               ("random", random_scores), ("read_attention_teacher", teacher))}
    in_pool = accuracy_by_steps(model, task, recipe.task.eval, [recipe.schedule.steps])["accuracy"]

    with tempfile.TemporaryDirectory() as tmp:
        store = LongTermMemory.create(Path(tmp) / "mem", block.indexer.key_dim, latents[0].numel(),
                                      key_vectors=block.compressor.latents)
        with torch.no_grad():
            for lo in range(0, n_blocks, 4096):
                store.append(block.indexer.key(latents[lo:lo + 4096]), latents[lo:lo + 4096].flatten(1))
        store.cache = BlockCache(1024)
        zipf = torch.distributions.Categorical(probs=1.0 / torch.arange(1, len(keys) + 1).float())
        asked = zipf.sample((n_questions,))
        start = time.perf_counter()
        accuracy = answer_from_store(model, store, keys[asked], values[asked])
        answer_s = time.perf_counter() - start
        cache = store.cache.stats()
    return {"train_minutes": round(minutes, 1), f"recall@{TOP}": recall,
            "answer_accuracy_in_pool": {d: acc[str(recipe.schedule.steps)] for d, acc in in_pool.items()},
            "answer_accuracy_from_store": round(accuracy, 4), "answer_seconds": round(answer_s, 1), "cache": cache}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short training and a small store, to check the script")
    parser.add_argument("--updates", type=int, default=None, help="training updates (default: the recipe's)")
    parser.add_argument("--blocks", type=int, default=None)
    parser.add_argument("--questions", type=int, default=2000)
    parser.add_argument("--seeds", default="0,1,2", help="recipe seeds, one training each")
    parser.add_argument("--workers", type=int, default=2, help="seeds trained at once (one thread each)")
    parser.add_argument("--set", action="append", default=[], help="override a recipe field (repeatable)")
    args = parser.parse_args()
    updates = args.updates or (30 if args.quick else load_recipe(RECIPE).train.max_updates)
    n_blocks = args.blocks or (1000 if args.quick else 10_000)
    seeds = [int(s) for s in args.seeds.split(",")]
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = {s: pool.submit(run, s, updates, n_blocks, args.questions, args.set) for s in seeds}
        results = {str(s): f.result() for s, f in futures.items()}
    recalls = {name: round(sum(r[f"recall@{TOP}"][name] for r in results.values()) / len(results), 4)
               for name in next(iter(results.values()))[f"recall@{TOP}"]}
    print(json.dumps({
        "benchmark": "memory_index",
        "what": f"recall@{TOP} of the block holding the asked fact among {n_blocks} stored blocks (4 facts each); "
                "answer accuracy reading the indexer's top-k from the on-disk store; one training per seed",
        "updates": updates, "blocks": n_blocks, "questions": args.questions, "overrides": args.set,
        f"mean_recall@{TOP}": recalls, "expected_random": round(TOP / n_blocks, 5), "seeds": results,
        "threads_per_seed": 1, "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
    }))


if __name__ == "__main__":
    main()
