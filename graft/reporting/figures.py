"""Training curves and confusion matrices as matplotlib figures (Agg, no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def training_curves(history: list[dict], title: str) -> Figure:
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(9, 3.4))
    epochs = [record["epoch"] for record in history]
    loss_axis.plot(epochs, [r["train_loss"] for r in history], label="train")
    loss_axis.plot(epochs, [r["val_loss"] for r in history], label="validation")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("cross-entropy")
    accuracy_axis.plot(epochs, [r["train_accuracy"] for r in history], label="train")
    accuracy_axis.plot(epochs, [r["val_accuracy"] for r in history], label="validation")
    accuracy_axis.set_xlabel("epoch")
    accuracy_axis.set_ylabel("accuracy")
    accuracy_axis.set_ylim(0, 1.01)
    for boundary in [r["epoch"] for prev, r in zip(history, history[1:]) if r["phase"] != prev["phase"]]:
        for axis in (loss_axis, accuracy_axis):
            axis.axvline(boundary - 0.5, color="grey", linestyle=":", linewidth=1)
    accuracy_axis.legend(loc="lower right")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def confusion_matrix_figure(matrix: list[list[int]], class_names: list[str], title: str) -> Figure:
    size = max(3.5, 0.45 * len(class_names) + 1.5)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(class_names)), class_names, rotation=45 if len(class_names) > 10 else 0)
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    peak = max(max(row) for row in matrix) if matrix else 0
    for row_index, row in enumerate(matrix):
        for column_index, value in enumerate(row):
            if value:
                colour = "white" if value > peak / 2 else "black"
                axis.text(column_index, row_index, str(value), ha="center", va="center", fontsize=8, color=colour)
    figure.colorbar(image, ax=axis, fraction=0.046)
    axis.set_title(title)
    figure.tight_layout()
    return figure


def champion_history_figure(versions: list[str], accuracies: list[float | None], champion: list[float | None], promoted: list[bool]) -> Figure:
    """Test accuracy of each registered version, and of the champion after each decision, across target versions."""
    figure, axis = plt.subplots(figsize=(7, 3.2))
    positions = list(range(len(versions)))
    axis.step(positions, [float("nan") if value is None else value for value in champion], where="post", label="champion", color="tab:green")
    axis.scatter(
        positions, [float("nan") if value is None else value for value in accuracies],
        c=["tab:green" if flag else "tab:grey" for flag in promoted], zorder=3, label="version trained (green: promoted)",
    )
    axis.set_xticks(positions, [f"v{version}" for version in versions])
    axis.set_xlabel("registered version (one per target data version)")
    axis.set_ylabel("test accuracy")
    axis.legend(loc="lower right")
    figure.tight_layout()
    return figure
