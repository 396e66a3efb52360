"""RL over block choices: a Gymnasium environment and a trainer that teach the probe which block runs next.

`gymnasium.make("th1nker/BlockChoice-v0", recipe=..., checkpoint=...)` builds `BlockChoiceEnv` once this
package is imported (or name it "th1nker.rl:th1nker/BlockChoice-v0"). The classes load on first use,
so the command line starts without torch.
"""

import importlib

import gymnasium

ENV_ID = "th1nker/BlockChoice-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(ENV_ID, entry_point="th1nker.rl.env:BlockChoiceEnv")

_EXPORTS = {"BlockChoiceEnv": "env", "BlockChoiceVecEnv": "batch_env", "episode_reward": "reward",
            "RLTrainer": "trainer", "compare_policies": "compare"}

__all__ = ["ENV_ID", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'th1nker.rl' has no attribute {name!r}")
    return getattr(importlib.import_module(f"th1nker.rl.{_EXPORTS[name]}"), name)
