"""Read an image file into a uint8 ``(C, H, W)`` tensor by one policy.

EXIF orientation is applied; palette and grayscale-with-alpha images become RGB or L; 16-bit
images are scaled to 8 bits; alpha is composited onto black (the background of the digits).
PIL's decompression-bomb limit stays in force.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from graft.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def decode_image_file(path: Path) -> torch.Tensor:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: cannot decode image ({type(error).__name__}: {error})") from None
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = array.max() if array.max() > 255 else 255.0
        array = (array / max(peak, 1) * 255.0).round().astype(np.uint8)[..., None]
    else:
        if image.mode in ("P", "PA", "LA", "RGBA"):
            rgba = image.convert("RGBA")
            black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            image = Image.alpha_composite(black, rgba).convert("RGB")
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
                    and not any(part.startswith(".") or part == "__MACOSX" for part in child.relative_to(path).parts)
                )
            )
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    return found
