"""The block library: read, process, output and probe layers. Import as `th1nker.blocks`.

Classes are imported on first use (`from th1nker.blocks import ProcessLayer`), so that the recipe
schema in `th1nker.blocks.configs` can be read without importing torch.
"""

from importlib import import_module

_WHERE = {
    "Block": "base", "BuildContext": "base",
    "ReadLayer": "read", "InputRead": "read", "TextRead": "read", "ImageRead": "read", "AudioRead": "read",
    "ReadLatentLayer": "read", "ReadLongTermLayer": "longterm", "ProcessLayer": "process", "DTNetBlock": "dtnet",
    "OutputLayer": "output", "TokenOutput": "output", "ClassOutput": "output", "ConvTokenOutput": "output", "SpeechOutput": "speech",
    "TextOutput": "text_output",
    "Probe": "probe", "ThinkerBlock": "thinker", "ThinkerLMOutput": "thinker_lm",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'th1nker.blocks' has no attribute {name!r}")
    return getattr(import_module(f"th1nker.blocks.{_WHERE[name]}"), name)
