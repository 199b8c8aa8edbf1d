"""A small generated cohort in exactly MCAT's TCGA layout, as users download it: CLAM's feature
tensors in `pt_files/` (one per slide, named by the slide_id without `.svs`), MCAT's zipped table
`dataset_csv/tcga_blca_all_clean.csv.zip` (one row per slide, TCGA barcodes), its
`splits/5foldcv/tcga_blca/splits_0..4.csv` (an index column, then `train`, `val` case ids) and
`signatures.csv`. Outcomes and omics are the demo's (planted hazard); the features carry the same
programs, so the models have something to learn.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ghanet_pipeline import demo

STUDY = "tcga_blca"
DIM = 1024  # CLAM's truncated ResNet-50


def _barcode(case: str) -> str:
    n = int(case.split("-")[1])
    return f"TCGA-{'ABCDEFGHJK'[n % 10]}{n // 10}-A{n:03d}"


def _slide_name(barcode: str, j: int) -> str:
    uid = hashlib.sha1(f"{barcode}-{j}".encode()).hexdigest().upper()
    return f"{barcode}-01Z-00-DX{j + 1}.{uid[:8]}-{uid[8:12]}-{uid[12:16]}-{uid[16:20]}-{uid[20:32]}.svs"


def write(root, patients: int = 20, seed: int = 0, folds: int = 5) -> dict:
    """The layout under `root`; returns its paths."""
    from sklearn.model_selection import KFold

    root = Path(root)
    clinical, signatures = demo.clinical_table(patients, seed)
    clinical["case_id"] = clinical["case_id"].map(_barcode)
    clinical["slide_id"] = [_slide_name(c, j) for c, j in zip(clinical.case_id, clinical.groupby("case_id").cumcount())]
    clinical["site"] = [c.split("-")[1] for c in clinical.case_id]

    pt_dir = root / "pt_files"
    pt_dir.mkdir(parents=True)
    rng = np.random.default_rng([seed, 11])
    z = demo._latents(patients, seed)  # the programs behind the planted outcomes
    loadings = rng.normal(0, 1, (z.shape[1], DIM)).astype(np.float32)
    case_index = {c: i for i, c in enumerate(dict.fromkeys(clinical.case_id))}
    for case, slide in zip(clinical.case_id, clinical.slide_id):
        n = int(rng.integers(30, 80))
        programs = rng.dirichlet(z[case_index[case]] * 8 + 0.1, size=n).astype(np.float32)
        feats = programs @ loadings + rng.normal(0, 0.5, (n, DIM)).astype(np.float32)
        torch.save(torch.from_numpy(np.maximum(feats, 0)), pt_dir / f"{slide[:-len('.svs')]}.pt")

    table_dir = root / "dataset_csv"
    table_dir.mkdir()
    table = table_dir / f"{STUDY}_all_clean.csv.zip"
    with zipfile.ZipFile(table, "w", zipfile.ZIP_DEFLATED) as z_:
        z_.writestr(f"{STUDY}_all_clean.csv", clinical.to_csv(index=False))
    sig = root / "signatures.csv"
    signatures.to_csv(sig, index=False)

    split_dir = root / "splits" / "5foldcv" / STUDY
    split_dir.mkdir(parents=True)
    cases = np.array(list(case_index))
    for k, (tr, va) in enumerate(KFold(folds, shuffle=True, random_state=seed).split(cases)):
        n = max(len(tr), len(va))
        pd.DataFrame({"train": pd.Series(cases[tr]).reindex(range(n)),
                      "val": pd.Series(cases[va]).reindex(range(n))}).to_csv(split_dir / f"splits_{k}.csv")
    return {"pt_files": pt_dir, "clinical": table, "signatures": sig, "split_dir": split_dir,
            "slides": list(clinical.slide_id), "cases": list(cases)}
