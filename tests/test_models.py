"""The model registry: every entry builds, trains, is evaluated and (if it scores slides alone)
predicts; each new architecture's forward equals a reference computed independently (by hand, in
NumPy); on a cohort whose slides carry the risk, every slide-only model beats chance on held-out
folds."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO, TINY_DEMO, error_line, ghanet_in_process, snakemake, write_config
from ghanet_pipeline import evaluate, formats, genes, models, predict, splits, train
from ghanet_pipeline.models import build as networks
from ghanet_pipeline.config import validate_config
from ghanet_pipeline.errors import GhanetError
from test_train import FAMILIES, TOY_ATTRS, make_fold, sections

MP = {"hidden_dim": 32, "dropout": 0.25, "heads": 2, "head_dim": 8, "topk_ratio": 0.2, "share_attention": True}


def _np(t):
    return t.detach().double().numpy()


def _lin(layer, x):
    return x @ _np(layer.weight).T + _np(layer.bias)


def _relu(x):
    return np.maximum(x, 0)


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _survival(logits):
    h = 1 / (1 + np.exp(-logits))
    return h, -np.cumprod(1 - h).sum()


def _gated(att, h):
    """Attn_Net_Gated in NumPy: c(tanh(a h) * sigmoid(b h))."""
    a = np.tanh(_lin(att.a[0], h))
    b = 1 / (1 + np.exp(-_lin(att.b[0], h)))
    return _lin(att.c, a * b)


def _build(name, in_dim=16, **dims):
    torch.manual_seed(0)
    return networks.build(name, MP, models.Dims(n_bins=4, in_dim=in_dim, **dims)).double().eval()


# ------------------------------------------------------------------ the registry itself


def test_the_registry_is_what_the_schema_and_the_readme_offer():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    train_enum = schema["properties"]["train"]["properties"]["models"]["items"]["enum"]
    assert train_enum == list(models.NAMES) + list(models.SETS)
    assert schema["properties"]["predict"]["properties"]["model"]["enum"] == [
        n for n, s in models.REGISTRY.items() if s.predicts]
    assert schema["properties"]["evaluate"]["properties"]["heatmap_model"]["enum"] == [
        n for n, s in models.REGISTRY.items() if s.attention]
    readme = (REPO / "README.md").read_text()
    for name, s in models.REGISTRY.items():
        assert s.source and s.question and s.group in models.GROUPS
        assert f"`{name}`" in readme, f"the README's comparison table does not name {name}"
    assert len({s.label for s in models.REGISTRY.values()}) == len(models.NAMES)
    assert models.expand(["slide-only", "snn"]) == list(models.SLIDE_ONLY_SET) + ["snn"]
    assert models.expand(["all"]) == list(models.NAMES)
    with pytest.raises(GhanetError, match="unknown model 'clam'; train.models takes ghanet, "):
        models.spec("clam")
    # what each reads decides what can predict, and what needs omics
    assert {n for n, s in models.REGISTRY.items() if not s.predicts} == {"snn", "snn_mcat", "mcat"}
    assert {n for n, s in models.REGISTRY.items() if s.needs_omics} == {"ghanet", "snn", "snn_mcat", "mcat"}


# ------------------------------------------------------------------ forwards against hand computations


def test_deepsets_is_sum_pooling():
    m = _build("deepsets")
    x = np.random.default_rng(0).normal(size=(7, 16))
    h = _relu(_lin(m.phi[0], x)).sum(axis=0)
    want = _lin(m.classifier, _relu(_lin(m.rho[0], h)))
    out = m(torch.from_numpy(x))
    np.testing.assert_allclose(_np(out["logits"])[0], want, rtol=1e-10)
    # sum pooling: the order of the patches does not matter, their number does
    assert torch.allclose(m(torch.from_numpy(x[::-1].copy()))["logits"], out["logits"])
    assert not torch.allclose(m(torch.from_numpy(np.concatenate([x, x])))["logits"], out["logits"])


def test_clam_sb_is_gated_attention_pooling_without_a_rho_layer():
    m = _build("clam_sb")
    x = np.random.default_rng(1).normal(size=(9, 16))
    h = _relu(_lin(m.fc[0], x))
    a = _softmax(_gated(m.attention, h).T, axis=1)
    out = m(torch.from_numpy(x))
    np.testing.assert_allclose(_np(out["morphology_attention"]), a, rtol=1e-10)
    assert _np(out["morphology_attention"]).sum() == pytest.approx(1.0)
    np.testing.assert_allclose(_np(out["logits"]), _lin(m.classifier, a @ h), rtol=1e-10)
    h_np, risk = _survival(_lin(m.classifier, a @ h)[0])
    assert float(out["risk"][0]) == pytest.approx(risk) and np.allclose(_np(out["hazards"])[0], h_np)


def test_dsmil_attends_from_each_outputs_critical_patch():
    m = _build("dsmil")
    x = np.random.default_rng(2).normal(size=(11, 16))
    c = _lin(m.instance, x)  # 11 x 4 instance logits
    crit = c.argmax(axis=0)  # the critical patch of each time bin

    def q(v):
        return np.tanh(_lin(m.q[2], _relu(_lin(m.q[0], v))))
    a = _softmax(q(x) @ q(x[crit]).T / np.sqrt(128), axis=0)  # 11 x 4, columns sum to 1
    b = a.T @ x  # 4 x 16
    w = _np(m.fcc.weight)  # Conv1d(4, 4, kernel 16): out_c = sum_in sum_k w[c, in, k] b[in, k]
    want = np.einsum("oik,ik->o", w, b) + _np(m.fcc.bias)
    out = m(torch.from_numpy(x))
    np.testing.assert_allclose(_np(out["logits"])[0], want, rtol=1e-9)
    np.testing.assert_allclose(_np(out["max_logits"])[0], c.max(axis=0), rtol=1e-10)
    np.testing.assert_allclose(_np(out["morphology_attention"])[0], a.mean(axis=1), rtol=1e-9)
    # its loss: half the bag's NLL, half the max-pooled instances'
    y, cens = torch.tensor([2]), torch.tensor([0.0])
    from ghanet_pipeline.models.survival import survival_outputs, nll_survival_loss
    mx = survival_outputs(out["max_logits"])
    total = networks.loss("dsmil", out, y, cens, [], 0.3)[0]
    assert float(total) == pytest.approx(0.5 * float(nll_survival_loss(out["hazards"], out["survival"], y, cens))
                                         + 0.5 * float(nll_survival_loss(mx["hazards"], mx["survival"], y, cens)))


def test_transmil_squares_the_sequence_with_its_first_patches():
    m = _build("transmil")
    x = torch.from_numpy(np.random.default_rng(3).normal(size=(7, 16)))
    # 7 patches -> a 3 x 3 grid: the first two repeat; the 9-patch bag that spells it out is the same input
    padded = torch.cat([x, x[:2]])
    assert torch.allclose(m(x)["logits"], m(padded)["logits"], atol=1e-12)
    for n in (1, 2, 5, 16, 17):  # perfect squares and not, a single patch
        out = m(torch.from_numpy(np.random.default_rng(n).normal(size=(n, 16))))
        assert out["hazards"].shape == (1, 4) and torch.isfinite(out["risk"]).all()
    assert "morphology_attention" not in m(x)  # no patch attention: no heatmaps (the registry says so)
    assert not models.spec("transmil").attention


@pytest.mark.parametrize("n", [1, 10, 65, 255, 257, 300, 1025])
def test_transmils_attention_is_the_packages_to_rounding(n):
    """TransMIL's Nystrom attention, computed on compressed matrices where the padding allows, gives
    the outputs and gradients of `nystrom_attention.NystromAttention` (the official code's import),
    with the same weights, in training mode (the same dropout draws) and in float64: bags below,
    at and above the 256 landmarks, with many, a few and no all-padding landmarks."""
    from nystrom_attention import NystromAttention as Package

    from ghanet_pipeline.models.transmil import NystromAttention

    kw = dict(dim=64, dim_head=8, heads=8, num_landmarks=256, pinv_iterations=6, residual=True, dropout=0.1)
    torch.manual_seed(n)
    theirs = Package(**kw).double()
    ours = NystromAttention(**kw).double()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, n, 64, dtype=torch.float64)
    grads = []
    for module in (theirs, ours):
        torch.manual_seed(0)
        xi = x.clone().requires_grad_()
        out = module(xi)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        grads.append((out.detach(), xi.grad, [p.grad for p in module.parameters()]))
    (o1, gx1, gp1), (o2, gx2, gp2) = grads
    torch.testing.assert_close(o2, o1, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gx2, gx1, rtol=1e-9, atol=1e-12)
    for a, b in zip(gp2, gp1):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_deepattnmisl_pools_each_phenotype_and_attends_over_them():
    m = _build("deepattnmisl")
    rng = np.random.default_rng(4)
    m.fit_phenotypes(torch.from_numpy(rng.normal(size=(300, 16))), seed=0)
    x = rng.normal(size=(40, 16))
    cents = _np(m.centroids)
    cl = ((x[:, None] - cents[None]) ** 2).sum(-1).argmin(1)  # nearest centroid
    pooled = []
    for k in range(10):
        phi = m.phis[k]
        pooled.append(_relu(_lin(phi[3], _relu(_lin(phi[0], x[cl == k])))).mean(0) if (cl == k).any()
                      else np.zeros(32))
    h = _relu(_lin(m.fc[0], np.stack(pooled)))
    a = _softmax(_gated(m.attention, h).T, axis=1)
    want = _lin(m.classifier, _relu(_lin(m.rho[0], a @ h)))
    out = m(torch.from_numpy(x))
    np.testing.assert_allclose(_np(out["logits"]), want, rtol=1e-9)
    # a patch's attention is its phenotype's weight shared evenly: the sum is the non-empty ones' weight
    att = _np(out["morphology_attention"])[0]
    assert att.sum() == pytest.approx(a[0, np.unique(cl)].sum())
    # the phenotypes are the model's: the same patch goes to the same cluster for every patient
    assert torch.equal(m.clusters(torch.from_numpy(x)), torch.from_numpy(cl))


def test_mcat_co_attends_from_the_six_families_and_reads_them():
    sizes = (5, 4, 3, 6, 2, 7)
    m = _build("mcat", family_sizes=sizes)
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.normal(size=(13, 16)))
    fams = [torch.from_numpy(rng.normal(size=s)) for s in sizes]
    out = m(x, fams)
    co = _np(out["coattention"])
    assert co.shape == (6, 13) and np.allclose(co.sum(axis=1), 1)
    # each family's query, by hand: two SNN blocks; the co-attention is softmax(q k^T / sqrt(w)) of one head
    w = 16
    h_path = _relu(_lin(m.wsi_net[0], _np(x)))
    q_in = []
    for net, f in zip(m.sig_networks, fams):
        v = _np(f)
        for block in net:
            z = _lin(block[0], v)
            v = np.where(z > 0, z, np.expm1(z))  # ELU (alpha-dropout is off in eval)
        q_in.append(v)
    wq, wk = np.split(_np(m.coattn.in_proj_weight), 3)[:2]
    bq, bk = np.split(_np(m.coattn.in_proj_bias), 3)[:2]
    logits = (np.stack(q_in) @ wq.T + bq) @ (h_path @ wk.T + bk).T / np.sqrt(w)
    np.testing.assert_allclose(co, _softmax(logits, axis=1), rtol=1e-8)
    other = m(x, [f + 1 for f in fams])
    assert not torch.allclose(other["logits"], out["logits"])  # it reads the omics
    assert not models.spec("mcat").predicts


def test_mcats_snn_is_four_blocks_on_every_omic_column():
    m = _build("snn_mcat", all_omic_dim=50)
    linears = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(50, 256)] + [(256, 256)] * 3 + [(256, 4)]
    assert all(isinstance(b[2], torch.nn.AlphaDropout) and b[2].p == 0.25 for b in m.net)
    assert all(float(lin.bias.abs().max()) == 0 for lin in linears)  # MCAT's init: zero biases


# ------------------------------------------------------------------ every entry through the real stages


def _train_all(root, names, folds=(0, 1), **overrides):
    """Each fold as the workflow makes it: the split, then the genes stage (its selection, with each
    family's columns for MCAT, and its scaler), then every model."""
    pd.DataFrame({"Oncogenes": ["O1", "O2"], "Tumor Suppressor Genes": ["T1", None]}).to_csv(
        root / "signatures.csv", index=False)
    for k in folds:
        make_fold(root, n=14, fold=k)  # rewrites the fold's split
        genes.run(root / "patients.csv.gz", root / f"fold_{k}.csv", root / "signatures.csv",
                  validate_config({})["genes"], {"n_bins": 2, "fit_on": "train"}, out_dir=root / f"genes_{k}", fold=k)
        for name in names:
            res = train.run(name, k, patients_csv=root / "patients.csv.gz", fold_csv=root / f"fold_{k}.csv",
                            selection_json=root / f"genes_{k}/selection.json",
                            scaler_csv=root / f"genes_{k}/scaler.csv",
                            features_dir=root / "features", sections=sections(**overrides),
                            out_dir=root / "models" / name / f"fold_{k}", device="cpu", threads=1)
            assert res["epochs"] == 3


def test_every_entry_trains_is_evaluated_and_predicts_if_it_can(tmp_path):
    _train_all(tmp_path, models.NAMES)
    dirs = [tmp_path / "models" / n / f"fold_{k}" for n in models.NAMES for k in (0, 1)]
    table = evaluate.run(dirs, {"risk_groups": "median"}, out_dir=tmp_path / "eval")
    # grouped: slide-only, genomics-only, multimodal; each model against G-HANet and ABMIL
    assert list(table.model) == list(models.NAMES)
    assert list(table.group) == ["slide-only"] * 8 + ["genomics-only"] * 2 + ["multimodal"]
    assert table.c_index_mean.notna().all() and (table.folds == 2).all()
    t = table.set_index("model")
    # MCAT reads every column of each family (the genes stage's record), its SNN every omic column
    mcat = torch.load(tmp_path / "models/mcat/fold_0/model.pt", weights_only=False)["model_args"]
    assert mcat["family_sizes"] == [2, 1] and mcat["all_omic_dim"] == 3
    for name in models.NAMES:
        assert name == "ghanet" or np.isfinite(t.at[name, "diff_vs_ghanet"])
        assert name == "abmil" or np.isfinite(t.at[name, "diff_vs_abmil"])
    assert not [c for c in table.columns if c.startswith("diff_vs_") and not c.startswith(("diff_vs_ghanet",
                                                                                            "diff_vs_abmil"))]
    assert t.at["transmil", "model_label"] == "TransMIL"
    for png in ("km.png", "forest.png", "c_index.png"):
        assert (tmp_path / "eval" / png).stat().st_size > 10_000
    # the checkpoint rebuilds the model alone; slide-only entries score a new patient from features
    sheet = pd.DataFrame({"slide_id": ["P00-S1"], "case_id": ["NEW"], "path": [None]})
    for name, s in models.REGISTRY.items():
        if not s.predicts:
            with pytest.raises(GhanetError, match=f"holds {name} models, which need genomics at inference"):
                predict.load_models(tmp_path / "models" / name)
            continue
        ckpts = predict.load_models(tmp_path / "models" / name)
        rows = predict.score(sheet, tmp_path / "features", ckpts)
        assert rows.status.tolist() == ["ok"] and np.isfinite(rows.risk[0]), name
        # the same forward as in training: the fold's risk of that patient, recomputed from the checkpoint
        risks = pd.read_csv(tmp_path / "models" / name / "fold_1/risks.csv", index_col="case_id")
        bag = torch.from_numpy(train.read_bag(tmp_path / "features", ["P00-S1", "P00-S2"], "P00")[0])
        with torch.no_grad():
            assert float(ckpts[1]["module"](bag)["risk"][0]) == pytest.approx(risks.at["P00", "risk"], rel=1e-5)
    # heatmaps need patch attention: a model without any is refused in one line, naming those with it
    proc = ghanet_in_process("heatmaps", "--model", tmp_path / "models/transmil/fold_0/model.pt", "--fold-csv",
                             tmp_path / "fold_0.csv", "--patients", tmp_path / "patients.csv.gz", "--slide-sheet",
                             tmp_path / "none.csv", "--features-dir", tmp_path / "features", "--params", "{}",
                             "--out-dir", tmp_path / "hm")
    assert error_line(proc).endswith(
        f"{tmp_path}/models/transmil/fold_0/model.pt is a transmil model, which gives no patch attention; "
        "heatmaps are drawn by ghanet, ghanet_norecon, abmil, clam_sb, dsmil, deepattnmisl")


def _signal_cohort(root, n=60, dim=16, seed=0):
    """n patients whose slides carry their risk: a share of each bag's patches (the 'tumour') lies
    along one direction, the share and how far out rising with the risk (a share alone is invisible
    to a model that mean-pools each phenotype, as DeepAttnMISL does); survival falls with the risk."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    direction = np.zeros(dim)
    direction[:4] = 1.5
    rows = []
    for i in range(n):
        case, m = f"S{i:03d}", int(rng.integers(20, 60))
        feats = rng.normal(size=(m, dim))
        tumour = rng.random(m) < 1 / (1 + np.exp(-1.5 * risk[i]))
        feats[tumour] += direction * (1 + np.tanh(risk[i]))
        formats.write_features(root / "features" / f"{case}-S1.h5", feats.astype(np.float32), np.zeros((m, 2), int),
                               {}, TOY_ATTRS)
        rows.append({"case_id": case, "survival_months": float(np.exp(3 - risk[i] + rng.normal(0, 0.3))),
                     "censorship": int(rng.random() < 0.25), "slide_ids": f"{case}-S1",
                     "O1_rnaseq": risk[i] + rng.normal(0, .5), "O2_cnv": rng.normal(), "T1_rnaseq": rng.normal()})
    patients = pd.DataFrame(rows).set_index("case_id")
    patients.to_csv(root / "patients.csv.gz", compression="gzip")
    ids = list(patients.index)
    for k in (0, 1):
        val = ids[k::2]
        tr = [c for c in ids if c not in val]
        splits.write_fold(root / f"fold_{k}.csv", tr, val)
    return patients


def test_every_slide_only_model_beats_chance_where_the_slides_carry_the_risk(tmp_path):
    patients = _signal_cohort(tmp_path)
    found = {}
    for k in (0, 1):
        tr, _ = splits.read_fold(tmp_path / f"fold_{k}.csv")
        t = patients.loc[tr]
        edges = splits.fit_bins(t.survival_months, t.censorship, 2, patients.survival_months)
        fold_dir = tmp_path / f"genes_{k}"
        fold_dir.mkdir()
        (fold_dir / "selection.json").write_text(json.dumps({"fold": k, "families": FAMILIES,
                                                             "bin_edges": edges.tolist()}))
        cols = ["O1_rnaseq", "O2_cnv", "T1_rnaseq"]
        pd.DataFrame({"feature": cols, "mean": t[cols].mean().values, "std": t[cols].std(ddof=0).values}
                     ).to_csv(fold_dir / "scaler.csv", index=False)
        for name in models.SLIDE_ONLY_SET:
            out = tmp_path / name / f"fold_{k}"
            train.run(name, k, patients_csv=tmp_path / "patients.csv.gz", fold_csv=tmp_path / f"fold_{k}.csv",
                      selection_json=fold_dir / "selection.json", scaler_csv=fold_dir / "scaler.csv",
                      features_dir=tmp_path / "features", out_dir=out, device="cpu", threads=1,
                      sections=sections(epochs=8, grad_accum=1, lr=2e-3, balanced_sampling=False))
            r = pd.read_csv(out / "risks.csv")
            v = r[r.split == "val"]
            found.setdefault(name, []).append(evaluate.c_index(v.survival_months, v.censorship == 0, v.risk))
    means = {n: float(np.mean(c)) for n, c in found.items()}
    print("held-out C-index, mean of 2 folds:", {n: round(c, 3) for n, c in means.items()})
    assert all(c > 0.65 for c in means.values()), means


# ------------------------------------------------------------------ the workflow


def test_the_workflow_plans_every_entry_and_predicts_with_one_that_can(tmp_path):
    cfg = dict(TINY_DEMO, train=dict(TINY_DEMO["train"], models=["all"]),
               predict={"model": "transmil", "heatmaps": True})
    proc = snakemake(tmp_path, "-n", "-p", configfile=write_config(tmp_path / "config.yaml", cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = [line.split("--model ")[1].split()[0] for line in proc.stdout.splitlines()
               if "-m ghanet_pipeline train " in line]
    assert sorted(trained) == sorted(list(models.NAMES) * 2)
    # the SNNs read no slide (no GPU, no manifest); TransMIL gives no attention: no predict heatmaps
    assert "predict heatmaps skipped: transmil gives no patch attention" in proc.stderr
    pcmd = next(line for line in proc.stdout.splitlines() if "-m ghanet_pipeline predict " in line)
    assert "results/models/transmil" in pcmd and "--heatmaps-dir" not in pcmd
    snn = [line for line in proc.stdout.splitlines() if "--model snn_mcat " in line]
    assert snn and all("--manifest" not in line and "--gpus 0" in line for line in snn)
    cfg["predict"] = {"model": "mcat"}
    proc = snakemake(tmp_path, "-n", configfile=write_config(tmp_path / "config.yaml", cfg))
    assert proc.returncode != 0 and "predict.model" in proc.stdout + proc.stderr
