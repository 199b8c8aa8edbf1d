"""A synthetic cohort that exercises the whole pipeline on a laptop CPU.

Each patient has a latent mix z of three tissue programs (tumour, immune, stroma). z sets
  * the area of each texture on the patient's slides,
  * the expression of a few genes in some of the six gene families (the rest are noise),
  * the hazard (tumour raises it, immune infiltration lowers it).
So a slide-only model can learn risk, and a model that reconstructs genomics from the slide has
something real to reconstruct. Slides are pyramidal tiled JPEG TIFFs with microns-per-pixel
metadata, drawn to look like H&E: white glass, several tissue pieces (one small), lumina (holes),
a pen mark and dust.

`plan()` gives the slide list without drawing anything, so the workflow knows its jobs before the
cohort exists. Everything is a function of (patients, seed).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import tifffile

from .commands import Command
from .demo_plan import plan, plan_new, plan_validation  # the slide lists, which the Snakefile also reads
from .io import atomic_path

log = logging.getLogger("ghanet")

PROGRAMS = ("tumour", "immune", "stroma")
FAMILIES = (
    "Tumor Suppressor Genes",
    "Oncogenes",
    "Protein Kinases",
    "Cell Differentiation Markers",
    "Transcription Factors",
    "Cytokines and Growth Factors",
)
GENES_PER_FAMILY = 12
# (family index, program index, loading): which genes carry the planted signal
PLANTED = ((0, 1, 1.0), (1, 0, 1.2), (3, 2, 1.0), (5, 1, 0.9))
# per program: nucleus count per mm^2, radius (um) range, elongation, H&E colours (RGB)
NUCLEI = {
    "tumour": dict(density=15000, radius=(3.5, 6.5), elong=1.4, colour=(105, 60, 150)),
    "immune": dict(density=12000, radius=(2.2, 3.2), elong=1.05, colour=(62, 32, 105)),
    "stroma": dict(density=1500, radius=(1.5, 2.2), elong=3.5, colour=(120, 75, 160)),
}
CYTOPLASM = {"tumour": (218, 150, 200), "immune": (226, 166, 206), "stroma": (240, 178, 204)}
BACKGROUND = (243, 242, 246)


def _latents(patients: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 2]).dirichlet((1.0, 1.0, 1.0), size=patients)


def _new_latents(new_patients: int, seed: int) -> np.ndarray:
    # a stream of their own: the number of new patients changes nothing of the training cohort
    return np.random.default_rng([seed, 7]).dirichlet((1.0, 1.0, 1.0), size=new_patients)


def _validation_latents(patients: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 8]).dirichlet((1.0, 1.0, 1.0), size=patients)


def _survival(z: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """(months, censorship) from the planted hazard: exponential survival, uniform censoring."""
    log_hazard = _log_hazard(z) + rng.normal(0, 0.3, len(z))
    event_time = rng.exponential(30.0 * np.exp(-log_hazard))
    censor_time = rng.uniform(6, 90, len(z))
    return np.minimum(event_time, censor_time), (censor_time < event_time).astype(int)  # 1 = censored (MCAT)


def _log_hazard(z: np.ndarray) -> np.ndarray:
    """The hazard's dependence on the programs: tumour up, immune down (before patient noise)."""
    return 1.6 * z[:, 0] - 1.6 * z[:, 1]


# ---------------------------------------------------------------------------- tables


def clinical_table(patients: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """MCAT-format clinical-genomic table (one row per slide) and the signatures table."""
    rng = np.random.default_rng([seed, 3])
    z = _latents(patients, seed)
    months, censorship = _survival(z, rng)  # hazard: tumour up, immune down

    genes = {f: [f"{_abbrev(f)}{k + 1:02d}" for k in range(GENES_PER_FAMILY)] for f in FAMILIES}
    patient_cols: dict[str, np.ndarray] = {}
    for fi, family in enumerate(FAMILIES):
        for gi, gene in enumerate(genes[family]):
            expr = rng.normal(0, 1, patients)
            for pf, prog, loading in PLANTED:
                if pf == fi and gi < 4:  # the first four genes of a planted family carry z
                    expr = expr + loading * 3.0 * (z[:, prog] - 1 / 3) / 0.24
            patient_cols[f"{gene}_rnaseq"] = np.round(expr, 4)
    for fi, family in enumerate(FAMILIES):
        for gene in genes[family][:3]:
            cnv = rng.choice([-1, 0, 0, 0, 1], patients).astype(float)
            if fi == 1:  # oncogene amplification follows the tumour program
                cnv = cnv + (z[:, 0] > 0.5)
            patient_cols[f"{gene}_cnv"] = cnv

    rows = []
    for s in plan(patients, seed):
        i = int(s.case_id.split("-")[1])
        row = {
            "case_id": s.case_id,
            "slide_id": s.slide_id,
            "site": "DM",
            "is_female": int(rng.random() < 0.3),
            "oncotree_code": "BLCA",
            "age": int(rng.integers(45, 85)),
            "survival_months": round(float(months[i]), 2),
            "censorship": int(censorship[i]),
            "train": 1,
        }
        row.update({k: v[i] for k, v in patient_cols.items()})
        rows.append(row)
    clinical = pd.DataFrame(rows)
    longest = max(len(v) for v in genes.values())
    signatures = pd.DataFrame(
        {f: genes[f] + [""] * (longest - len(genes[f])) for f in FAMILIES}
    )
    return clinical, signatures


def _abbrev(family: str) -> str:
    return "".join(w[0] for w in family.split()).upper()


# ---------------------------------------------------------------------------- slides


def _smooth_noise(rng, shape, scale_px: float) -> np.ndarray:
    """Zero-mean unit-variance noise with features about `scale_px` pixels wide."""
    small = (max(2, int(shape[0] / scale_px) + 2), max(2, int(shape[1] / scale_px) + 2))
    field = cv2.resize(rng.normal(0, 1, small).astype(np.float32), (shape[1], shape[0]),
                       interpolation=cv2.INTER_CUBIC)
    return (field - field.mean()) / (field.std() + 1e-6)


def _blob(rng, shape, centre, radii, angle, wobble) -> np.ndarray:
    """Filled irregular ellipse on a map of `shape`."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = xx - centre[0], yy - centre[1]
    u, v = (c * dx + s * dy) / radii[0], (-s * dx + c * dy) / radii[1]
    theta = np.arctan2(v, u)
    # radius modulated by a few random harmonics: lobed, natural-looking outlines
    r = np.ones_like(theta)
    for k in (2, 3, 5):
        r += wobble / k * rng.uniform(-1, 1) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    return (u * u + v * v) < r * r


def _layout(rng, map_shape, map_um: float, z: np.ndarray):
    """Low-resolution maps: tissue (bool), holes, program id, plus pen stroke and dust (map px)."""
    h, w = map_shape
    tissue = np.zeros(map_shape, bool)
    holes = np.zeros(map_shape, bool)
    n_large = int(rng.integers(2, 4))
    centres = []
    for k in range(n_large):
        cx = (k + 0.5) / n_large * w + rng.uniform(-0.08, 0.08) * w
        cy = rng.uniform(0.35, 0.65) * h
        radii = (rng.uniform(0.12, 0.18) * w / n_large * 2.2, rng.uniform(0.18, 0.25) * h)
        tissue |= _blob(rng, map_shape, (cx, cy), radii, rng.uniform(0, math.pi), 0.35)
        centres.append((cx, cy, radii))
        # lumina: holes of 60-160 um diameter inside the piece
        for _ in range(int(rng.integers(1, 4))):
            # a lumen never eats most of its piece
            d_um = min(rng.uniform(70, 170), 0.6 * min(radii) * map_um)
            hx = cx + rng.uniform(-0.4, 0.4) * radii[0]
            hy = cy + rng.uniform(-0.4, 0.4) * radii[1]
            rr = d_um / 2 / map_um
            holes |= _blob(rng, map_shape, (hx, hy), (rr * 1.3, rr), rng.uniform(0, math.pi), 0.15)
    # one small piece (~0.03-0.06 mm^2): CLAM's default area filter drops pieces like it
    d_um = rng.uniform(180, 260)
    pen_top = rng.random() < 0.5
    sx, sy = rng.uniform(0.05, 0.95) * w, (0.9 if pen_top else 0.1) * h
    tissue |= _blob(rng, map_shape, (sx, sy), (d_um / 2 / map_um,) * 2, 0.0, 0.2)
    holes &= tissue
    # program map: each texture's share of the tissue area follows z
    fields = np.stack([_smooth_noise(rng, map_shape, 300 / map_um) for _ in PROGRAMS])
    program = np.argmax(fields + 2.0 * np.log(z + 1e-3)[:, None, None], axis=0).astype(np.uint8)
    # pen: a thick curve near an edge of the glass, crossing background
    t = np.linspace(0, 1, 40)
    y0 = rng.uniform(0.06, 0.12) * h if pen_top else rng.uniform(0.88, 0.94) * h
    pen_pts = np.stack([0.1 * w + 0.6 * w * t, y0 + 0.04 * h * np.sin(6 * t + rng.uniform(0, 6))], 1)
    pen_colour = [(35, 70, 170), (30, 120, 60), (30, 30, 35)][int(rng.integers(0, 3))]
    # dust: small dark specks of 8-30 um anywhere on the glass
    dust = [(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(4, 15) / map_um) for _ in range(25)]
    return tissue, holes, program, (pen_pts, pen_colour), dust


def slide_layout(seed: int, width: int, height: int, mpp: float, z: np.ndarray):
    """The random layout of one slide (also the segmentation ground truth, see `truth_masks`)."""
    rng = np.random.default_rng(seed)
    m = max(1, int(round(4.0 / mpp)))  # layout map: ~4 um per map pixel
    map_shape = (math.ceil(height / m), math.ceil(width / m))
    return rng, m, _layout(rng, map_shape, m * mpp, np.asarray(z, float))


def truth_masks(layout, m: int, mpp: float) -> dict:
    """Ground truth on the layout map: tissue (holes excluded), holes, pen ink."""
    tissue, holes, _, (pen_pts, _), _ = layout
    pen = np.zeros(tissue.shape, np.uint8)
    pts = np.round(pen_pts * 16).astype(np.int32)
    cv2.polylines(pen, [pts], False, 1, max(1, int(120 / mpp / m)), cv2.LINE_8, shift=4)
    return {"tissue": tissue & ~holes, "holes": holes, "pen": pen.astype(bool), "m": m}


def _first_argmax(maps: list[np.ndarray]) -> np.ndarray:
    """np.argmax(np.stack(maps), axis=0) as uint8 (ties to the first map), without the stack."""
    best, idx = maps[0], np.zeros(maps[0].shape, np.uint8)
    for k, m in enumerate(maps[1:], 1):
        idx[m > best] = k
        best = np.maximum(best, m)
    return idx


def _mix(weights: list[np.ndarray], colours: list) -> np.ndarray:
    """sum(w * colour) over the programs: the same float32 sums in the same order, in place."""
    out = weights[0] * colours[0]
    term = np.empty_like(out)
    for w, c in zip(weights[1:], colours[1:]):
        np.add(out, np.multiply(w, c, out=term), out=out)
    return out


def render_slide(path: Path, *, width: int, height: int, mpp: float, z: np.ndarray, seed: int,
                 jpeg_quality: int = 88, aperio: bool = False) -> None:
    """Draw one H&E-like slide and write it as a pyramidal tiled TIFF (atomically), or as an
    Aperio SVS does (`aperio`)."""
    rng, m, layout = slide_layout(seed, width, height, mpp, z)
    tissue, holes, program, (pen_pts, pen_colour), dust = layout
    map_shape = tissue.shape
    # soft (blurred) maps give smooth outlines once upsampled, instead of map-pixel staircases
    soft_tissue = cv2.GaussianBlur((tissue & ~holes).astype(np.float32), (0, 0), 1.0)
    soft_prog = [cv2.GaussianBlur((program == k).astype(np.float32), (0, 0), 1.5)
                 for k in range(len(PROGRAMS))]
    image = np.empty((height, width, 3), np.uint8)
    grain = np.repeat(rng.normal(0, 5, (512, 512, 1)).astype(np.float32), 3, axis=2)  # one per channel: no broadcast
    strip = 1024
    for y0 in range(0, height, strip):
        y1 = min(height, y0 + strip)
        my0, my1 = y0 // m, min(map_shape[0], math.ceil(y1 / m) + 1)
        sub_h = y1 - y0

        def up(a):
            big = cv2.resize(a[my0:my1], (map_shape[1] * m, (my1 - my0) * m),
                             interpolation=cv2.INTER_LINEAR)
            return big[y0 - my0 * m: y0 - my0 * m + sub_h, :width]

        t_frac = up(soft_tissue)
        weights = [up(w_k) for w_k in soft_prog]
        prog = _first_argmax(weights)
        # fibre texture: stretched noise, strongest in stroma
        fib = cv2.resize(rng.normal(0, 1, (max(2, sub_h // 24), max(2, width // 4))).astype(np.float32),
                         (width, sub_h), interpolation=cv2.INTER_LINEAR)
        fibre = fib * np.where(prog == 2, 9.0, 4.0)
        alpha = np.clip((t_frac - 0.3) / 0.4, 0, 1)
        glass = 1 - alpha
        # one colour channel at a time: the same float32 operations per pixel as on H x W x 3
        # arrays, without NumPy's slow broadcasting over a last axis of 3
        block = np.empty((sub_h, width, 3), np.uint8)
        for c in range(3):
            cyto = _mix(weights, [np.float32(CYTOPLASM[name][c]) for name in PROGRAMS])
            cyto += fibre
            block[..., c] = np.clip(alpha * cyto + glass * np.float32(BACKGROUND[c]), 0, 255)

        # nuclei: Poisson per program over the strip, kept where that program's tissue is
        area_mm2 = sub_h * width * (mpp / 1000) ** 2
        for k, name in enumerate(PROGRAMS):
            spec = NUCLEI[name]
            n = rng.poisson(spec["density"] * area_mm2 * float(np.mean(prog == k)) * 1.3 + 1)
            xs = rng.uniform(0, width, n)
            ys = rng.uniform(0, sub_h, n)
            xi, yi = xs.astype(int), ys.astype(int)
            keep = (prog[yi, xi] == k) & (t_frac[yi, xi] > 0.6)
            radii = rng.uniform(*spec["radius"], n)[keep] / mpp
            angles = rng.uniform(0, 180, n)[keep]
            shade = rng.uniform(0.8, 1.15, n)[keep]
            # every nucleus's colour, axes and centre at once (the same float64 products and
            # truncations as one at a time); only the drawing is a loop
            colours = np.clip(np.asarray(spec["colour"], np.float32)[None, :] * shade[:, None], 0, 255).astype(int)
            long_axis = np.maximum(1, (radii * spec["elong"] ** 0.5).astype(int))
            short_axis = np.maximum(1, (radii / spec["elong"] ** 0.5).astype(int))
            for x, y, ax0, ax1, a, colour in zip(xs[keep].astype(int).tolist(), ys[keep].astype(int).tolist(),
                                                 long_axis.tolist(), short_axis.tolist(), angles.tolist(),
                                                 colours.tolist()):
                cv2.ellipse(block, (x, y), (ax0, ax1), a, 0, 360, colour, -1, cv2.LINE_AA)

        # pen ink and dust, drawn in level-0 pixels with this strip's offset
        ink = np.zeros((sub_h, width), np.uint8)
        pts = np.round((pen_pts * m - [0, y0]) * 16).astype(np.int32)
        cv2.polylines(ink, [pts], False, 255, max(2, int(120 / mpp)), cv2.LINE_AA, shift=4)
        rows, cols = np.nonzero(ink.any(axis=1))[0], np.nonzero(ink.any(axis=0))[0]
        if len(rows):  # where the ink is 0 the blend gives the pixel back unchanged
            box = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
            a_ink = (ink[box].astype(np.float32) / 255 * 0.85)[..., None]
            block[box] = (block[box] * (1 - a_ink) + np.asarray(pen_colour, np.float32) * a_ink).astype(np.uint8)
        for dx, dy, dr in dust:
            cv2.circle(block, (int(dx * m), int(dy * m - y0)), max(1, int(dr * m)), (70, 68, 66), -1,
                       cv2.LINE_AA)

        gy = np.arange(y0, y1) % 512
        noise = grain[gy][:, np.arange(width) % 512]
        image[y0:y1] = np.clip(block.astype(np.float32) + noise, 0, 255)

    write_pyramid(path, image, mpp, jpeg_quality, aperio=aperio)


def write_pyramid(path: Path, image: np.ndarray, mpp: float | None, jpeg_quality: int = 88,
                  aperio: bool = False) -> None:
    """Tiled JPEG TIFF, 4x downsampled levels down to ~512 px (at least 3 levels), mpp in the
    resolution tags (None writes none, like an export that lost its metadata). `aperio`: the
    layout Aperio's scanners write: 240 px tiles of RGB-coded JPEG (photometric RGB, no YCbCr
    conversion) and the resolution in an Aperio ImageDescription, which OpenSlide reads as SVS."""
    levels = [image]
    while min(levels[-1].shape[:2]) > 512 * 4 or len(levels) < 3:
        prev = levels[-1]
        levels.append(cv2.resize(prev, (max(1, prev.shape[1] // 4), max(1, prev.shape[0] // 4)),
                                 interpolation=cv2.INTER_AREA))
    with atomic_path(path) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=image.nbytes > 2**31) as tw:
            for i, lvl in enumerate(levels):
                res, jpeg = {}, {"level": jpeg_quality}
                if mpp is not None and not aperio:
                    px_per_cm = 1e4 / (mpp * image.shape[1] / lvl.shape[1])
                    res = dict(resolution=(px_per_cm, px_per_cm), resolutionunit="CENTIMETER")
                if aperio:
                    h, w = image.shape[:2]
                    head = f"Aperio Image Library v12.0.15 \n{w}x{h} [0,0 {w}x{h}] (240x240) JPEG/RGB Q={jpeg_quality}"
                    res = dict(description=head if i else head + f"|AppMag = {round(10 / mpp)}|MPP = {mpp}"
                               if mpp else head)
                    jpeg = dict(jpeg, colorspace="RGB", outcolorspace="RGB")
                tw.write(
                    lvl, tile=(240, 240) if aperio else (256, 256), photometric="rgb", compression="jpeg",
                    compressionargs=jpeg, subfiletype=1 if i and not aperio else 0,
                    metadata=None, maxworkers=2, **res,
                )


def slide_seed(cohort_seed: int, slide_index: int) -> int:
    return cohort_seed * 100_003 + slide_index


NEW_SEED_OFFSET = 50_000  # new patients' slides draw layouts of their own, whatever the cohort size
VALIDATION_SEED_OFFSET = 60_000  # and the held-out validation cohort's


def write_cohort(out: Path, patients: int, seed: int, *, width: int = 4096, height: int = 3072,
                 mpp: float = 0.5) -> pd.DataFrame:
    """Write slides/, slides.csv, clinical.csv and signatures.csv under `out`; return the sheet."""
    out = Path(out)
    (out / "slides").mkdir(parents=True, exist_ok=True)
    z = _latents(patients, seed)
    sheet = []
    for n, s in enumerate(plan(patients, seed)):
        i = int(s.case_id.split("-")[1])
        path = out / "slides" / f"{s.slide_id}.tiff"
        render_slide(path, width=width, height=height, mpp=mpp, z=z[i], seed=slide_seed(seed, n))
        sheet.append({"slide_id": s.slide_id, "case_id": s.case_id, "path": str(path)})
    clinical, signatures = clinical_table(patients, seed)
    sheet_df = pd.DataFrame(sheet)
    for name, df in (("clinical.csv", clinical), ("signatures.csv", signatures),
                     ("slides.csv", _relative_paths(sheet_df, out))):
        with atomic_path(out / name) as tmp:
            df.to_csv(tmp, index=False)
    return sheet_df


def _relative_paths(sheet: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """The sheet as written: paths relative to its own folder (how sheets are read)."""
    return sheet.assign(path=[str(Path(p).relative_to(folder)) for p in sheet.path])


def _draw_slides(out: Path, slides, z: np.ndarray, seed: int, offset: int, **render) -> pd.DataFrame:
    """One slide per patient under `out`/slides (patient n drawn from z[n], layout seed offset + n);
    their slide sheet, with absolute paths."""
    (out / "slides").mkdir(parents=True, exist_ok=True)
    sheet = []
    for n, s in enumerate(slides):
        path = out / "slides" / f"{s.slide_id}.tiff"
        render_slide(path, z=z[n], seed=slide_seed(seed, offset + n), **render)
        sheet.append({"slide_id": s.slide_id, "case_id": s.case_id, "path": str(path)})
    return pd.DataFrame(sheet, columns=["slide_id", "case_id", "path"])


def _write_tables(out: Path, tables: dict) -> None:
    for name, df in tables.items():
        with atomic_path(out / name) as tmp:
            df.to_csv(tmp, index=False)


def write_new_patients(out: Path, new_patients: int, seed: int, *, width: int = 4096, height: int = 3072,
                       mpp: float = 0.5) -> pd.DataFrame:
    """Slides of new patients drawn as the cohort's are, under `out`/slides, with their slide sheet
    `new_patients.csv` (what predict reads) and `new_patients_truth.csv`: each one's tissue mix and
    the log hazard it implies, which no rule reads, so a newcomer can hold the predicted risks
    against the truth the demo planted."""
    out = Path(out)
    z = _new_latents(new_patients, seed)
    sheet = _draw_slides(out, plan_new(new_patients), z, seed, NEW_SEED_OFFSET, width=width, height=height, mpp=mpp)
    rounded = lambda a, d: [round(float(v), d) for v in a]  # noqa: E731  (as written: 0.1235, not 0.12350000000000001)
    truth = pd.DataFrame({"case_id": sheet.case_id, **{f"{p}_fraction": rounded(z[:, k], 4) for k, p in enumerate(PROGRAMS)},
                          "true_log_hazard": rounded(_log_hazard(z), 4)})
    _write_tables(out, {"new_patients.csv": _relative_paths(sheet, out), "new_patients_truth.csv": truth})
    return sheet


def write_validation(out: Path, patients: int, seed: int, *, width: int = 4096, height: int = 3072,
                     mpp: float = 0.5) -> pd.DataFrame:
    """A held-out labelled cohort for external validation, drawn as the cohort is (the same tissue
    programs and hazard) from streams of its own: `validation.csv` (slide sheet) and
    `validation_clinical.csv` (case_id, slide_id, survival_months, censorship: no omics, as an
    external cohort often has none)."""
    out = Path(out)
    z = _validation_latents(patients, seed)
    months, censorship = _survival(z, np.random.default_rng([seed, 9]))
    sheet = _draw_slides(out, plan_validation(patients), z, seed, VALIDATION_SEED_OFFSET, width=width, height=height,
                         mpp=mpp)
    outcomes = pd.DataFrame({"case_id": sheet.case_id, "slide_id": sheet.slide_id,
                             "survival_months": [round(float(m), 2) for m in months], "censorship": censorship})
    _write_tables(out, {"validation.csv": _relative_paths(sheet, out), "validation_clinical.csv": outcomes})
    return sheet


# ---------------------------------------------------------------------------- commands


def _arguments(p) -> None:
    p.add_argument("out")
    p.add_argument("--patients", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=4096, help="level-0 width in pixels")
    p.add_argument("--height", type=int, default=3072, help="level-0 height in pixels")
    p.add_argument("--mpp", type=float, default=0.5, help="level-0 microns per pixel")


def _cohort(args) -> None:
    sheet = write_cohort(args.out, args.patients, args.seed, width=args.width, height=args.height, mpp=args.mpp)
    log.info("demo cohort: %d slides of %d patients in %s", len(sheet), args.patients, args.out)


def _new_patients(args) -> None:
    write_new_patients(args.out, args.patients, args.seed, width=args.width, height=args.height, mpp=args.mpp)
    log.info("demo: %d new patients to score from their slides in %s", args.patients, args.out)


def _validation(args) -> None:
    write_validation(args.out, args.patients, args.seed, width=args.width, height=args.height, mpp=args.mpp)
    log.info("demo: %d held-out patients with outcomes to validate on in %s", args.patients, args.out)


COMMANDS = {"demo-cohort": Command(_arguments, _cohort), "demo-new-patients": Command(_arguments, _new_patients),
            "demo-validation": Command(_arguments, _validation)}
