"""Image files to uint8 tensors: one policy for every mode, clear errors for broken files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from graft.data.decoding import collect_image_files, decode_image_file
from graft.errors import DataError


def test_grayscale_png_keeps_one_channel(tmp_path):
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    Image.fromarray(pixels, mode="L").save(tmp_path / "g.png")
    decoded = decode_image_file(tmp_path / "g.png")
    assert decoded.dtype == torch.uint8 and decoded.shape == (1, 8, 8)
    assert torch.equal(decoded[0], torch.from_numpy(pixels))


def test_rgba_is_composited_on_black(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 128  # half transparent red over black
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    decoded = decode_image_file(tmp_path / "a.png")
    assert decoded.shape == (3, 4, 4)
    assert 95 <= int(decoded[0, 0, 0]) <= 105 and int(decoded[1, 0, 0]) == 0


def test_grayscale_with_alpha_is_composited_on_black_and_stays_grayscale(tmp_path):
    la = np.zeros((4, 4, 2), dtype=np.uint8)
    la[..., 0] = 200
    la[..., 1] = 255
    la[0, 0, 1] = 128  # half transparent over black
    la[1, 1, 1] = 0  # fully transparent: black whatever its gray
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    with Image.open(tmp_path / "la.png") as saved:
        assert saved.mode == "LA"
    decoded = decode_image_file(tmp_path / "la.png")
    assert decoded.shape == (1, 4, 4)
    assert int(decoded[0, 2, 2]) == 200 and 95 <= int(decoded[0, 0, 0]) <= 105 and int(decoded[0, 1, 1]) == 0


def test_palette_becomes_rgb(tmp_path):
    image = Image.new("P", (5, 5))
    image.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    image.putpixel((2, 2), 1)
    image.save(tmp_path / "p.png")
    decoded = decode_image_file(tmp_path / "p.png")
    assert decoded.shape == (3, 5, 5) and int(decoded[:, 2, 2].min()) == 255 and int(decoded[:, 0, 0].max()) == 0


def test_sixteen_bit_is_scaled_to_eight(tmp_path):
    pixels = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "s.png")
    decoded = decode_image_file(tmp_path / "s.png")
    assert decoded.shape == (1, 2, 2)
    assert int(decoded[0, 0, 1]) == 255 and int(decoded[0, 0, 0]) == 0 and 120 <= int(decoded[0, 1, 0]) <= 135


def test_exif_orientation_is_applied(tmp_path):
    # A camera JPEG stored 16 high x 32 wide with a bright block in its stored top-left corner;
    # orientation 6 says "rotate 90 degrees clockwise to show", which moves that corner to the top right.
    pixels = np.zeros((16, 32), dtype=np.uint8)
    pixels[:8, :8] = 255
    image = Image.fromarray(pixels, mode="L")
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "r.jpg", exif=exif, quality=100)
    decoded = decode_image_file(tmp_path / "r.jpg")[0].float()
    assert decoded.shape == (32, 16)
    corners = {
        "top right": decoded[:8, -8:], "top left": decoded[:8, :8],
        "bottom left": decoded[-8:, :8], "bottom right": decoded[-8:, -8:],
    }
    means = {name: float(block.mean()) for name, block in corners.items()}
    assert means["top right"] > 240 and all(mean < 15 for name, mean in means.items() if name != "top right"), means


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_broken_files_are_data_errors(tmp_path, content):
    path = tmp_path / "broken.png"
    if content is None:
        Image.new("L", (64, 64), 200).save(path)
        path.write_bytes(path.read_bytes()[:60])  # truncated after the header
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match="broken.png: cannot decode image"):
        decode_image_file(path)


def test_collect_skips_hidden_entries_and_sorts(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / "__MACOSX").mkdir()
    for name in ("b/2.png", "b/1.png", ".ipynb_checkpoints/x.png", "__MACOSX/y.png", ".hidden.png", "b/notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = collect_image_files([tmp_path])
    assert [path.relative_to(tmp_path).as_posix() for path in found] == ["b/1.png", "b/2.png"]
    with pytest.raises(DataError, match="no such file or folder"):
        collect_image_files([tmp_path / "missing"])
