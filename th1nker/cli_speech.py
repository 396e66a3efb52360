"""`th1nker speech prepare`: speech for the Talker (espeak-ng when installed) and its trained codec."""

from __future__ import annotations

from pathlib import Path

import typer

PREPARE = "Example: th1nker speech prepare --out data/speech --count 40"


def register(app: typer.Typer, user_errors) -> None:
    """Add the `speech` command group to the th1nker app."""
    speech = typer.Typer(help="Speech data for the Talker and its RVQ codec.", no_args_is_help=True, epilog=PREPARE)

    @speech.command("prepare", epilog=PREPARE)
    @user_errors
    def prepare(out: Path = typer.Option(..., help="folder to (re)write, e.g. data/speech"),
                count: int = typer.Option(400, min=20, help="utterances (short phrases from the bundled corpus)"),
                codebooks: int = typer.Option(2, min=1, help="RVQ codebooks"),
                codebook_size: int = typer.Option(128, min=2, help="codes per codebook"),
                codec_steps: int = typer.Option(200, min=0, help="EMA training steps of the codec after k-means"),
                seed: int = typer.Option(0, help="seed of the phrases and the codec's training"),
                synthetic: bool = typer.Option(False, help="use the synthetic voice even if espeak-ng is installed")):
        """Say phrases with espeak-ng (or, without it, the synthetic voice), write the wavs and train the codec."""
        from th1nker.omni.codec import CodecConfig
        from th1nker.omni.speech_data import prepare as prepare_speech

        codec = CodecConfig(codebooks=codebooks, codebook_size=codebook_size, steps=codec_steps)
        manifest = prepare_speech(out, count, seed, codec, use_espeak=not synthetic, echo=typer.echo)
        report = manifest["codec_held_out"]
        typer.echo(f"wrote {out}: {manifest['utterances']} utterances ({manifest['held_out']} held out) "
                   f"from {manifest['source']}")
        typer.echo(f"codec on held-out frames: MSE {report['mse']:.3f} vs {report['mean_frame_mse']:.3f} for the "
                   f"mean frame ({report['improvement']:.1f}x lower); codes in use {report['codes_used']} "
                   f"of {codebook_size}")
        typer.echo(f"train the Talker on it: th1nker train recipes/talker.yaml --set task.path={out} "
                   "task.train=[0,0] task.eval=[1]")

    app.add_typer(speech, name="speech")
