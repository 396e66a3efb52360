"""`th1nker convert`: a ThinkerLM as a Hugging Face Llama folder and back, checked against transformers."""

import pytest
import torch
from typer.testing import CliRunner

from th1nker.cli import app
from th1nker.omni.convert import load_thinker, read_llama_folder, save_thinker, write_llama_folder
from th1nker.omni.thinker import ThinkerConfig, ThinkerLM

transformers = pytest.importorskip("transformers")
runner = CliRunner()


@pytest.mark.parametrize("kv_heads,tie,pairs", [(None, True, "interleaved"), (2, False, "interleaved"),
                                                (2, True, "half")])
def test_llama_folder_gives_transformers_the_same_logits(tmp_path, kv_heads, tie, pairs):
    torch.manual_seed(0)
    model = ThinkerLM(ThinkerConfig(vocab=97, dim=64, layers=2, heads=4, kv_heads=kv_heads, hidden=96, context=64,
                                    tie_embeddings=tie, norm_eps=1e-5, rope_base=500.0, rope_pairs=pairs)).eval()
    for p in model.parameters():  # norms away from 1 so that a swapped norm would show
        p.data += 0.05 * torch.randn_like(p)
    write_llama_folder(model, tmp_path / "hf")
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "hf", torch_dtype=torch.float32).eval()
    ids = torch.randint(0, 97, (2, 40))
    with torch.no_grad():
        ours, _ = model(ids)
        theirs = hf(ids).logits
    assert (ours - theirs).abs().max() <= 1e-4
    back = read_llama_folder(tmp_path / "hf").eval()
    assert (back.config.norm_eps, back.config.rope_base, back.config.rope_pairs) == (1e-5, 500.0, "half")
    with torch.no_grad():
        torch.testing.assert_close(back(ids)[0], ours, atol=1e-5, rtol=0)
    q_rows = model.blocks[0].attn.qkv.weight[:64]
    assert torch.equal(hf.model.layers[0].self_attn.q_proj.weight, q_rows) == (pairs == "half")  # permuted or not


def test_rotary_pairings_differ_and_a_half_llama_reads_back_unpermuted(tmp_path):
    torch.manual_seed(0)
    config = ThinkerConfig(vocab=50, dim=32, layers=1, heads=2, hidden=64, context=32)
    interleaved = ThinkerLM(config).eval()
    half = ThinkerLM(config.model_copy(update={"rope_pairs": "half"})).eval()
    half.load_state_dict(interleaved.state_dict())
    ids = torch.randint(0, 50, (1, 12))
    with torch.no_grad():
        assert (interleaved(ids)[0] - half(ids)[0]).abs().max() > 1e-4  # the same weights rotate other channels
    write_llama_folder(half, tmp_path / "hf")
    back = read_llama_folder(tmp_path / "hf")
    for k, v in half.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_convert_cli_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    model = ThinkerLM(ThinkerConfig(vocab=50, dim=32, layers=1, heads=2, hidden=64, context=32)).eval()
    save_thinker(model, tmp_path / "tiny.safetensors")
    res = runner.invoke(app, ["convert", "to-hf", str(tmp_path / "tiny.safetensors"), "--out", str(tmp_path / "hf")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["convert", "from-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "back.safetensors")])
    assert res.exit_code == 0, res.output
    ids = torch.randint(0, 50, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(load_thinker(tmp_path / "back.safetensors")(ids)[0], model(ids)[0], atol=1e-5, rtol=0)
    res = runner.invoke(app, ["convert", "from-hf", str(tmp_path), "--out", str(tmp_path / "x.safetensors")])
    assert res.exit_code == 2 and "config.json" in res.output
