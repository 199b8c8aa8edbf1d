import numpy as np
import openslide
import pytest

from conftest import SMALL
from ghanet_pipeline import demo


def test_demo_slides_are_real_pyramids_with_mpp(demo_cohort):
    out, sheet = demo_cohort
    assert len(sheet) >= 4 and sheet.case_id.nunique() == 4
    for path in sheet.path:
        s = openslide.OpenSlide(path)
        assert s.level_count >= 3
        assert float(s.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.5, rel=1e-3)
        assert s.dimensions == (SMALL["width"], SMALL["height"])


def test_demo_looks_like_he(demo_cohort):
    out, sheet = demo_cohort
    s = openslide.OpenSlide(sheet.path[0])
    rgb = np.asarray(s.read_region((0, 0), 1, s.level_dimensions[1]).convert("RGB")).astype(int)
    white = (rgb.min(axis=2) > 225).mean()
    pink = ((rgb[..., 0] > 190) & (rgb[..., 1] < 190) & (rgb[..., 2] > 160)).mean()
    assert 0.3 < white < 0.9, "mostly white glass"
    assert pink > 0.05, "pink (eosin) tissue"


def test_demo_is_deterministic(tmp_path):
    size = dict(width=1024, height=1024, mpp=0.5)  # small: the point is equality, not looks
    a = demo.write_cohort(tmp_path / "a", 4, seed=7, **size)
    b = demo.write_cohort(tmp_path / "b", 4, seed=7, **size)
    for pa, pb in zip(a.path, b.path):
        ra = np.asarray(openslide.OpenSlide(pa).read_region((0, 0), 0, (1024, 1024)))
        rb = np.asarray(openslide.OpenSlide(pb).read_region((0, 0), 0, (1024, 1024)))
        assert np.array_equal(ra, rb)
    for name in ("clinical.csv", "signatures.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    same, other = demo.clinical_table(4, seed=7)[0], demo.clinical_table(4, seed=8)[0]
    assert same.equals(demo.clinical_table(4, seed=7)[0]) and not other.equals(same)


def test_clinical_table_is_mcat_format_with_planted_association():
    clinical, signatures = demo.clinical_table(200, seed=0)
    assert list(clinical.columns[:8]) == ["case_id", "slide_id", "site", "is_female", "oncotree_code",
                                          "age", "survival_months", "censorship"]
    assert set(clinical.censorship) <= {0, 1} and (clinical.survival_months > 0).all()
    assert any(c.endswith("_rnaseq") for c in clinical) and any(c.endswith("_cnv") for c in clinical)
    assert list(signatures.columns) == list(demo.FAMILIES)
    pat = clinical.drop_duplicates("case_id").reset_index(drop=True)
    z = demo._latents(200, 0)
    # planted: first genes of family 1 (oncogenes) follow the tumour program; later genes are noise
    onc = signatures[demo.FAMILIES[1]]
    r_signal = np.corrcoef(pat[f"{onc[0]}_rnaseq"], z[:, 0])[0, 1]
    r_noise = np.corrcoef(pat[f"{onc[10]}_rnaseq"], z[:, 0])[0, 1]
    assert r_signal > 0.6 and abs(r_noise) < 0.25
    # hazard: more tumour -> shorter survival among events
    ev = pat.censorship == 0
    assert np.corrcoef(z[ev.values, 0], np.log(pat.survival_months[ev]))[0, 1] < -0.2


def test_the_slide_list_is_numpys_draws_without_numpy():
    # the Snakefile plans the demo without numpy; the draws must be the generator's own
    from ghanet_pipeline.demo_plan import _random_floats

    for seed in (0, 3, 6, 2**40 + 7):
        draws = _random_floats([seed, 1])
        assert [next(draws) for _ in range(40)] == list(np.random.default_rng([seed, 1]).random(40))
