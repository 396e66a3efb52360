import numpy as np
import pydantic
import pytest
import soundfile as sf
import torch
from PIL import Image

from th1nker.errors import DataError
from th1nker.omni.audio import AudioConfig, AudioEncoder, LogMel, load_wav, save_wav
from th1nker.omni.vision import Projector, ViT, ViTConfig, load_image




@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def test_vit_outputs_cls_and_patches():
    vit = ViT(ViTConfig(image_size=32, patch=8, dim=32, layers=1, heads=2, hidden=64))
    out = vit(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 1 + 16, 32)
    assert Projector(32, 48)(out).shape == (2, 17, 48)
    with pytest.raises(ValueError):
        vit(torch.randn(1, 3, 16, 16))
    with pytest.raises(pydantic.ValidationError):
        ViTConfig(patches=4)


def test_default_vit_shape():
    assert ViT()(torch.randn(1, 3, 64, 64)).shape == (1, 65, 128)


def test_load_image_resizes_and_normalises(tmp_path):
    path = tmp_path / "red.png"
    Image.new("RGB", (30, 20), (255, 0, 0)).save(path)
    image = load_image(path, 16)
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert torch.allclose(image[0], torch.ones(16, 16))
    assert torch.allclose(image[1:], -torch.ones(2, 16, 16))
    gray = tmp_path / "gray.png"
    Image.new("L", (8, 8), 128).save(gray)
    assert load_image(gray, 8).shape == (3, 8, 8)


def test_load_image_rejects_bad_files(tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="corrupt.png"):
        load_image(corrupt, 16)
    with pytest.raises(DataError, match="missing.png"):
        load_image(tmp_path / "missing.png", 16)


def test_load_wav_downmixes_stereo(tmp_path):
    path = tmp_path / "stereo.wav"
    stereo = np.stack([np.full(1600, 0.5), np.full(1600, -0.1)], axis=1).astype("float32")
    sf.write(path, stereo, 16000, subtype="FLOAT")
    wave = load_wav(path)
    assert wave.shape == (1600,) and torch.allclose(wave, torch.full((1600,), 0.2))


def test_load_wav_resamples(tmp_path):
    path = tmp_path / "8k.wav"
    t = np.arange(8000) / 8000
    sf.write(path, (0.5 * np.sin(2 * np.pi * 440 * t)).astype("float32"), 8000)
    wave = load_wav(path, sample_rate=16000)
    assert wave.shape == (16000,)
    assert 0.4 < wave.abs().max() < 0.6


def test_load_wav_rejects_empty_and_unreadable(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype="float32"), 16000)
    with pytest.raises(DataError, match="empty.wav"):
        load_wav(empty)
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio")
    with pytest.raises(DataError, match="junk.wav"):
        load_wav(junk)


def test_save_wav_round_trip(tmp_path):
    wave = torch.sin(torch.linspace(0, 100, 4000)) * 0.3
    save_wav(tmp_path / "out.wav", wave, 16000)
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]
    assert torch.allclose(load_wav(tmp_path / "out.wav"), wave, atol=1e-4)


def test_logmel_is_100_hz_and_masks_padding():
    logmel = LogMel()
    wave = torch.randn(2, 24000) * 0.1
    mel, frames = logmel(wave, torch.tensor([24000, 8000]))
    assert mel.shape == (2, 151, 80)  # 1.5 s -> 150 hops + 1 centred frame
    assert frames.tolist() == [151, 51]
    assert (mel[1, 51:] == 0).all() and mel[1, :51].abs().sum() > 0
    changed = wave.clone()
    changed[1, 8000:] = torch.randn(16000)
    assert torch.equal(logmel(changed, torch.tensor([24000, 8000]))[0], mel)
    assert logmel(torch.randn(16000))[0].shape == (1, 101, 80)


def small_audio_encoder() -> AudioEncoder:
    return AudioEncoder(AudioConfig(n_mels=80, dim=32, layers=2, heads=2, hidden=64)).eval()


def test_audio_encoder_strides_by_8_and_shrinks_the_mask():
    encoder = small_audio_encoder()
    mel = torch.randn(3, 200, 80)
    tokens, mask = encoder(mel, torch.tensor([200, 77, 8]))
    assert tokens.shape == (3, 25, 32)
    assert mask.sum(1).tolist() == [25, 10, 1]
    assert (tokens[~mask] == 0).all()
    assert AudioEncoder()(torch.randn(1, 100, 80))[0].shape == (1, 13, 128)


def test_padding_never_changes_real_audio_tokens():
    logmel, encoder = LogMel(), small_audio_encoder()
    wave = torch.randn(2, 16000) * 0.1
    lengths = torch.tensor([16000, 6000])
    mel, frames = logmel(wave, lengths)
    tokens, mask = encoder(mel, frames)
    changed = wave.clone()
    changed[1, 6000:] = torch.randn(10000)
    tokens2, mask2 = encoder(*logmel(changed, lengths))
    assert torch.equal(mask, mask2)
    assert torch.allclose(tokens[mask], tokens2[mask], atol=1e-6)
    # A padded utterance encodes like the same frames alone.
    alone, _ = encoder(mel[1:, :frames[1]], frames[1:])
    assert torch.allclose(alone[0], tokens[1, :alone.shape[1]], atol=1e-5)
