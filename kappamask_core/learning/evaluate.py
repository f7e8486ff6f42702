"""Compare class maps the way the KappaMask paper does.

Per-class Dice (= F1), precision and recall, overall accuracy and the
confusion matrix over clear, cloud shadow, semi-transparent cloud and cloud.
Pixels that are missing or undefined in the reference or in the prediction
are excluded (and counted). Optional merges fold one class into another (e.g.
semi-transparent into cloud, for masks without a thin-cloud class). A class
absent from both maps has no Dice (NaN) and is left out of the mean.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..foundation.classes import CLASS_BY_NAME, CLASSES, MISSING
from ..foundation.errors import InputError
from ..foundation.schemes import PRODUCT_MASKS, UNDEFINED, to_classes
from ..foundation.types import PathLike
from ..io.files import atomic_files, atomic_path
from .kappaset import read_label

EVALUATED = tuple(c for c in CLASSES if c.value != MISSING)  # clear, shadow, semi-transparent, cloud


@dataclass
class Evaluation:
    """A confusion matrix of class maps against labels, with the papers' per-class and overall metrics."""

    confusion: np.ndarray  # (4, 4) pixel counts, rows = reference, columns = prediction
    classes: tuple[str, ...]
    excluded: int = 0
    pairs: list[str] = field(default_factory=list)
    against: str | None = None  # the scheme of another algorithm's mask the reference is: agreement, not accuracy

    @property
    def total(self) -> int:
        return int(self.confusion.sum())

    def per_class(self) -> dict[str, dict[str, float]]:
        cm = self.confusion.astype(np.float64)
        out = {}
        for i, name in enumerate(self.classes):
            tp, fp, fn = cm[i, i], cm[:, i].sum() - cm[i, i], cm[i, :].sum() - cm[i, i]
            out[name] = {
                "dice": 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else np.nan,
                "precision": tp / (tp + fp) if (tp + fp) else np.nan,
                "recall": tp / (tp + fn) if (tp + fn) else np.nan,
                "support": cm[i, :].sum(),
            }
        return out

    def mean(self) -> dict[str, float]:
        rows = self.per_class()
        return {m: float(np.nanmean([r[m] for r in rows.values()])) if any(np.isfinite(r[m]) for r in rows.values())
                else np.nan for m in ("dice", "precision", "recall")}

    @property
    def overall_accuracy(self) -> float:
        return float(np.trace(self.confusion) / self.total) if self.total else np.nan

    def table(self, fmt: str = "markdown") -> str:
        """Rows per class plus the mean, columns Dice / precision / recall in % (the paper's layout)."""
        rows = [(CLASS_BY_NAME[n].title, r["dice"], r["precision"], r["recall"]) for n, r in self.per_class().items()]
        mean = self.mean()
        rows.append(("Mean", mean["dice"], mean["precision"], mean["recall"]))
        pct = lambda v: "" if not np.isfinite(v) else f"{100 * v:.1f}"  # noqa: E731
        overall = "accuracy" if self.against is None else "agreement"
        if fmt == "csv":
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow(["class", "dice_percent", "precision_percent", "recall_percent"])
            writer.writerows([(r[0], pct(r[1]), pct(r[2]), pct(r[3])) for r in rows])
            writer.writerow([f"Overall {overall}", pct(self.overall_accuracy), "", ""])
            return buf.getvalue()
        lines = [] if self.against is None else [
            f"Agreement with the {self.against} mask: another algorithm's classes, not ground truth, so Dice, "
            "precision and recall say how often the two agree per class, not how accurate either is.\n"]
        lines += ["| Class | Dice (%) | Precision (%) | Recall (%) |", "|---|---:|---:|---:|"]
        lines += [f"| {r[0]} | {pct(r[1])} | {pct(r[2])} | {pct(r[3])} |" for r in rows]
        lines.append(f"| Overall {overall} | {pct(self.overall_accuracy)} | | |")
        lines.append(f"\n{self.total} pixels compared; {self.excluded} excluded (missing or undefined).")
        return "\n".join(lines)


def merge_map(merges: dict[str, str] | None) -> np.ndarray:
    """Class value -> value after merges, e.g. {'semi_transparent_cloud': 'cloud'}."""
    lut = np.arange(256, dtype=np.uint8)
    for src, dst in (merges or {}).items():
        if src not in CLASS_BY_NAME or dst not in CLASS_BY_NAME:
            raise InputError(f"unknown class in merge {src}={dst}; classes: {', '.join(CLASS_BY_NAME)}")
        lut[CLASS_BY_NAME[src].value] = CLASS_BY_NAME[dst].value
    return lut


def confusion(reference: np.ndarray, prediction: np.ndarray, reference_scheme: str = "kappamask",
              prediction_scheme: str = "kappamask", merges: dict[str, str] | None = None) -> tuple[np.ndarray, int]:
    if reference.shape != prediction.shape:
        raise InputError(f"reference {reference.shape} and prediction {prediction.shape} differ in shape")
    lut = merge_map(merges)
    ref = lut[_classes(reference, reference_scheme, "reference")]
    pred = lut[_classes(prediction, prediction_scheme, "prediction")]
    usable = (ref != MISSING) & (ref != UNDEFINED) & (pred != MISSING) & (pred != UNDEFINED)
    n = len(EVALUATED)
    idx = (ref[usable].astype(np.int64) - 1) * n + (pred[usable].astype(np.int64) - 1)
    cm = np.bincount(idx, minlength=n * n).reshape(n, n)
    return cm, int((~usable).sum())


def _classes(values: np.ndarray, scheme: str, what: str) -> np.ndarray:
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise InputError(f"the {what} holds {values.dtype} values, not class codes")
    try:
        return to_classes(values, scheme)
    except ValueError as exc:
        raise InputError(f"the {what} is not a class map: {exc}") from None


def evaluate_arrays(pairs: Iterable[tuple[str, np.ndarray, np.ndarray]], reference_scheme: str = "kappamask",
                    prediction_scheme: str = "kappamask", merges: dict[str, str] | None = None) -> Evaluation:
    """``pairs``: iterable of (name, reference array, prediction array)."""
    total = np.zeros((len(EVALUATED),) * 2, np.int64)
    excluded, names = 0, []
    for name, ref, pred in pairs:
        try:
            cm, ex = confusion(np.asarray(ref), np.asarray(pred), reference_scheme, prediction_scheme, merges)
        except InputError as exc:
            raise InputError(f"{name}: {exc}") from None
        total += cm
        excluded += ex
        names.append(name)
    if not names:
        raise InputError("nothing to evaluate: no reference/prediction pairs")
    if not total.sum():
        raise InputError(f"no pixel was compared: all {excluded} pixels are missing or undefined in the reference or "
                         "the prediction (check --reference-scheme and --prediction-scheme)")
    return Evaluation(total, tuple(c.name for c in EVALUATED), excluded, names,
                      reference_scheme if reference_scheme in PRODUCT_MASKS else None)


def read_class_map(path: Path) -> np.ndarray:
    """The class map in ``path`` (GeoTIFF band 1 of one, .npy, .npz holding one array, KappaSet .nc label)."""
    return read_georeferenced_map(path)[0]


def read_georeferenced_map(path: Path):
    """(class map, (CRS, transform) or None where the file has no georeferencing). Files that hold several
    arrays or bands are refused: which one is the map cannot be told."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".nc":  # KappaSet sub-tile: its label variable
        return read_label(path), None
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False), None
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                if len(data.files) != 1:
                    raise InputError(f"{path} holds {len(data.files)} arrays ({', '.join(data.files[:5]) or 'none'}); "
                                     "save the class map alone")
                return data[data.files[0]], None
        import rasterio

        with rasterio.open(path) as ds:
            if ds.count != 1:
                raise InputError(f"{path} has {ds.count} bands; a class map has one")
            georef = (ds.crs, ds.transform) if ds.crs is not None else None
            values = ds.read(1, masked=True)  # the file's nodata value and mask band mark pixels without a class
            if np.ma.is_masked(values):
                return values.astype(np.float32).filled(np.nan), georef  # NaN: missing, never compared
            return np.ma.getdata(values), georef
    except InputError:
        raise
    except Exception as exc:  # numpy and GDAL fail on damaged files in many ways
        raise InputError(f"cannot read class map {path}: {exc}") from None


def check_same_grid(name: str, reference, prediction) -> None:
    """Two georeferenced maps must lie on the same grid: a shifted, reprojected or resampled map would be scored
    pixel by pixel against the wrong ground."""
    if reference is None or prediction is None:
        return
    (ref_crs, ref_transform), (pred_crs, pred_transform) = reference, prediction
    if ref_crs != pred_crs:
        raise InputError(f"{name}: the reference is in {ref_crs.to_string()} and the prediction in "
                         f"{pred_crs.to_string()}; compare maps on the same grid")
    if not ref_transform.almost_equals(pred_transform, precision=1e-6 * max(1.0, abs(ref_transform.a))):
        raise InputError(f"{name}: the reference and the prediction are on different grids (pixel size "
                         f"{abs(ref_transform.a):g} vs {abs(pred_transform.a):g} m, upper-left corner "
                         f"({ref_transform.c:.1f}, {ref_transform.f:.1f}) vs ({pred_transform.c:.1f}, "
                         f"{pred_transform.f:.1f})); compare maps on the same grid")


CLASS_MAP_SUFFIXES = (".tif", ".tiff", ".npy", ".npz", ".nc")


def pair_paths(reference: Path, prediction: Path) -> list[tuple[str, Path, Path]]:
    """Single files, or folders matched by file name (stem)."""
    reference, prediction = Path(reference), Path(prediction)
    for p in (reference, prediction):
        if not p.exists():
            raise InputError(f"{p}: no such file or folder")
    if reference.is_file() and prediction.is_file():
        return [(reference.stem, reference, prediction)]
    if reference.is_dir() and prediction.is_dir():
        refs = {p.stem: p for p in reference.iterdir() if p.suffix.lower() in CLASS_MAP_SUFFIXES}
        preds = {p.stem: p for p in prediction.iterdir() if p.suffix.lower() in CLASS_MAP_SUFFIXES}
        common = sorted(set(refs) & set(preds))
        if not common:
            raise InputError(f"no file names in common between {reference} and {prediction}")
        return [(name, refs[name], preds[name]) for name in common]
    raise InputError("give two files or two folders (pairs are matched by file name)")


def evaluate_paths(reference: PathLike, prediction: PathLike, **kwargs: Any) -> Evaluation:
    """Evaluate class-map files against reference files (two files, or two folders paired by name), checked to
    lie on the same grid; ``kwargs`` as for :func:`evaluate_arrays` (schemes, merges)."""

    def pairs():
        for name, r, p in pair_paths(reference, prediction):
            (ref, ref_grid), (pred, pred_grid) = read_georeferenced_map(r), read_georeferenced_map(p)
            check_same_grid(name, ref_grid, pred_grid)
            yield name, ref, pred

    return evaluate_arrays(pairs(), **kwargs)


def write_confusion_png(evaluation: Evaluation, path, title: str = "") -> Path:
    """Row-normalised confusion matrix (percent of each reference class), as in the paper's Figure 8."""
    with atomic_path(path) as tmp:
        confusion_image(evaluation, title).save(tmp, format="PNG")
    return Path(path)


def write_evaluation(evaluation: Evaluation, folder: PathLike) -> list[Path]:
    """``metrics.md``, ``metrics.csv`` and ``confusion_matrix.png`` in ``folder``, all three or none."""
    folder = Path(folder)
    paths = [folder / "metrics.md", folder / "metrics.csv", folder / "confusion_matrix.png"]
    with atomic_files(*paths) as (markdown, csv_file, png):
        Path(markdown).write_text(evaluation.table("markdown") + "\n")
        Path(csv_file).write_text(evaluation.table("csv") + "\n")
        confusion_image(evaluation).save(png, format="PNG")
    return paths


def confusion_image(evaluation: Evaluation, title: str = ""):
    """The row-normalised confusion matrix as a picture (PIL image)."""
    from PIL import Image, ImageDraw

    cm = evaluation.confusion.astype(np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    pct = np.divide(100 * cm, rows, out=np.zeros_like(cm), where=rows > 0)
    labels = [CLASS_BY_NAME[n].title for n in evaluation.classes]
    cell, left, top = 110, 190, 70
    n = len(labels)
    img = Image.new("RGB", (left + n * cell + 20, top + n * cell + 60), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 10), title or "Confusion matrix (row-normalised, % of reference class)", fill="black")
    draw.text((left, top - 40), "Prediction", fill="black")
    for j, label in enumerate(labels):
        draw.text((left + j * cell + 5, top - 20), label[:18], fill="black")
    for i, label in enumerate(labels):
        draw.text((10, top + i * cell + cell // 2 - 6), label, fill="black")
        for j in range(n):
            shade = int(255 - 2.2 * pct[i, j])
            x0, y0 = left + j * cell, top + i * cell
            draw.rectangle([x0, y0, x0 + cell - 2, y0 + cell - 2], fill=(shade, shade, 255))
            text = f"{pct[i, j]:.1f}%" if rows[i, 0] else "n/a"
            draw.text((x0 + cell // 2 - 18, y0 + cell // 2 - 6), text, fill="black" if pct[i, j] < 60 else "white")
    draw.text((10, top + n * cell + 20), f"Reference rows; {evaluation.total} pixels", fill="black")
    return img
