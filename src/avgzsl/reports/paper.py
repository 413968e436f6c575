"""The MFT paper's published numbers (Tables 2-5), S / U / HM / ZSL in percent, per dataset.

Source: "An Audio-visual Generalized Zero-Shot Learning Method Based on Multimodal Fusion Transformer"
(2025). Table 2 rows marked † in the paper ran on CLIP/CLAP features (the ClipClap-GZSL setting).
`table_rows` says which of our runs stands for each row (`avgzsl reproduce` runs them).
"""
from __future__ import annotations

DATASETS = ("vggsound", "ucf", "activitynet")
DATASET_TITLES = {"vggsound": "VGGSound-GZSL", "ucf": "UCF-GZSL", "activitynet": "ActivityNet-GZSL"}
METRICS = ("seen", "unseen", "hm", "zsl")
METRIC_TITLES = {"seen": "S", "unseen": "U", "hm": "HM", "zsl": "ZSL"}


def _row(*v):
    """12 numbers in the paper's column order: VGGSound S U HM ZSL, UCF ..., ActivityNet ..."""
    return {ds: dict(zip(METRICS, v[4 * i:4 * i + 4])) for i, ds in enumerate(DATASETS)}


MFT = _row(31.63, 13.37, 18.80, 13.97, 72.52, 47.12, 57.12, 48.56, 42.58, 25.66, 32.02, 27.88)

TABLE2 = {  # method -> (registry name or None, clip/clap setting, numbers)
    "DeViSE": ("devise", False, _row(36.22, 1.07, 2.08, 5.59, 55.59, 14.94, 23.56, 16.09, 3.45, 8.53, 4.91, 8.53)),
    "ALE": ("ale", False, _row(0.28, 5.48, 0.53, 5.48, 57.59, 14.89, 23.66, 16.32, 2.63, 7.87, 3.94, 7.90)),
    "SJE": ("sje", False, _row(48.33, 1.10, 2.15, 4.06, 63.10, 16.77, 26.50, 18.93, 4.61, 7.04, 5.57, 7.08)),
    "f-VAEGAN-D2": ("fvaegan", False, _row(12.77, 0.95, 1.77, 1.91, 17.29, 8.47, 11.37, 11.11, 4.36, 2.14, 2.87, 2.40)),
    "APN": ("apn", False, _row(7.48, 3.88, 5.11, 4.49, 28.46, 16.16, 20.61, 16.44, 9.84, 5.76, 7.27, 6.34)),
    "CJME": ("cjme", True, _row(11.96, 5.41, 7.45, 6.84, 48.18, 17.68, 25.87, 20.46, 16.06, 9.13, 11.64, 9.92)),
    "AVGZSLNet": ("avgzslnet", True, _row(13.02, 2.88, 4.71, 5.44, 56.26, 34.37, 42.67, 35.66, 14.81, 11.11, 12.70, 12.39)),
    "AVCA": ("avca", True, _row(32.47, 6.81, 11.26, 8.16, 34.90, 38.67, 36.69, 38.67, 24.04, 19.88, 21.76, 20.88)),
    "TCAF": ("tcaf", False, _row(12.63, 6.72, 8.77, 7.41, 67.14, 40.83, 50.78, 44.64, 30.12, 7.65, 12.20, 7.96)),
    "AVFS": ("avfs", False, _row(15.62, 6.00, 8.67, 7.31, 54.57, 36.94, 44.06, 41.55, 14.41, 8.91, 11.01, 9.15)),
    "Hyper-multiple": ("hyper_avca", True, _row(21.99, 8.12, 11.87, 8.47, 43.52, 39.77, 41.56, 40.28, 20.52, 21.30, 20.90, 22.18)),
    "KDA": ("kda", False, _row(13.30, 7.74, 9.78, 8.32, 75.88, 42.97, 54.84, 52.66, 37.55, 10.25, 17.95, 11.85)),
    "STFT": ("stft", False, _row(11.74, 8.83, 10.08, 8.79, 61.42, 43.81, 51.14, 49.74, 25.12, 9.83, 14.13, 9.46)),
    "ClipClap-GZSL": ("clipclap", True, _row(29.68, 11.12, 16.18, 11.53, 77.14, 43.91, 55.97, 46.96, 45.98, 20.06, 27.93, 22.76)),
    "MFT": ("mft", True, MFT),
}

TABLE3 = {
    "w/o attention": _row(25.87, 10.47, 14.91, 10.69, 74.36, 43.89, 55.20, 45.28, 40.85, 20.97, 27.71, 22.51),
    "MFT": MFT,
}

TABLE4 = {
    "l - l_cos": _row(34.45, 11.84, 17.63, 12.84, 56.88, 38.61, 46.00, 39.79, 32.88, 24.32, 27.96, 24.92),
    "l - l_kl": _row(31.04, 11.59, 16.88, 11.91, 78.42, 35.46, 48.84, 37.27, 40.58, 24.24, 30.35, 26.05),
    "l": MFT,
}

TABLE5 = {
    "audio only": _row(16.24, 9.78, 12.21, 9.91, 55.23, 34.10, 42.25, 39.02, 10.71, 7.72, 8.97, 8.31),
    "visual only": _row(15.51, 6.81, 9.47, 7.91, 54.92, 43.23, 48.38, 46.17, 33.22, 23.52, 27.54, 24.21),
    "both": MFT,
}

TITLES = {2: "Table 2: comparison with earlier methods", 3: "Table 3: attention ablation",
          4: "Table 4: loss ablation (l = full loss)", 5: "Table 5: input modalities"}

# the ablation tables' rows -> the variant key of the run that stands for it (the MFT variants of
# src/avgzsl/reproduce.py); Table 2's rows are the registry names of TABLE2
ABLATION_ROWS = {3: [("w/o attention", "mft-no-attention"), ("MFT", "mft")],
                 4: [("l - l_cos", "mft-no-cos"), ("l - l_kl", "mft-no-kl"), ("l", "mft")],
                 5: [("audio only", "mft-audio"), ("visual only", "mft-video"), ("both", "mft")]}


def table_rows(table: int, registered: list[str]) -> list[tuple[str, str | None]]:
    """[(row label in the paper, variant key, or None where that method is not implemented)]."""
    if table == 2:
        rows = []
        for label, (name, _, _) in TABLE2.items():
            rows.append((label, name if name in registered else None))
        return rows
    return ABLATION_ROWS[table]
