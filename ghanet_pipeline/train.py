"""Stage `train`: one model of the registry (`models/registry.py`) on one fold.

Reads the fold's training patients and what the model's entry asks for: their patch features (all
slides concatenated), the fold's gene selection (targets for G-HANet, inputs for our SNN), every
omic column or the six families' (MCAT's SNN, MCAT; standardised on the training patients).
Trains for a fixed number of epochs (or, if asked, stops early on an inner validation split of the *training* patients; the scored
fold is never looked at), then scores every patient of the fold. The checkpoint carries what a
later `predict` needs to use the model alone: config, encoder identity, selected features, scaler,
time-bin edges, seed, risk cut-offs and package version.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import __version__, commands, devices, features, models, plots, splits
from .models import build as networks
from .cohort import omic_columns
from .errors import GhanetError
from .io import atomic_path
from .risk import cutoffs_from

log = logging.getLogger("ghanet.train")
CHECKPOINT_FORMAT = "ghanet-pipeline checkpoint 1"
# a fold's bags are kept in memory when they fit in this; otherwise read from disk each step
CACHE_BYTES = 4 << 30


def read_bag(features_dir, slide_ids: list[str], case_id: str, dim: int | None = None) -> tuple:
    """A patient's patch features, all slides concatenated in slide-id order, the first slide's
    attributes (encoder identity) and every slide's attributes."""
    parts, attrs, every = [], {}, []
    for sid in slide_ids:
        feats, _, a = features.read_features(features.feature_path(features_dir, sid))
        if a.get("status") == "failed":  # recorded with cohort.on_slide_error: skip
            continue
        if dim is not None and feats.shape[1] != dim:
            raise GhanetError(f"patient {case_id}: slide {sid} has {feats.shape[1]}-d features, the "
                              f"others {dim}-d; extract every slide with the same encoder")
        dim = feats.shape[1]
        parts.append(feats)
        every.append(a)
        attrs = attrs or a
    bag = np.concatenate(parts) if parts else np.empty((0, dim or 0), np.float32)
    return bag, attrs, every


@dataclass
class Fold:
    """One fold's patients with their labels, targets and inputs, and the fitted preprocessing."""
    fold: int
    table: pd.DataFrame  # index case_id: survival_months, censorship, bin, slide_ids
    train_ids: list[str]
    val_ids: list[str]
    families: dict[str, list[str]]
    scaler: pd.DataFrame  # mean, std per selected feature
    edges: np.ndarray
    omics: pd.DataFrame = field(repr=False)  # standardised selected features per patient
    family_columns: dict[str, list[str]] = field(default_factory=dict)  # every omic column per family
    every_omic: pd.DataFrame | None = field(default=None, repr=False)  # all omic columns, standardised

    @property
    def selected(self) -> list[str]:
        seen: dict[str, None] = {}
        for cols in self.families.values():
            seen.update(dict.fromkeys(cols))
        return list(seen)

    def targets(self, case_id: str) -> list[np.ndarray]:
        row = self.omics.loc[case_id]
        return [row[cols].to_numpy(np.float32) for cols in self.families.values()]

    def omic_vector(self, case_id: str) -> np.ndarray:
        return self.omics.loc[case_id, self.selected].to_numpy(np.float32)

    def all_omics(self, case_id: str) -> np.ndarray:
        return self.every_omic.loc[case_id].to_numpy(np.float32)

    def family_vectors(self, case_id: str) -> list[np.ndarray]:
        row = self.every_omic.loc[case_id]
        return [row[cols].to_numpy(np.float32) for cols in self.family_columns.values()]


def _standardised_on_training(patients: pd.DataFrame, table: pd.DataFrame, train_ids: list[str]) -> pd.DataFrame:
    """Every omic column of the fold's patients, standardised with the training patients' mean and
    sd (ddof 0, as MCAT's StandardScaler and our genes stage; a constant column stays 0)."""
    cols = omic_columns(patients.columns)
    x = patients.loc[table.index, cols].astype(np.float32)
    train = x.loc[train_ids]
    std = train.std(ddof=0).replace(0, 1.0)
    return (x - train.mean()) / std


def load_fold(patients_csv, fold_csv, selection_json, scaler_csv, fold: int, every_omic: bool = False) -> Fold:
    """`every_omic`: also every omic column (the models whose entry reads `omics` or `families`)."""
    patients = splits.read_patients(patients_csv)
    train_ids, val_ids = splits.read_fold(fold_csv)
    selection = json.loads(Path(selection_json).read_text())
    if selection.get("fold", fold) != fold:
        raise GhanetError(f"{selection_json} is the selection of fold {selection['fold']}, not {fold}")
    families = selection["families"]
    scaler = pd.read_csv(scaler_csv, index_col="feature")
    missing = [p for p in train_ids + val_ids if p not in patients.index]
    if missing:
        raise GhanetError(f"fold {fold} names patient {missing[0]}, who is not in {patients_csv}; "
                          "rerun the splits stage")
    edges = np.asarray(selection["bin_edges"], np.float64)
    table = patients.loc[train_ids + val_ids, ["survival_months", "censorship", "slide_ids"]].copy()
    table["bin"] = splits.assign_bins(table["survival_months"], edges)
    table["split"] = ["train"] * len(train_ids) + ["val"] * len(val_ids)
    cols = list(dict.fromkeys(c for cs in families.values() for c in cs))
    omics = (patients.loc[table.index, cols] - scaler.loc[cols, "mean"]) / scaler.loc[cols, "std"]
    # the genes stage records each family's columns; a selection without them: the selected ones
    family_columns = selection.get("family_columns", families)
    every = _standardised_on_training(patients, table, train_ids) if every_omic else None
    return Fold(fold, table, train_ids, val_ids, families, scaler.loc[cols], edges, omics, family_columns, every)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # identical results for a seed on CPU; on a GPU some kernels have no deterministic variant
    torch.use_deterministic_algorithms(True, warn_only=True)


def dims_of(fold: Fold, in_dim: int | None) -> models.Dims:
    return models.Dims(n_bins=len(fold.edges) - 1, in_dim=in_dim or 0,
                       family_dims=tuple(len(c) for c in fold.families.values()), omic_dim=len(fold.selected),
                       family_sizes=tuple(len(c) for c in fold.family_columns.values()),
                       all_omic_dim=0 if fold.every_omic is None else fold.every_omic.shape[1])


class Inputs:
    """Per-patient model inputs, as the model's entry lists them (the forward's arguments). Bags are
    cached in memory when the fold's bags fit in CACHE_BYTES, else read from disk at each use;
    either way the first pass, which checks them, holds one bag at a time."""

    def __init__(self, model_name: str, fold: Fold, features_dir, device, on_problem: str):
        self.model_name, self.fold, self.features_dir, self.device = model_name, fold, features_dir, device
        self.spec = models.spec(model_name)
        self.cache: dict[str, torch.Tensor] = {}
        self.n_patches: dict[str, int] = {}
        self.encoder: dict = {}
        self.slide_settings: dict = {}  # segment, tile, extract sections the features were made with
        self.level0_mpps: set[float] = set()
        self.excluded: list[tuple[str, str]] = []
        self.dim = None
        if not self.spec.reads_slides:
            return
        total = 0
        for case_id, row in fold.table.iterrows():
            bag, attrs, every = read_bag(features_dir, row["slide_ids"].split(";"), case_id, self.dim)
            if len(bag) == 0:
                reason = f"patient {case_id} has no patch in any slide ({row['slide_ids']})"
                if not every:  # every slide failed, and was recorded so (on_slide_error: skip)
                    self.excluded.append((case_id, f"patient {case_id}: no usable slide ({row['slide_ids']} "
                                          "failed; see results/report/slides.csv)"))
                    continue
                if on_problem == "fail":
                    raise GhanetError(f"{reason}; see results/report/slides.csv, or set "
                                      "cohort.on_problem: exclude to leave the patient out")
                self.excluded.append((case_id, reason))
                continue
            self.dim = bag.shape[1]
            self.encoder = self.encoder or {k: attrs[k] for k in (
                "encoder", "weights_sha256", "precision", "dim", "patch_size", "target_mpp") if k in attrs}
            self.slide_settings = self.slide_settings or json.loads(attrs.get("settings", "{}"))
            self.n_patches[case_id] = len(bag)
            self.level0_mpps |= {round(float(a["level0_mpp"]), 4) for a in every if a.get("level0_mpp")}
            total += bag.nbytes
        # kept only when the whole fold fits: filling the cache first and dropping it when the fold
        # turned out larger held CACHE_BYTES for nothing (5 GB peak at 10,000 slides)
        if total <= CACHE_BYTES:
            for case_id in self.n_patches:
                self.cache[case_id] = torch.from_numpy(
                    read_bag(features_dir, fold.table.at[case_id, "slide_ids"].split(";"), case_id, self.dim)[0])
        else:
            log.info("bags of fold %d take %.1f GB: read from disk at each step", fold.fold, total / 1e9)

    def usable(self, ids: list[str]) -> list[str]:
        gone = {c for c, _ in self.excluded}
        return [c for c in ids if c not in gone]

    def bag(self, case_id: str) -> torch.Tensor:
        bag = self.cache.get(case_id)
        if bag is None:
            slides = self.fold.table.at[case_id, "slide_ids"].split(";")
            bag = torch.from_numpy(read_bag(self.features_dir, slides, case_id, self.dim)[0])
        return bag.to(self.device)

    def __call__(self, case_id: str) -> list:
        """The model's forward arguments for this patient."""
        fold, to = self.fold, (lambda a: torch.from_numpy(a).to(self.device))
        args = []
        for kind in self.spec.inputs:
            if kind == "bag":
                args.append(self.bag(case_id))
            elif kind == "selected":
                args.append(to(fold.omic_vector(case_id)))
            elif kind == "omics":
                args.append(to(fold.all_omics(case_id)))
            elif kind == "families":
                args.append([to(v) for v in fold.family_vectors(case_id)])
        return args


def _loss(model_name, out, fold: Fold, case_id, device, recon_weight):
    y = torch.tensor([int(fold.table.at[case_id, "bin"])], device=device)
    c = torch.tensor([float(fold.table.at[case_id, "censorship"])], device=device)
    targets = ([torch.from_numpy(t).to(device) for t in fold.targets(case_id)]
               if models.spec(model_name).targets else [])
    return networks.loss(model_name, out, y, c, targets, recon_weight)


def balanced_order(labels: np.ndarray, n: int, gen: torch.Generator, balanced: bool) -> list[int]:
    """One epoch's patient order: weighted sampling with replacement, each bin x censorship class
    weighted by N / its size (MCAT/G-HANet), or a plain permutation."""
    if not balanced:
        return torch.randperm(n, generator=gen).tolist()
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    weights = torch.as_tensor(n / counts[inverse], dtype=torch.double)
    return torch.multinomial(weights, n, replacement=True, generator=gen).tolist()


def _inner_split(fold: Fold, ids: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    from sklearn.model_selection import train_test_split

    cens = fold.table.loc[ids, "censorship"].to_numpy()
    strat = cens if np.bincount(cens.astype(int)).min() >= 2 else None
    fit, inner = train_test_split(ids, test_size=fraction, random_state=seed, stratify=strat)
    return list(fit), list(inner)


@torch.no_grad()
def _mean_loss(model, model_name, inputs, fold, ids, device, recon_weight) -> float:
    model.eval()
    return float(np.mean([_loss(model_name, model(*inputs(c)), fold, c, device, recon_weight)[0].item()
                          for c in ids]))


def _patch_sample(inputs: Inputs, ids: list[str], seed: int, most: int = 20_000) -> torch.Tensor:
    """At most `most` patches of the training patients, drawn evenly over them (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    per = max(1, most // max(len(ids), 1))
    parts = []
    for case_id in ids:
        bag = inputs.bag(case_id).cpu()
        parts.append(bag[torch.randperm(len(bag), generator=gen)[:per]])
    return torch.cat(parts)


def fit(model_name: str, fold: Fold, inputs: Inputs, params: dict, model_params: dict, device) -> tuple:
    """Train; returns (model, per-epoch log DataFrame, ids trained on)."""
    from tqdm import tqdm

    seed = params["seed"]
    _seed_everything(seed)
    ids = inputs.usable(fold.train_ids)
    inner: list[str] = []
    if params["inner_val_fraction"] > 0:
        ids, inner = _inner_split(fold, ids, params["inner_val_fraction"], seed)
    model = networks.build(model_name, model_params, dims_of(fold, inputs.dim)).to(device)
    if hasattr(model, "fit_phenotypes"):  # DeepAttnMISL: phenotypes from the training patches only
        model.fit_phenotypes(_patch_sample(inputs, ids, seed), seed)
    opt = torch.optim.Adam(model.parameters(), lr=params["lr"], weight_decay=params["weight_decay"])
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=params["epochs"])
             if params["scheduler"] == "cosine" else None)
    gen = torch.Generator().manual_seed(seed)
    labels = (fold.table.loc[ids, "bin"] * 2 + fold.table.loc[ids, "censorship"]).to_numpy()
    accum, seen, rows = params["grad_accum"], 0, []
    best = (np.inf, None, 0)
    opt.zero_grad()
    bar = tqdm(range(params["epochs"]), desc=f"{model_name} fold {fold.fold}", mininterval=2)
    for epoch in bar:
        model.train()
        t0, losses, survs, recons = time.perf_counter(), [], [], []
        for i in balanced_order(labels, len(ids), gen, params["balanced_sampling"]):
            case_id = ids[i]
            out = model(*inputs(case_id))
            total, surv, recon = _loss(model_name, out, fold, case_id, device, params["recon_weight"])
            (total / accum).backward()
            losses.append(total.item())
            survs.append(surv.item())
            recons.append(recon)
            seen += 1
            # a step every `accum` patients, counted across epochs (the official code counts within
            # each epoch and drops the last partial window: a deviation, see the schema)
            if seen % accum == 0:
                opt.step()
                opt.zero_grad()
        if sched is not None:
            sched.step()
        row = {"epoch": epoch + 1, "loss": np.mean(losses), "survival_loss": np.mean(survs),
               "optimizer_steps": seen // accum, "lr": opt.param_groups[0]["lr"],
               "seconds": time.perf_counter() - t0}
        if models.spec(model_name).targets:
            row.update({f"recon_{f}": v for f, v in zip(fold.families, np.mean(recons, axis=0))})
        if inner:
            row["inner_val_loss"] = _mean_loss(model, model_name, inputs, fold, inner, device,
                                               params["recon_weight"])
            if row["inner_val_loss"] < best[0]:
                best = (row["inner_val_loss"], {k: v.clone() for k, v in model.state_dict().items()}, epoch + 1)
            elif epoch + 1 - best[2] >= params["patience"]:
                rows.append(row)
                log.info("early stop at epoch %d: inner validation loss best at epoch %d", epoch + 1, best[2])
                break
        rows.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}")
    if seen % accum:  # the last, partial accumulation window
        opt.step()
        opt.zero_grad()
    history = pd.DataFrame(rows)
    if inner and best[1] is not None:
        model.load_state_dict(best[1])
        history["chosen"] = history["epoch"] == best[2]
    return model, history, ids


@torch.no_grad()
def score(model, model_name: str, fold: Fold, inputs: Inputs, ids: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Risk and hazards per patient (eval mode); for G-HANet also the reconstructions."""
    model.eval()
    rows, recon_rows = [], []
    for case_id in ids:
        out = model(*inputs(case_id))
        haz = out["hazards"][0].cpu().numpy()
        rows.append({"case_id": case_id, "risk": float(out["risk"][0]),
                     **{f"hazard_{j}": float(h) for j, h in enumerate(haz)}})
        if models.spec(model_name).targets and fold.table.at[case_id, "split"] == "val":
            for (family, cols), pred, target in zip(fold.families.items(), out["reconstructions"],
                                                    fold.targets(case_id)):
                recon_rows += [{"case_id": case_id, "family": family, "feature": col, "target": float(t),
                                "predicted": float(p)} for col, t, p in zip(cols, target, pred.cpu().numpy())]
    df = pd.DataFrame(rows).set_index("case_id")
    recon = pd.DataFrame(recon_rows, columns=["case_id", "family", "feature", "target", "predicted"])
    return df, recon


def plot_history(history: pd.DataFrame, title: str, path) -> None:
    plt = plots.pyplot()
    recon_cols = [c for c in history.columns if c.startswith("recon_")]
    fig, axes = plt.subplots(1, 2 if recon_cols else 1, figsize=(11 if recon_cols else 6, 4), squeeze=False)
    ax = axes[0, 0]
    ax.plot(history.epoch, history.loss, "o-", label="total loss (train)")
    ax.plot(history.epoch, history.survival_loss, "s-", label="survival NLL (train)")
    if "inner_val_loss" in history:
        ax.plot(history.epoch, history.inner_val_loss, "^-", label="total loss (inner validation)")
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    ax.legend()
    if recon_cols:
        ax = axes[0, 1]
        for c in recon_cols:
            ax.plot(history.epoch, history[c], label=c[len("recon_"):])
        ax.set(xlabel="epoch", ylabel="(1 - cos)^3 + MSE", title="reconstruction per gene family")
        ax.legend(fontsize=7)
    from matplotlib.ticker import MaxNLocator

    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    fig.tight_layout()
    plots.save_figure(fig, path)


def run(model_name: str, fold_k: int, *, patients_csv, fold_csv, selection_json, scaler_csv,
        features_dir, sections: dict, out_dir, device: str = "auto", threads: int | None = None,
        wants_gpu: bool = True, n_folds: int | None = None, declared_encoder: str | None = None) -> dict:
    """`sections`: the train, model and cohort sections. The checkpoint also records how the
    features were made (read from them; `declared_encoder` names the encoder of imported files that
    carry no name) and the number of folds, so `predict` can process new slides the same way and
    check that every fold is there."""
    spec = models.spec(model_name)
    params, model_params = sections["train"], sections["model"]
    if threads:
        torch.set_num_threads(threads)
    dev = devices.resolve(device, wants_gpu and spec.reads_slides, "train")
    fold = load_fold(patients_csv, fold_csv, selection_json, scaler_csv, fold_k,
                     every_omic=bool({"omics", "families"} & set(spec.inputs)))
    if spec.needs_omics and not fold.families:
        raise GhanetError(f"{model_name} needs omics, and fold {fold_k}'s selection has none (a survival-only "
                          "cohort, or no cohort.signatures); train the slide-only models: train.models: [slide-only]")
    inputs = Inputs(model_name, fold, features_dir, dev, sections["cohort"]["on_problem"])
    t0 = time.perf_counter()
    model, history, trained_on = fit(model_name, fold, inputs, params, model_params, dev)
    seconds = time.perf_counter() - t0
    usable = inputs.usable(list(fold.table.index))
    risks, recon = score(model, model_name, fold, inputs, usable)
    risks.insert(0, "split", fold.table.loc[risks.index, "split"])
    risks.insert(1, "survival_months", fold.table.loc[risks.index, "survival_months"])
    risks.insert(2, "censorship", fold.table.loc[risks.index, "censorship"].astype(int))
    risks.insert(3, "bin", fold.table.loc[risks.index, "bin"])
    risks["n_patches"] = [inputs.n_patches.get(c, 0) for c in risks.index]
    train_risk = risks.loc[risks.split == "train", "risk"]
    cutoffs = cutoffs_from(train_risk)

    out = Path(out_dir)
    checkpoint = {
        "format": CHECKPOINT_FORMAT, "version": __version__, "model": model_name, "fold": fold_k,
        "seed": params["seed"], "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        "model_args": {k: list(v) if isinstance(v, tuple) else v
                       for k, v in dataclasses.asdict(dims_of(fold, inputs.dim)).items()},
        # how the features were made, from their provenance (else as the caller's sections say)
        "config": {**{k: sections[k] for k in ("segment", "tile", "extract") if k in sections},
                   **inputs.slide_settings, "train": sections["train"], "model": sections["model"],
                   "cohort": {**sections["cohort"], **inputs.slide_settings.get("cohort", {})},
                   "splits": {"folds": n_folds or sections["splits"]["folds"]}},
        "encoder": ({"encoder": declared_encoder, "dim": inputs.dim} if declared_encoder and inputs.dim else {}
                    ) | inputs.encoder or None,
        "families": fold.families, "scaler": {"mean": fold.scaler["mean"].to_dict(),
                                              "std": fold.scaler["std"].to_dict()},
        "bin_edges": fold.edges.tolist(), "train_ids": trained_on, "val_ids": fold.val_ids,
        "risk_cutoffs": cutoffs, "excluded": inputs.excluded, "slide_mpps": sorted(inputs.level0_mpps),
    }
    with atomic_path(out / "model.pt") as tmp:
        torch.save(checkpoint, tmp)
    with atomic_path(out / "risks.csv") as tmp:
        risks.to_csv(tmp)
    with atomic_path(out / "reconstruction.csv") as tmp:
        recon.to_csv(tmp, index=False)
    with atomic_path(out / "train_log.csv") as tmp:
        history.to_csv(tmp, index=False)
    with atomic_path(out / "excluded.csv") as tmp:  # patients left out, for the failure summary
        pd.DataFrame(inputs.excluded, columns=["case_id", "reason"]).to_csv(tmp, index=False)
    plot_history(history, f"{model_name}, fold {fold_k}", out / "loss.png")
    log.info("%s fold %d: %d epochs on %d patients in %.1f s on %s; %d held out", model_name, fold_k,
             len(history), len(trained_on), seconds, dev, int((risks.split == "val").sum()))
    return {"seconds": seconds, "epochs": len(history), "n_train": len(trained_on)}


def load_checkpoint(path) -> dict:
    """A checkpoint written by `run`, checked to be one; the model is rebuilt and in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise GhanetError(f"model checkpoint {path} not found; run the train stage for this fold")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise GhanetError(f"model checkpoint {path} unreadable ({exc}); retrain this fold") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise GhanetError(f"{path} is not a ghanet-pipeline checkpoint; retrain this fold")
    a = ckpt["model_args"]
    dims = models.Dims(**{k: tuple(v) if isinstance(v, list) else (v or 0) for k, v in a.items()})
    model = networks.build(ckpt["model"], ckpt["config"]["model"], dims)
    model.load_state_dict(ckpt["state_dict"])
    ckpt["module"] = model.eval()
    return ckpt


# ---------------------------------------------------------------------------- command


def _arguments(p) -> None:
    commands.stage_args(p)
    p.add_argument("--model", required=True, help="ghanet, abmil or snn")
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--patients", required=True, help="patients.csv.gz written by `ghanet splits`")
    p.add_argument("--fold-csv", required=True, help="fold file (train, val columns)")
    p.add_argument("--selection", required=True, help="selection.json written by `ghanet genes`")
    p.add_argument("--scaler", required=True, help="scaler.csv written by `ghanet genes`")
    p.add_argument("--features-dir", required=True, help="folder of per-slide feature files")
    p.add_argument("--manifest", default=None,
                   help="the features' manifest: names the encoder of files that carry none (imported features)")
    p.add_argument("--splits-summary", default=None,
                   help="splits.json written by `ghanet splits` (the number of folds the checkpoint records)")
    p.add_argument("--out-dir", required=True)
    commands.device_args(p)
    p.add_argument("--threads", type=int, default=None, help="torch threads")


def _run(args) -> None:
    n_folds = json.loads(Path(args.splits_summary).read_text())["folds"] if args.splits_summary else None
    run(args.model, args.fold, patients_csv=args.patients, fold_csv=args.fold_csv, selection_json=args.selection,
        scaler_csv=args.scaler, features_dir=args.features_dir,
        declared_encoder=features.declared_encoder(args.manifest) if args.manifest else None,
        sections=commands.sections(args), out_dir=args.out_dir, device=args.device, threads=args.threads,
        wants_gpu=args.gpus > 0, n_folds=n_folds)


COMMANDS = {"train": commands.Command(_arguments, _run)}
