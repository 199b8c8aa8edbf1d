"""`ghanet check-config`: the config, its sheets and every slide's header, with the encoder's weights
and the CUDA the jobs will see: every problem at once, one line each, before any job runs."""

from __future__ import annotations

from .commands import Command
from .errors import GhanetError
from .sheet import cohort_slides, read_slides


def _arguments(p) -> None:
    p.add_argument("config_file", nargs="?", default="config.yaml")


def _encoder_problems(extract: dict) -> list[str]:
    """The encoder resolved and its weights located, as extract would, without loading them."""
    from . import encoders

    try:
        spec = encoders.resolve(extract["encoder"])
    except GhanetError as exc:
        return [str(exc)]
    where = encoders.locate(spec, extract["weights"])
    if where.path:
        print(f"encoder {spec.name}: {spec.dim}-d, weights {where.path}")
        return []
    fetch = f"; on a machine with network run `{where.fetch}` and copy the cache here" if where.fetch else ""
    return [f"encoder {spec.name}: weights not found (looked in {where.looked}){fetch}, or set extract.weights "
            "to the file"]


def _cuda_line() -> str:
    import torch

    from .devices import _no_cuda_reason

    if torch.cuda.is_available():
        return f"CUDA: {torch.cuda.device_count()} GPU(s) visible, {torch.cuda.get_device_name(0)}"
    return f"CUDA: none ({_no_cuda_reason(torch)}); GPU jobs will run on the CPU"


def _run(args) -> None:
    """The config and its sheets, and every slide's header: all problems at once, before any job."""
    from .config import load_config
    from .layouts import find_feature_file

    cfg = load_config(args.config_file)
    given = cfg["cohort"]["features"]  # a cohort given as features: its slides are not read
    as_features = {"cohort": given, "validation": cfg["validation"]["features"]}
    sheets = [cfg[s]["slide_sheet"] for s in ("cohort", "predict", "validation") if cfg[s]["slide_sheet"]
              and not as_features.get(s)]
    slides = {sid: row for sheet in sheets for sid, row in read_slides(sheet).items()}
    # the encoder runs only on slides: with imported features, only on the patients to predict
    encoder = _encoder_problems(cfg["extract"]) if slides or not given else []
    print(_cuda_line())
    problems = []
    if given:
        cohort = cohort_slides(cfg["cohort"]["slide_sheet"], cfg["cohort"]["clinical"])
        missing = [sid for sid in cohort if find_feature_file(given, sid) is None]
        problems += [f"slide {sid}: no feature file in {given} (<slide_id>.h5, h5_files/, .pt or pt_files/); "
                     "add it, or remove the slide from the cohort" for sid in missing]
        print(f"cohort.features {given}: {len(cohort) - len(missing)} of {len(cohort)} slides have a feature file")
    if slides:
        from . import wsi

        for sid, row in slides.items():
            try:
                slide = wsi.open_slide(row["path"], sid)
                try:
                    wsi.resolve_mpp(slide, sid, row["mpp"], cfg["cohort"]["default_mpp"], cfg["cohort"]["mpp_range"])
                finally:
                    slide.close()
            except GhanetError as exc:
                problems.append(str(exc))
    if problems or encoder:
        total = len(slides) + (len(cohort) if given else 0)
        said = ([f"{len(problems)} of {total} slides cannot be used"] if problems else []) + (
            ["the encoder cannot be loaded"] if encoder else [])
        raise GhanetError(f"{args.config_file}: {' and '.join(said)}:\n"
                          + "\n".join(f"  - {p}" for p in encoder + problems))
    opened = f"; {len(slides)} slides open, with a plausible resolution" if slides else ""
    print(f"{args.config_file}: valid{opened}")


COMMANDS = {"check-config": Command(_arguments, _run)}
