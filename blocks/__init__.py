"""The block library: read, process, output and probe layers. Import as `th1nker.blocks`."""

from th1nker.blocks.base import Block, BuildContext
from th1nker.blocks.output import ClassOutput, OutputLayer, TokenOutput
from th1nker.blocks.probe import Probe
from th1nker.blocks.process import ProcessLayer
from th1nker.blocks.read import InputRead, ReadLatentLayer, ReadLayer, TextRead

__all__ = ["Block", "BuildContext", "ReadLayer", "InputRead", "TextRead", "ReadLatentLayer",
           "ProcessLayer", "OutputLayer", "TokenOutput", "ClassOutput", "Probe"]
