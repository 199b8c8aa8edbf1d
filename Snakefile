# ghanet-pipeline: whole-slide images to per-patient risk scores (see README.md).
import sys

sys.path.insert(0, workflow.basedir)  # the package beside this file validates the config

from ghanet_pipeline.config import export_package_path, validate_config

export_package_path(workflow.basedir)  # every job's `python -m ghanet_pipeline` finds the package


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


# `gpu` counts GPUs within one machine: a local limit (--resources gpu=N) throttles a workstation
# run and the inside of a grouped cluster job, never the number of jobs a cluster may run at once.
resource_scopes:
    gpu="local",


config.update(validate_config(config))


include: "workflow/rules/common.smk"
wildcard_constraints:
    # any id without a slash; an alternation of every slide id costs O(slides) per job to match
    slide=r"[^/]+",
    model="|".join(MODELS),
    fold=r"\d+",
    chunk=r"(cohort|predict)\d+",


include: "workflow/rules/demo.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/tile.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/genes.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/heatmaps.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/validate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True


# After every run, finished or not: results/report/failures.csv lists each job that failed (with
# --keep-going, the rest of the cohort completes) and why, read from the jobs' logs.
onsuccess:
    write_failures()


onerror:
    write_failures()
