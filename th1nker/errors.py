"""Exceptions for mistakes a user can make. The CLI prints them in one block and exits 2."""


class Th1nkerError(Exception):
    """Base class: a user-caused error whose message names the file, the field and the fix."""


class RecipeError(Th1nkerError):
    """A recipe that cannot be read, validated or resolved."""


class GraphError(RecipeError):
    """A block graph or schedule that the recipe's blocks do not allow."""


class CheckpointError(Th1nkerError):
    """A checkpoint that is missing, corrupt, or does not fit the recipe."""


class DataError(Th1nkerError):
    """Input data (a file, an image, a wav, a prompt) that cannot be used."""


class TrainingDiverged(Th1nkerError):
    """Training whose loss or gradients stayed non-finite for `train.max_skipped` updates in a row."""
