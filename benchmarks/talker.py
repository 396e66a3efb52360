"""Speech out end to end: codec reconstruction, the Talker's next-frame accuracy, text -> wav.

Trains recipes/talker.yaml (the synthetic voice) in this process, then measures on held-out strings
(a tenth of all strings that training never sees):
  codec       reconstruction MSE of held-out log-mel frames against the mean training frame, codes in use;
  talker      teacher-forced next-frame code accuracy against the unigram baseline (always the most
              frequent training code, or code pair for a whole frame);
  free_run    greedy generation: frames within one of the target's length, the task's utterance accuracy;
  wav         one held-out string said through `write_speech` (Griffin-Lim), read back with soundfile,
              its log-mel aligned (DTW) with the voice saying that string and another one.
Prints one JSON object.

    python benchmarks/talker.py [--quick] [--threads N] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch
from torch import Tensor

from th1nker.blocks.speech import SpeechOutput, write_speech
from th1nker.omni.audio import MelParams
from th1nker.omni.speech_data import HELD_OUT, mel_of, mels_of, random_text
from th1nker.recipe import load_recipe
from th1nker.tasks import make_task
from th1nker.tasks.base import IGNORE
from th1nker.train.loop import Trainer

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "talker.yaml"
QUICK = ["model.dim=32", "model.blocks.say.layers=1", "model.blocks.say.heads=2", "task.train=[2,3]",
         "task.eval=[3]", "task.eval_examples=16", "schedule.steps=1", "train.batch_size=16",
         "train.max_updates=30", "train.ema=null", "train.optimizer.warmup=10"]


def codec_report(task, n: int = 200) -> dict:
    g = torch.Generator().manual_seed(99)
    lo, hi = task.config.train
    texts = [random_text(int(torch.randint(lo, hi + 1, (1,), generator=g)), HELD_OUT, g) for _ in range(n)]
    return task.codec.report(torch.cat(mels_of([task.voice.say(t) for t in texts])))


def unigram(task, batches: int = 20) -> tuple[list[int], tuple[int, ...]]:
    """The most frequent training code per codebook, and the most frequent whole frame."""
    g = torch.Generator().manual_seed(7)
    codes = torch.cat([task.train_batch(64, g).target.flatten(0, 1) for _ in range(batches)])
    codes = codes[codes[:, 0] != IGNORE]
    frames, counts = codes.unique(dim=0, return_counts=True)
    top = [int(codes[:, k].bincount().argmax()) for k in range(codes.shape[1])]
    return top, tuple(frames[counts.argmax()].tolist())


@torch.no_grad()
def talker_report(model, task, name: str) -> dict:
    """Teacher-forced next-frame accuracy vs unigram, and free-running generation, on held-out strings."""
    top, top_frame = unigram(task)
    block = model.blocks[name]
    hits, base = torch.zeros(len(top) + 1), torch.zeros(len(top) + 1)
    frames = near = right = utterances = 0
    for d in task.config.eval:
        held = task.eval_batch(d)
        thought = model.think(held)
        context, real = block.unpack(thought.outputs[-1].logits)
        scored = held.target[..., 0] != IGNORE
        target = held.target[scored]
        match = block.talker.next_frames(held.target, context, real)[scored] == target
        same = target == torch.tensor(top)
        hits += torch.cat([match.sum(0), match.all(-1).sum()[None]]).float()
        base += torch.cat([same.sum(0), (target == torch.tensor(top_frame)).all(-1).sum()[None]]).float()
        frames += len(target)
        said = model.prediction(thought)
        near += int((((said[..., 0] != IGNORE).sum(1) - scored.sum(1)).abs() <= 1).sum())
        right += int(task.score(said, held).sum())
        utterances += len(held)
    names = [f"codebook_{k + 1}" for k in range(len(top))] + ["frame"]
    return {"next_frame_accuracy": dict(zip(names, (hits / frames).tolist())),
            "unigram_baseline": dict(zip(names, (base / frames).tolist())), "held_out_frames": frames,
            "free_run": {"utterances": utterances, "length_within_one_frame": near / utterances,
                         "utterance_accuracy": right / utterances}}


def held_out_words(length: int, g: torch.Generator) -> str:
    """A held-out string that neither starts nor ends with a space (`think --input` strips those)."""
    while True:
        text = random_text(length, HELD_OUT, g)
        if text == text.strip():
            return text


def dtw(a: Tensor, b: Tensor) -> float:
    """Mean squared log-mel distance along the best monotonic alignment of frames a (T, D), b (S, D)."""
    cost = torch.cdist(a, b).square() / a.shape[1]
    total = torch.full((len(a) + 1, len(b) + 1), float("inf"))
    steps = torch.zeros_like(total)
    total[0, 0] = 0
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            prev = torch.stack([total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]])
            k = int(prev.argmin())
            total[i, j] = prev[k] + cost[i - 1, j - 1]
            steps[i, j] = (steps[i - 1, j - 1], steps[i - 1, j], steps[i, j - 1])[k] + 1
    return float(total[-1, -1] / steps[-1, -1])


@torch.no_grad()
def wav_report(model, task, text: str, other: str) -> dict:
    """Say `text` into a wav; align its log-mel frames with the voice saying `text` and `other`."""
    batch = task.encode(text)
    thought = model.think(batch)
    with tempfile.TemporaryDirectory() as tmp:
        said = write_speech(model, thought, Path(tmp) / "out.wav")
        data, rate = sf.read(Path(tmp) / "out.wav", dtype="float32")
    heard = mel_of(torch.from_numpy(data))
    truth = mel_of(task.voice.say(text))
    return {"text": text, "target_frames": len(truth), "frames": said["frames"], "sample_rate": rate,
            "seconds": len(data) / rate, "rms": float((data ** 2).mean() ** 0.5),
            "duration_within_one_frame": abs(len(data) / MelParams().hop - said["frames"]) <= 1,
            "mel_dtw_to_the_text": dtw(heard, truth),
            "mel_dtw_to_another_text": dtw(heard, mel_of(task.voice.say(other))), "other_text": other}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run to check the script")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1 is steadier on a shared machine)")
    parser.add_argument("--set", action="append", default=[], help="override a recipe field (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = ["tracking.enabled=false"] + (QUICK if args.quick else []) + args.set
    recipe = load_recipe(RECIPE, overrides)
    task = make_task(recipe.task, recipe.seed)
    start = time.time()
    trainer = Trainer(recipe, task)
    while trainer.update < recipe.train.max_updates:
        trainer.train_update()
    minutes = (time.time() - start) / 60
    model = trainer.eval_model.eval()
    name = next(n for n, b in model.blocks.items() if isinstance(b, SpeechOutput))
    g = torch.Generator().manual_seed(5)
    text, other = (held_out_words(max(task.config.eval), g) for _ in range(2))
    print(json.dumps({
        "benchmark": "talker",
        "what": "held-out strings of the synthetic voice: codec reconstruction, Talker next-frame accuracy "
                "vs unigram, free-running generation, one wav",
        "overrides": overrides, "threads": args.threads,
        "train": {"updates": trainer.update, "minutes": round(minutes, 2),
                  "parameters": sum(p.numel() for p in trainer.model.parameters())},
        "codec": codec_report(task),
        "talker": talker_report(model, task, name),
        "wav": wav_report(model, task, text, other),
    }))


if __name__ == "__main__":
    main()
