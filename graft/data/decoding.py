"""Read an image file into a uint8 ``(C, H, W)`` tensor by one policy.

EXIF orientation is applied; alpha is composited onto black (the background of the digits), after
which palette and RGBA images become RGB and grayscale-with-alpha (LA) images become L; 16-bit
images are mapped to 8 bits by bit depth (v / 257).
PIL's decompression-bomb limit stays in force: an image whose header declares more than
``Image.MAX_IMAGE_PIXELS`` pixels is refused before its pixels are read. Truncated files fail
because the pixels are loaded, not only ``verify()``-ed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from graft.data.catalog import IMAGE_SUFFIXES, is_hidden_or_system
from graft.errors import DataError


class UndecodableImage(Exception):
    """The file is not an image graft can use; the message says why in a few words."""


def read_image(path: Path) -> torch.Tensor:
    """Decode ``path`` or raise ``UndecodableImage`` (zero bytes, not an image, truncated, too large)."""
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    # The limit is enforced below from the header, so PIL's own warning would only be noise.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    if path.stat().st_size == 0:
        raise UndecodableImage("zero-byte file")
    try:
        with Image.open(path) as opened:
            width, height = opened.size
            if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
                raise UndecodableImage(
                    f"{width}x{height} pixels exceeds the decompression-bomb limit of {Image.MAX_IMAGE_PIXELS}"
                )
            image = ImageOps.exif_transpose(opened)
            image.load()
    except UnidentifiedImageError:
        raise UndecodableImage("not an image file") from None
    except Image.DecompressionBombError as error:
        raise UndecodableImage(f"decompression bomb ({error})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        reason = "truncated image" if "truncated" in str(error).lower() else f"{type(error).__name__}: {error}"
        raise UndecodableImage(reason) from None
    return _to_tensor(image)


def decode_image_file(path: Path) -> torch.Tensor:
    """Decode ``path``; a file that cannot be used is a ``DataError`` naming it."""
    try:
        return read_image(path)
    except UndecodableImage as error:
        raise DataError(f"{path}: cannot decode image ({error})") from None


def _to_tensor(image) -> torch.Tensor:
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # By bit depth, never by the image's own peak: a dark 16-bit scan stays dark, and the same
        # picture stored with 8 and with 16 bits decodes to the same pixels.
        array = np.clip(np.asarray(image, dtype=np.float64), 0, 65535)
        array = (array / 257.0).round().astype(np.uint8)[..., None]
    else:
        if image.mode in ("P", "PA", "LA", "RGBA"):
            rgba = image.convert("RGBA")
            black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            # Grayscale with alpha has no colour to keep: it stays one channel, as an L image would.
            image = Image.alpha_composite(black, rgba).convert("L" if image.mode == "LA" else "RGB")
        elif image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        array = np.asarray(image, dtype=np.uint8)
        if array.ndim == 2:
            array = array[..., None]
    return torch.from_numpy(np.array(array.transpose(2, 0, 1), copy=True))


def collect_image_files(paths: list[Path]) -> list[Path]:
    """Files given directly, plus image files found (sorted, recursively) in given folders."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(
                    child
                    for child in path.rglob("*")
                    if child.is_file()
                    and child.suffix.lower() in IMAGE_SUFFIXES
                    and not any(is_hidden_or_system(part) for part in child.relative_to(path).parts)
                )
            )
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    return found
