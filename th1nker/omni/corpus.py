"""A deterministic generator of simple English-like text for LM pretraining and tokenizer tests.

`python -m th1nker.omni.corpus` rewrites the shipped `data/corpus.txt`.
"""

from __future__ import annotations

import random
from pathlib import Path

from th1nker.io import atomic_write_text

CORPUS_PATH = Path(__file__).parent / "data" / "corpus.txt"

NAMES = ["Ada", "Ben", "Cleo", "Dan", "Eva", "Finn", "Gia", "Hugo", "Iris", "Jack", "Kim", "Leo",
         "Mia", "Noah", "Olga", "Paul", "Rosa", "Sam", "Tara", "Uma", "Victor", "Wen", "Yara",
         "Zoe"]
ANIMALS = ["cat", "dog", "bird", "fox", "horse", "rabbit", "owl", "mouse", "sheep", "goat", "duck",
           "bear", "frog", "lion", "whale", "tiger"]
THINGS = ["book", "ball", "apple", "box", "cup", "lamp", "letter", "map", "key", "hat", "bike",
          "coat", "clock", "chair", "table", "window", "garden", "song", "story", "picture"]
PLACES = ["the park", "the market", "the river", "the school", "the garden", "the station",
          "the forest", "the kitchen", "the library", "the beach", "the hill", "the farm",
          "the old house", "the small town", "the city"]
ADJECTIVES = ["red", "blue", "green", "small", "big", "old", "new", "quiet", "bright", "dark",
              "warm", "cold", "happy", "tired", "clever", "gentle", "heavy", "light", "round",
              "soft"]
VERBS = [("finds", "find"), ("sees", "see"), ("likes", "like"), ("carries", "carry"),
         ("paints", "paint"), ("opens", "open"), ("reads", "read"), ("cleans", "clean"),
         ("buys", "buy"), ("hides", "hide"), ("draws", "draw"), ("fixes", "fix")]
MOTIONS = ["walks", "runs", "drives", "travels", "swims", "rides", "goes"]
TIMES = ["in the morning", "at noon", "in the evening", "at night", "on Monday", "on Sunday",
         "every day", "after lunch", "before dinner", "in the spring", "in the winter"]
WEATHER = ["sunny", "rainy", "windy", "cloudy", "cold", "warm", "foggy"]
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def _sentence(r: random.Random) -> str:
    name, other = r.sample(NAMES, 2)
    animal, thing, place = r.choice(ANIMALS), r.choice(THINGS), r.choice(PLACES)
    adj = r.choice(ADJECTIVES)
    verb, verb_base = r.choice(VERBS)
    n = r.randrange(2, 10)
    templates = [
        f"{name} {verb} a {adj} {thing} at {place}.",
        f"The {adj} {animal} {r.choice(MOTIONS)} to {place} {r.choice(TIMES)}.",
        f"{name} and {other} {verb_base} the {thing} together {r.choice(TIMES)}.",
        f"It was {r.choice(WEATHER)} when {name} {r.choice(MOTIONS)} to {place}.",
        f"There are {NUMBERS[n - 1]} {animal}s near {place}.",
        f"Where does the {animal} sleep? The {animal} sleeps at {place}.",
        f"What does {name} {verb_base}? {name} {verb} the {adj} {thing}.",
        f"Who {verb} the {thing}? {other} {verb} the {thing}.",
        f"How many {thing}s does {name} have? {name} has {NUMBERS[n - 1]} {thing}s.",
        f"What is {n} plus {n - 1}? {n} plus {n - 1} is {2 * n - 1}.",
        f"{name} says that the {animal} is {adj}, but {other} thinks it is {r.choice(ADJECTIVES)}.",
        f"After the {r.choice(WEATHER)} day, {name} reads a story about a {adj} {animal}.",
        f"If the {thing} is {adj}, {name} will give it to {other}.",
    ]
    return r.choice(templates)


def make_corpus(n_lines: int, seed: int = 0) -> str:
    """`n_lines` lines of one to three template sentences each, the same for the same seed."""
    r = random.Random(seed)
    lines = (" ".join(_sentence(r) for _ in range(r.randint(1, 3))) for _ in range(n_lines))
    return "".join(line + "\n" for line in lines)


if __name__ == "__main__":
    atomic_write_text(CORPUS_PATH, make_corpus(1500, seed=0))
