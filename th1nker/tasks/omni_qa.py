"""Questions that need both the image and the sound: compare the shapes of a scene with the tones of a clip.

Each example has a scene of 1..difficulty shapes (scenes.py) and a clip of 1..difficulty tones
(sounds.py). Questions: are there as many tones as shapes, are there more tones than shapes (each
answered yes half the time, when the difficulty allows), how many shapes and tones are there.
"""

from __future__ import annotations

import torch

from th1nker.tasks import register_task
from th1nker.tasks.base import Batch
from th1nker.tasks.media import Example, MediaQA, check_count, choose, draw
from th1nker.tasks.scenes import check_size, draw_scene, random_scene
from th1nker.tasks.sounds import MAX_TONES, random_sound

QUESTIONS = ("are there as many tones as shapes?", "are there more tones than shapes?",
             "how many shapes and tones are there?")


def counts(question: str, most: int, generator: torch.Generator) -> tuple[int, int]:
    """(shapes, tones) for `question`: any pair for the sum, else one whose answer is yes or no, evenly."""
    pairs = [(s, t) for s in range(1, most + 1) for t in range(1, most + 1)]
    if question != QUESTIONS[2] and most > 1:
        yes = bool(draw(generator, 0, 1))
        pairs = [p for p in pairs if (answer(question, *p) == "yes") == yes]
    return choose(generator, pairs)


def answer(question: str, shapes: int, tones: int) -> str:
    if question == QUESTIONS[0]:
        return "yes" if tones == shapes else "no"
    if question == QUESTIONS[1]:
        return "yes" if tones > shapes else "no"
    return str(shapes + tones)


@register_task("omni_qa")
class OmniQA(MediaQA):
    """Compare the number of shapes in a scene with the number of tones in a clip."""

    modalities = ("image", "audio")

    def __init__(self, config, seed: int = 0):
        super().__init__(config, seed)
        check_size(self.name, config.image_size)
        self.setup(["no", "yes", *map(str, range(2, 2 * MAX_TONES + 1))])  # a sum is 2..8

    def batch(self, n: int, difficulty: int, generator: torch.Generator) -> Batch:
        check_count(self.name, "shapes and tones", difficulty, MAX_TONES)
        examples = []
        for _ in range(n):
            question = choose(generator, QUESTIONS)
            shapes, tones = counts(question, difficulty, generator)
            image = draw_scene(random_scene(shapes, generator), self.config.image_size)
            _, wave = random_sound(tones, generator)
            examples.append(Example(question, answer(question, shapes, tones), image, wave))
        return self.pack(examples, difficulty)
