# ghanet-pipeline: whole-slide images to per-patient risk scores (see README.md).
import sys

sys.path.insert(0, workflow.basedir)  # the package beside this file validates the config

from ghanet_pipeline.config import validate_config


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


config.update(validate_config(config))


include: "workflow/rules/common.smk"
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
include: "workflow/rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True
