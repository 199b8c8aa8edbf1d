"""`ghanet init`: a slide sheet from a folder of slides (slide ids from the file names, `case_id`
the TCGA patient barcode where a name has one, `mpp` read from each file) and a config naming it."""

from __future__ import annotations

from pathlib import Path

from .commands import Command
from .errors import GhanetError


def _arguments(p) -> None:
    p.add_argument("--slides", required=True, help="the folder of slides (searched recursively)")
    p.add_argument("--sheet", default="slides.csv", help="the sheet to write (paths relative to its folder)")
    p.add_argument("--config-out", default="config.yaml", help="the config to write")


SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide", ".dcm")


def _run(args) -> None:
    """A slide sheet from a folder of slides (mpp read from each file) and a config that names it."""
    import csv
    import os
    import re

    from . import wsi
    from .io import atomic_path

    folder, sheet, config = Path(args.slides), Path(args.sheet), Path(args.config_out)
    for path in (sheet, config):
        if path.exists():
            raise GhanetError(f"{path} exists; move it away or choose another name (--sheet/--config-out)")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SLIDE_SUFFIXES and p.is_file()
                   and p.suffix.lower() != ".dcm")
    files += sorted({p.parent for p in folder.rglob("*.dcm")})  # a DICOM slide is a folder of files
    if not files:
        raise GhanetError(f"no slides under {folder} (looked for {', '.join(SLIDE_SUFFIXES)}); give the folder "
                          "that holds them")
    rows, unknown, seen = [], [], set()
    for path in files:
        sid = re.sub(r"[^A-Za-z0-9._-]", "_", path.stem if path.is_file() else path.name).lstrip("._-") or "slide"
        while sid in seen:
            sid += "_dup"
        seen.add(sid)
        tcga = re.match(r"^(TCGA-[A-Z0-9]{2}-[A-Z0-9]{4})", sid)  # a TCGA barcode's patient part
        mpp = ""
        try:
            slide = wsi.open_slide(path, sid)
            try:
                mpp = f"{wsi.resolve_mpp(slide, sid, None, None)[0]:.4g}"
            finally:
                slide.close()
        except GhanetError as exc:
            unknown.append(f"{sid}: {exc}")
        rows.append({"slide_id": sid, "case_id": tcga.group(1) if tcga else sid,
                     "path": os.path.relpath(path.resolve(), sheet.resolve().parent),
                     "mpp": mpp})
    with atomic_path(sheet) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["slide_id", "case_id", "path", "mpp"])
        w.writeheader()
        w.writerows(rows)
    template = Path(__file__).resolve().parent.parent / "config.yaml"  # the workflow's own, beside the package
    template = template.read_text() if template.is_file() else "cohort:\n  slide_sheet: null \n  clinical: null\n"
    text = re.sub(r"(?m)^  slide_sheet: null .*$", f"  slide_sheet: {sheet}      # written by ghanet init from {folder}",
                  template, count=1)
    text = re.sub(r"(?m)^  clinical: null.*$", "  clinical: null         # your MCAT-format clinical table, to train",
                  text, count=1)
    with atomic_path(config) as tmp:
        tmp.write_text(text)
    print(f"{sheet}: {len(rows)} slides of {len({r['case_id'] for r in rows})} patients "
          f"(case_id: the TCGA patient barcode where there is one, else the slide id; edit as needed)")
    for line in unknown:
        print(f"  no usable resolution, fill its mpp column: {line}")
    print(f"{config}: the default config with cohort.slide_sheet set; then `ghanet check-config {config}`")


COMMANDS = {"init": Command(_arguments, _run)}
