"""The block library: read, process, output and probe layers. Import as `th1nker.blocks`."""

from th1nker.blocks.base import Block, BuildContext
from th1nker.blocks.output import ClassOutput, OutputLayer, TokenOutput
from th1nker.blocks.probe import Probe
from th1nker.blocks.process import ProcessLayer
from th1nker.blocks.read import AudioRead, ImageRead, InputRead, ReadLatentLayer, ReadLayer, TextRead
from th1nker.blocks.longterm import ReadLongTermLayer  # noqa: F401  (registers read_longterm)
from th1nker.blocks.speech import SpeechOutput  # noqa: F401  (registers output_speech)
from th1nker.blocks.thinker import ThinkerBlock

__all__ = ["Block", "BuildContext", "ReadLayer", "InputRead", "TextRead", "ImageRead", "AudioRead", "ReadLatentLayer",
           "ProcessLayer", "OutputLayer", "TokenOutput", "ClassOutput", "Probe", "ThinkerBlock"]
