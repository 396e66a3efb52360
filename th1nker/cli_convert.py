"""`th1nker convert`: a ThinkerLM to and from a Hugging Face Llama folder."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, user_errors) -> None:
    """Add the `convert` command group to the th1nker app."""
    convert = typer.Typer(help="ThinkerLM <-> Hugging Face Llama folders (config.json + model.safetensors).",
                          no_args_is_help=True, epilog="Example: th1nker convert to-hf thinker.safetensors --out llama")

    @convert.command("to-hf", epilog="Example: th1nker convert to-hf thinker.safetensors --out llama")
    @user_errors
    def to_hf(weights: Path = typer.Argument(..., help="a ThinkerLM .safetensors (config in its metadata), or "
                                             "a run folder of a thinker_lm recipe (recipes/thinker_lm.yaml)"),
              out: Path = typer.Option(..., help="folder to write config.json and model.safetensors into")):
        """Write a ThinkerLM as a LlamaForCausalLM folder."""
        from th1nker.omni.convert import load_thinker, write_llama_folder

        write_llama_folder(thinker_of_run(weights) if weights.is_dir() else load_thinker(weights), out)
        typer.echo(f"wrote {out}/config.json and {out}/model.safetensors")

    @convert.command("from-hf", epilog="Example: th1nker convert from-hf llama --out thinker.safetensors")
    @user_errors
    def from_hf(folder: Path = typer.Argument(..., help="a Llama folder: config.json + model.safetensors"),
                out: Path = typer.Option(..., help="the ThinkerLM .safetensors to write")):
        """Read a LlamaForCausalLM folder into a ThinkerLM file."""
        from th1nker.omni.convert import read_llama_folder, save_thinker

        model = read_llama_folder(folder)
        save_thinker(model, out)
        typer.echo(f"wrote {out}: {sum(p.numel() for p in model.parameters())} parameters")

    app.add_typer(convert, name="convert")


def thinker_of_run(run: Path):
    """The ThinkerLM a run of a thinker_lm recipe trained (its EMA weights when it kept them)."""
    from th1nker.errors import CheckpointError
    from th1nker.generate import thinker_lm_of
    from th1nker.train.evaluate import load_model

    if not (run / "recipe.yaml").is_file():
        raise CheckpointError(f"{run}: not a run folder of `th1nker train` (no recipe.yaml); pass a run folder or "
                              "a ThinkerLM .safetensors file")
    _, _, model = load_model(run / "recipe.yaml", run, [])
    lm = thinker_lm_of(model)
    if lm is None:
        raise CheckpointError(f"{run}: its recipe's step is not one thinker_lm block, so it holds no ThinkerLM; "
                              "train recipes/thinker_lm.yaml (model.blocks.*.kind: thinker_lm) to convert one")
    return lm.cpu()
