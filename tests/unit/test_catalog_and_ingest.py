"""Bring your own images: what a folder or manifest holds, its fingerprint, and the decode cache."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from graft.data.catalog import read_catalog
from graft.data.decoding import UndecodableImage, read_image
from graft.data.ingest import Geometry, catalog_fingerprint, decode_catalog
from graft.data.sources import data_fingerprint, decode_spec, load_dataset, to_dataset
from graft.data.splits import split_target
from graft.errors import DataError
from tests.image_cases import declared_size_png, image_folder, noise_pixels, save_image, split_image_folder, write_manifest

GEOMETRY = Geometry(frame_size=28, content_box=20, channels=1)


def relatives(catalog) -> list[str]:
    return sorted(entry.relative for entry in catalog.entries)


# --- ImageFolder ---------------------------------------------------------------------------


def test_flat_image_folder(tmp_path):
    image_folder(tmp_path, {"cat": 2, "dog": 3})
    catalog = read_catalog(tmp_path, "--target t")
    assert catalog.layout == "imagefolder"
    assert catalog.class_names == ["cat", "dog"]
    assert len(catalog.entries) == 5
    assert not catalog.has_predefined_splits
    assert {entry.label for entry in catalog.entries if entry.relative.startswith("dog/")} == {"dog"}
    assert all(entry.path.is_absolute() and entry.path.is_file() for entry in catalog.entries)


def test_image_folder_with_split_folders(tmp_path):
    split_image_folder(tmp_path, {"train": {"a": 3, "b": 3}, "val": {"a": 1, "b": 1}, "test": {"a": 2, "b": 2}})
    catalog = read_catalog(tmp_path, "--target t")
    assert catalog.layout == "imagefolder-splits"
    assert catalog.class_names == ["a", "b"]
    assert catalog.has_predefined_splits
    by_split = {split: sum(entry.split == split for entry in catalog.entries) for split in ("train", "val", "test")}
    assert by_split == {"train": 6, "val": 2, "test": 4}
    assert all(entry.relative.startswith(f"{entry.split}/{entry.label}/") for entry in catalog.entries)


def test_split_folders_without_train_are_refused(tmp_path):
    split_image_folder(tmp_path, {"val": {"a": 1}, "test": {"a": 1}})
    with pytest.raises(DataError, match="no train/"):
        read_catalog(tmp_path, "--target t")


def test_split_folders_mixed_with_class_folders_are_refused(tmp_path):
    image_folder(tmp_path, {"cat": 1})
    split_image_folder(tmp_path, {"train": {"a": 1}})
    with pytest.raises(DataError, match=r"mixes split folders \['train'\] with class folders \['cat'\]"):
        read_catalog(tmp_path, "--target t")


def test_hidden_and_system_entries_never_become_classes_or_images(tmp_path):
    image_folder(tmp_path, {"a": 2, "b": 2})
    pixels = noise_pixels(99)
    for hidden in (
        ".ipynb_checkpoints/x.png",  # a hidden folder at the root would otherwise be a class
        "__MACOSX/a/._0000.png",
        "a/.ipynb_checkpoints/0000-checkpoint.png",
        "a/._0001.png",  # AppleDouble resource fork
        "b/.hidden.png",
        "b/__MACOSX/c.png",
    ):
        save_image(tmp_path / hidden, pixels)
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "a" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "b" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    catalog = read_catalog(tmp_path, "--target t")
    assert catalog.class_names == ["a", "b"]
    assert relatives(catalog) == ["a/0000.png", "a/0001.png", "b/0000.png", "b/0001.png"]


def test_folder_with_only_hidden_entries_is_refused(tmp_path):
    save_image(tmp_path / ".ipynb_checkpoints" / "a" / "x.png", noise_pixels(0))
    save_image(tmp_path / "__MACOSX" / "b" / "y.png", noise_pixels(1))
    (tmp_path / ".DS_Store").write_bytes(b"x")
    with pytest.raises(DataError, match="--target t: no class folders found"):
        read_catalog(tmp_path, "--target t")


def test_non_image_suffixes_are_skipped_and_listed(tmp_path):
    image_folder(tmp_path, {"a": 1, "b": 1})
    (tmp_path / "a" / "notes.txt").write_text("x")
    (tmp_path / "b" / "labels.json").write_text("{}")
    (tmp_path / "README.md").write_text("x")
    save_image(tmp_path / "a" / "upper.PNG", noise_pixels(7))  # suffixes are case-insensitive
    catalog = read_catalog(tmp_path, "--target t")
    assert relatives(catalog) == ["a/0000.png", "a/upper.PNG", "b/0000.png"]
    assert set(catalog.skipped) == {"a/notes.txt", "b/labels.json", "README.md"}


def test_class_folders_without_images_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no image files"):
        read_catalog(tmp_path, "--target t")


def test_symlinked_file_outside_the_root_is_refused_by_name(tmp_path):
    root = tmp_path / "data"
    image_folder(root, {"a": 1, "b": 1})
    secret = save_image(tmp_path / "elsewhere" / "secret.png", noise_pixels(5))
    (root / "a" / "link.png").symlink_to(secret)
    with pytest.raises(DataError, match=r"--target t: a/link\.png leads outside the data folder"):
        read_catalog(root, "--target t")


def test_symlinked_class_folder_outside_the_root_is_refused(tmp_path):
    root = tmp_path / "data"
    image_folder(root, {"a": 1})
    image_folder(tmp_path / "elsewhere", {"b": 1})
    (root / "b").symlink_to(tmp_path / "elsewhere" / "b", target_is_directory=True)
    with pytest.raises(DataError, match=r"--target t: b leads outside the data folder"):
        read_catalog(root, "--target t")


def test_symlinked_subfolder_outside_the_root_is_refused(tmp_path):
    root = tmp_path / "data"
    image_folder(root, {"a": 1, "b": 1})
    image_folder(tmp_path / "elsewhere", {"more": 2})
    (root / "a" / "more").symlink_to(tmp_path / "elsewhere" / "more", target_is_directory=True)
    with pytest.raises(DataError, match=r"a/more leads outside the data folder"):
        read_catalog(root, "--target t")


def test_symlink_inside_the_root_is_allowed(tmp_path):
    image_folder(tmp_path, {"a": 1, "b": 1})
    (tmp_path / "b" / "alias.png").symlink_to(tmp_path / "a" / "0000.png")
    catalog = read_catalog(tmp_path, "--target t")
    assert "b/alias.png" in relatives(catalog)


# --- manifests -----------------------------------------------------------------------------


def _manifest_images(root, count=4):
    return [save_image(root / "img" / f"{index}.png", noise_pixels(index)) for index in range(count)]


def test_csv_manifest_with_relative_paths(tmp_path):
    _manifest_images(tmp_path)
    manifest = write_manifest(
        tmp_path / "m.csv", [("img/0.png", "x"), ("img/1.png", "y"), ("./img/2.png", "x"), ("img/sub/../3.png", "y")], ("path", "label")
    )
    (tmp_path / "img" / "sub").mkdir()
    catalog = read_catalog(manifest, "--target m")
    assert catalog.layout == "manifest" and catalog.class_names == ["x", "y"]
    assert [entry.path for entry in catalog.entries] == [(tmp_path / "img" / f"{i}.png").resolve() for i in range(4)]
    assert not catalog.has_predefined_splits


def test_manifest_paths_are_relative_to_the_manifest_not_the_working_directory(tmp_path, monkeypatch):
    _manifest_images(tmp_path / "data", 2)
    manifest = write_manifest(tmp_path / "data" / "m.csv", [("img/0.png", "x"), ("img/1.png", "y")], ("path", "label"))
    monkeypatch.chdir(tmp_path)
    assert len(read_catalog(manifest, "--target m").entries) == 2


def test_parquet_manifest_with_splits(tmp_path):
    _manifest_images(tmp_path)
    rows = [("img/0.png", "x", "train"), ("img/1.png", "y", "train"), ("img/2.png", "x", "test"), ("img/3.png", "y", "val")]
    catalog = read_catalog(write_manifest(tmp_path / "m.parquet", rows), "--target m")
    assert [(entry.relative, entry.label, entry.split) for entry in catalog.entries] == rows
    assert catalog.has_predefined_splits


def test_manifest_escaping_its_folder_is_refused(tmp_path):
    save_image(tmp_path / "outside.png", noise_pixels(0))
    _manifest_images(tmp_path / "data", 1)
    manifest = write_manifest(tmp_path / "data" / "m.csv", [("img/0.png", "x"), ("../outside.png", "y")], ("path", "label"))
    with pytest.raises(DataError, match=r"--target m row 3: \.\./outside\.png leads outside the data folder"):
        read_catalog(manifest, "--target m")


def test_manifest_absolute_path_is_refused(tmp_path):
    (image,) = _manifest_images(tmp_path, 1)
    manifest = write_manifest(tmp_path / "m.csv", [(str(image), "x")], ("path", "label"))
    with pytest.raises(DataError, match=r"row 2: .*0\.png is absolute"):
        read_catalog(manifest, "--target m")


def test_manifest_missing_column_is_named(tmp_path):
    _manifest_images(tmp_path, 1)
    manifest = write_manifest(tmp_path / "m.csv", [("img/0.png", "x")], ("path", "class"))
    with pytest.raises(DataError, match=r"lacks the column\(s\) label.*found path, class"):
        read_catalog(manifest, "--target m")


def test_manifest_missing_file_is_named_with_its_row(tmp_path):
    _manifest_images(tmp_path, 2)
    manifest = write_manifest(tmp_path / "m.csv", [("img/0.png", "x"), ("img/1.png", "y"), ("img/gone.png", "x")], ("path", "label"))
    with pytest.raises(DataError, match=r"--target m row 4: img/gone\.png does not exist"):
        read_catalog(manifest, "--target m")


def test_manifest_mixing_split_and_unsplit_rows_is_refused(tmp_path):
    _manifest_images(tmp_path, 3)
    rows = [("img/0.png", "x", "train"), ("img/1.png", "y", ""), ("img/2.png", "x", "test")]
    with pytest.raises(DataError, match="some rows have a split and some do not"):
        read_catalog(write_manifest(tmp_path / "m.csv", rows), "--target m")


def test_manifest_unknown_split_name_is_refused(tmp_path):
    _manifest_images(tmp_path, 1)
    with pytest.raises(DataError, match=r"row 2: split 'validation' is not one of train, val, test"):
        read_catalog(write_manifest(tmp_path / "m.csv", [("img/0.png", "x", "validation")]), "--target m")


def test_manifest_row_without_label_is_refused(tmp_path):
    _manifest_images(tmp_path, 2)
    manifest = write_manifest(tmp_path / "m.csv", [("img/0.png", "x"), ("img/1.png", "")], ("path", "label"))
    with pytest.raises(DataError, match=r"row 3: img/1\.png has no label"):
        read_catalog(manifest, "--target m")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (bytes(range(256)) * 8, r"\(ParserError: .*\)"),  # every byte value: the tokenizer gives up first
        (b"\x89PNG\r\n\x1a\n" + bytes(range(128, 256)) * 8, ": it is not UTF-8 text"),  # an image saved as .csv
    ],
    ids=["garbled", "binary"],
)
def test_unreadable_manifest_is_a_data_error(tmp_path, content, reason):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(content)
    with pytest.raises(DataError, match=f"--target m: cannot read the manifest ?{reason}.*must be UTF-8 text with a header row path,label"):
        read_catalog(manifest, "--target m")


def test_unreadable_parquet_manifest_says_what_it_must_be(tmp_path):
    manifest = tmp_path / "m.parquet"
    manifest.write_text("path,label\nimg/0.png,x\n")  # a CSV under a Parquet name
    with pytest.raises(DataError, match="--target m: cannot read the manifest .*must be a Parquet table with the columns path,label"):
        read_catalog(manifest, "--target m")


def test_other_files_are_not_manifests(tmp_path):
    path = save_image(tmp_path / "one.png", noise_pixels(0))
    with pytest.raises(DataError, match="must be a .csv or .parquet manifest"):
        read_catalog(path, "--target m")


# --- fingerprint ---------------------------------------------------------------------------


def _manifest_dataset(tmp_path, labels=("x", "y", "x", "y")):
    _manifest_images(tmp_path, len(labels))
    return write_manifest(tmp_path / "m.csv", [(f"img/{i}.png", label) for i, label in enumerate(labels)], ("path", "label"))


def test_fingerprint_is_stable_across_rescans(tmp_path):
    manifest = _manifest_dataset(tmp_path)
    first = catalog_fingerprint(read_catalog(manifest, "m"))[0]
    os.utime(tmp_path / "img" / "0.png", (1, 1))  # a touched file with the same bytes is the same data
    assert catalog_fingerprint(read_catalog(manifest, "m"), workers=2)[0] == first
    assert data_fingerprint(str(manifest)) == first


def test_fingerprint_follows_one_files_bytes(tmp_path):
    manifest = _manifest_dataset(tmp_path)
    before = data_fingerprint(str(manifest))
    save_image(tmp_path / "img" / "2.png", noise_pixels(1234))
    assert data_fingerprint(str(manifest)) != before


def test_fingerprint_follows_a_label_change(tmp_path):
    manifest = _manifest_dataset(tmp_path)
    before = data_fingerprint(str(manifest))
    write_manifest(manifest, [(f"img/{i}.png", label) for i, label in enumerate(("x", "y", "y", "y"))], ("path", "label"))
    assert data_fingerprint(str(manifest)) != before


def test_fingerprint_follows_a_split_change(tmp_path):
    _manifest_images(tmp_path, 2)
    manifest = write_manifest(tmp_path / "m.csv", [("img/0.png", "x", "train"), ("img/1.png", "y", "train")])
    before = data_fingerprint(str(manifest))
    write_manifest(manifest, [("img/0.png", "x", "train"), ("img/1.png", "y", "test")])
    assert data_fingerprint(str(manifest)) != before


# --- decoding policy -----------------------------------------------------------------------


def _palette(path):
    image = Image.new("P", (6, 4))
    image.putpalette([0, 0, 0, 250, 10, 10] + [0] * 762)
    image.putpixel((1, 1), 1)
    image.save(path)


def _transparent_palette(path):
    image = Image.new("P", (6, 4))
    image.putpalette([0, 0, 0, 250, 10, 10] + [0] * 762)
    image.putpixel((1, 1), 1)
    image.info["transparency"] = 0
    image.save(path, transparency=0)


@pytest.mark.parametrize(
    ("name", "write", "shape"),
    [
        ("gray.png", lambda p: save_image(p, noise_pixels(0, 6)[:4]), (1, 4, 6)),
        ("rgb.png", lambda p: save_image(p, noise_pixels(0, 6, 3)[:4]), (3, 4, 6)),
        ("rgb.jpg", lambda p: save_image(p, noise_pixels(0, 6, 3)[:4], quality=95), (3, 4, 6)),
        ("rgba.png", lambda p: save_image(p, noise_pixels(0, 6, 4)[:4]), (3, 4, 6)),
        ("palette.png", _palette, (3, 4, 6)),
        ("palette-transparent.png", _transparent_palette, (3, 4, 6)),
        ("gray16.png", lambda p: Image.fromarray((noise_pixels(0, 6)[:4].astype(np.uint16) * 257)).save(p), (1, 4, 6)),
        ("gray.bmp", lambda p: save_image(p, noise_pixels(0, 6)[:4]), (1, 4, 6)),
        ("gray.tif", lambda p: save_image(p, noise_pixels(0, 6)[:4]), (1, 4, 6)),
        ("rgb.webp", lambda p: save_image(p, noise_pixels(0, 6, 3)[:4], lossless=True), (3, 4, 6)),
    ],
)
def test_decoded_shapes_follow_the_policy(tmp_path, name, write, shape):
    path = tmp_path / name
    write(path)
    decoded = read_image(path)
    assert decoded.dtype == torch.uint8 and tuple(decoded.shape) == shape


@pytest.mark.parametrize("brightest", [255, 200, 10])
def test_sixteen_bit_maps_by_bit_depth_not_by_the_images_own_maximum(tmp_path, brightest):
    """The same picture stored with 8 and with 16 bits decodes to the same pixels.

    A 16-bit value v is v/257 in 8 bits whatever else is in the image: a dark 16-bit scan must
    stay dark, and two exposures of one scene must not be stretched to the same contrast.
    """
    pixels = (noise_pixels(3, 6).astype(np.uint32) * brightest // 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "g8.png")
    Image.fromarray(pixels.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    eight = read_image(tmp_path / "g8.png")[0].numpy().astype(int)
    sixteen = read_image(tmp_path / "g16.png")[0].numpy().astype(int)
    assert np.abs(sixteen - eight).max() <= 1, (pixels.max(), sixteen.max())


def test_dark_sixteen_bit_image_stays_dark(tmp_path):
    Image.fromarray(np.array([[0, 200], [100, 50]], dtype=np.uint16)).save(tmp_path / "dark16.png")
    decoded = read_image(tmp_path / "dark16.png")
    assert decoded.shape == (1, 2, 2) and int(decoded.max()) <= 1  # 200 of 65535 is black in 8 bits


def test_transparent_palette_pixels_become_black(tmp_path):
    _transparent_palette(tmp_path / "p.png")
    decoded = read_image(tmp_path / "p.png")
    assert decoded[:, 0, 0].tolist() == [0, 0, 0]
    assert decoded[:, 1, 1].tolist() == [250, 10, 10]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.write_bytes(b""), "zero-byte file"),
        (lambda p: p.write_text("hello, I am text"), "not an image file"),
        (lambda p: declared_size_png(p, 100_000, 100_000), "decompression bomb"),
        (lambda p: declared_size_png(p, 10_000, 10_000), "exceeds the decompression-bomb limit"),
    ],
)
def test_undecodable_files_say_why(tmp_path, make, reason):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(UndecodableImage, match=reason):
        read_image(path)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_files_fail_although_verify_passes(tmp_path, suffix):
    path = save_image(tmp_path / f"t{suffix}", noise_pixels(0, 64, 3), **({"quality": 95} if suffix == ".jpg" else {}))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    if suffix == ".jpg":
        with Image.open(path) as opened:
            opened.verify()  # JPEG's verify() does not read the scan: only loading finds the cut
    with pytest.raises(UndecodableImage, match="truncated"):
        read_image(path)


def test_bomb_limit_follows_pil_setting(tmp_path, monkeypatch):
    path = save_image(tmp_path / "big.png", noise_pixels(0, 40))
    read_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    # Between the limit and twice the limit PIL only warns: graft refuses the file itself.
    with pytest.raises(UndecodableImage, match="40x40 pixels exceeds the decompression-bomb limit of 1000"):
        read_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(UndecodableImage, match="decompression bomb"):
        read_image(path)


# --- decode cache and parallel decoding ------------------------------------------------------


def test_second_decode_comes_from_the_cache_and_is_equal(tmp_path):
    image_folder(tmp_path / "data", {"a": 3, "b": 3})
    catalog = read_catalog(tmp_path / "data", "t")
    first = decode_catalog(catalog, GEOMETRY, tmp_path / "cache", workers=1)
    second = decode_catalog(read_catalog(tmp_path / "data", "t"), GEOMETRY, tmp_path / "cache", workers=1)
    assert not first.from_cache and second.from_cache
    assert second.fingerprint == first.fingerprint
    assert torch.equal(second.images[:], first.images[:]) and torch.equal(second.labels, first.labels)
    assert torch.equal(second.split_codes, first.split_codes)
    assert second.records == first.records and second.class_names == first.class_names
    assert first.images.shape == (6, 1, 28, 28)


def test_cache_is_keyed_by_geometry(tmp_path):
    image_folder(tmp_path / "data", {"a": 2, "b": 2})
    decode_catalog(read_catalog(tmp_path / "data", "t"), GEOMETRY, tmp_path / "cache")
    other = decode_catalog(read_catalog(tmp_path / "data", "t"), Geometry(32, 24, 3), tmp_path / "cache")
    assert not other.from_cache and other.images.shape == (4, 3, 32, 32)


def test_a_changed_file_misses_the_cache(tmp_path):
    files = image_folder(tmp_path / "data", {"a": 3, "b": 3})
    first = decode_catalog(read_catalog(tmp_path / "data", "t"), GEOMETRY, tmp_path / "cache")
    save_image(files[4], noise_pixels(4321))
    second = decode_catalog(read_catalog(tmp_path / "data", "t"), GEOMETRY, tmp_path / "cache")
    assert not second.from_cache and second.fingerprint != first.fingerprint
    assert torch.equal(second.images[:4], first.images[:4]) and not torch.equal(second.images[4], first.images[4])
    assert torch.equal(second.images[5], first.images[5])


def test_a_corrupt_cache_index_is_a_miss(tmp_path):
    image_folder(tmp_path / "data", {"a": 2, "b": 2})
    first = decode_catalog(read_catalog(tmp_path / "data", "t"), GEOMETRY, tmp_path / "cache")
    (index_file,) = (tmp_path / "cache").rglob("*.index.json")
    index_file.write_bytes(b"PK\x03\x04 this is not an index")
    second = decode_catalog(read_catalog(tmp_path / "data", "t"), GEOMETRY, tmp_path / "cache")
    assert torch.equal(second.images[:], first.images[:]) and second.records == first.records
    third = decode_catalog(read_catalog(tmp_path / "data", "t"), GEOMETRY, tmp_path / "cache")
    assert third.from_cache  # the damaged file was replaced


def test_failed_files_get_records_but_no_image(tmp_path):
    image_folder(tmp_path / "data", {"a": 2, "b": 2})
    (tmp_path / "data" / "a" / "empty.png").write_bytes(b"")
    (tmp_path / "data" / "b" / "text.png").write_text("nope")
    decoded = decode_catalog(read_catalog(tmp_path / "data", "t"), GEOMETRY, None)
    assert len(decoded.records) == 6 and len(decoded.images) == 4 and decoded.labels.tolist() == [0, 0, 1, 1]
    assert {record.path: record.error for record in decoded.failed} == {"a/empty.png": "zero-byte file", "b/text.png": "not an image file"}
    good = [record for record in decoded.records if not record.error][0]
    assert good.width == 8 and good.height == 8 and good.channels == 1 and len(good.pixel_sha256) == 64 and good.pixel_std > 0


def test_load_dataset_refuses_a_source_with_undecodable_files(tmp_path):
    image_folder(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "a" / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"--source .*: 1 file\(s\) cannot be decoded: a/empty\.png: zero-byte file"):
        load_dataset(str(tmp_path), "source", 28, 20, 1)


def test_load_dataset_refuses_a_single_class(tmp_path):
    image_folder(tmp_path, {"only": 3})
    with pytest.raises(DataError, match="only one class"):
        load_dataset(str(tmp_path), "source", 28, 20, 1)


def test_parallel_decoding_matches_serial(tmp_path):
    root = tmp_path / "data"
    for index in range(1100):  # at least MIN_FILES_FOR_PROCESSES, so worker processes really start
        pixels = noise_pixels(index)
        if index % 97 == 0:
            (root / f"c{index % 3}").mkdir(parents=True, exist_ok=True)
            (root / f"c{index % 3}" / f"{index:05d}.png").write_bytes(b"")  # failures must keep their place
            continue
        save_image(root / f"c{index % 3}" / f"{index:05d}.png", pixels)
    catalog = read_catalog(root, "t")
    serial = decode_catalog(catalog, GEOMETRY, None, workers=1)
    parallel = decode_catalog(catalog, GEOMETRY, None, workers=2)
    assert len(serial.records) == 1100 and len(serial.failed) == 12
    assert serial.fingerprint == parallel.fingerprint
    assert torch.equal(serial.images, parallel.images)
    assert torch.equal(serial.labels, parallel.labels)
    assert serial.records == parallel.records


# --- predefined splits -----------------------------------------------------------------------


def _split_dataset(tmp_path, counts):
    split_image_folder(tmp_path / "data", counts)
    decoded = decode_spec(str(tmp_path / "data"), "target", GEOMETRY)
    return decoded, to_dataset(decoded, "t")


def _paths(decoded, indices):
    good = [record for record in decoded.records if not record.error]
    return sorted(good[index].path for index in indices.tolist())


def test_split_target_keeps_predefined_splits(tmp_path):
    decoded, dataset = _split_dataset(
        tmp_path, {"train": {"a": 6, "b": 6}, "val": {"a": 2, "b": 2}, "test": {"a": 3, "b": 3}}
    )
    splits = split_target(dataset, val_fraction=0.5, test_fraction=0.5, labels_per_class=2, split_seed=0, budget_seed=0)
    assert all(path.startswith("val/") for path in _paths(decoded, splits.indices["val"]))
    assert len(splits.indices["val"]) == 4
    assert all(path.startswith("test/") for path in _paths(decoded, splits.indices["test"]))
    assert len(splits.indices["test"]) == 6
    train, unlabeled = _paths(decoded, splits.indices["train"]), _paths(decoded, splits.indices["unlabeled"])
    assert len(train) == 4 and len(unlabeled) == 8
    assert all(path.startswith("train/") for path in train + unlabeled)


def test_split_target_carves_a_missing_val_split_out_of_train(tmp_path):
    decoded, dataset = _split_dataset(tmp_path, {"train": {"a": 10, "b": 10}, "test": {"a": 3, "b": 3}})
    splits = split_target(dataset, val_fraction=0.2, test_fraction=0.4, labels_per_class=None, split_seed=0, budget_seed=0)
    val = _paths(decoded, splits.indices["val"])
    assert 1 <= len(val) <= 8 and all(path.startswith("train/") for path in val)  # 20 % of 20 by content key
    assert _paths(decoded, splits.indices["test"]) == sorted(p for p in (r.path for r in decoded.records) if p.startswith("test/"))
    assert len(splits.indices["train"]) == 20 - len(val)
    everything = torch.cat([splits.indices[name] for name in ("train", "unlabeled", "val", "test")])
    assert sorted(everything.tolist()) == list(range(26))


def test_split_target_carves_missing_val_and_test(tmp_path):
    decoded, dataset = _split_dataset(tmp_path, {"train": {"a": 10, "b": 10}})
    splits = split_target(dataset, val_fraction=0.1, test_fraction=0.3, labels_per_class=None, split_seed=0, budget_seed=0)
    sizes = {name: len(splits.indices[name]) for name in ("train", "val", "test")}
    assert sum(sizes.values()) == 20 and all(size >= 2 for size in sizes.values())  # every class in every split
    for name in ("val", "test"):
        assert set(splits.labels(name).tolist()) == {0, 1}
