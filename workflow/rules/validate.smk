# External validation on an independent labelled cohort (logic: ghanet_pipeline/predict.py scores,
# validate.py evaluates): each
# slide-only model's fold ensemble scores it (one job per model, where torch is), one job evaluates
# them all. Its slides go through the same segment, tile and extract rules, unless given as features.


rule validation_score:
    input:
        slides=VALIDATION_SHEET or VALIDATION_CLINICAL or [],
        features=validation_features,
        models=expand(f"{MODELS_DIR}/{{model}}/fold_{{fold}}/model.pt", fold=FOLDS, allow_missing=True),
    output:
        f"{VALIDATION_DIR}/risks/{{model}}.csv",
    params:
        **depends_on("validation_score"),
        sections=sections_json("predict", "validation", evaluate={"risk_groups": config["evaluate"]["risk_groups"]}),
        models_dir=lambda wc, input: str(Path(input.models[0]).parent.parent),
        slides=validation_slides_arg,
        features_dir=lambda wc, input: VALIDATION_FEATURES_IN or FEATURES_DIR,  # derived: the files are inputs
    conda:
        "../../envs/deep-learning.yaml"
    log:
        f"{RESULTS}/logs/validation_score/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/validation_score/{{model}}.tsv"
    threads: 1
    shell:
        "python -m ghanet_pipeline validation-score --models-dir {params.models_dir:q} {params.slides}"
        " --features-dir {params.features_dir:q} --params {params.sections:q} --out {output:q} 2> {log:q}"


rule validate:
    input:
        risks=expand(f"{VALIDATION_DIR}/risks/{{model}}.csv", model=VALIDATION_MODELS),
        clinical=VALIDATION_CLINICAL or [],
    output:
        table=report(f"{VALIDATION_DIR}/validation.csv", caption="../report/validation.rst",
                     category="External validation"),
        patients=f"{VALIDATION_DIR}/patients.csv",
        unscored=report(f"{VALIDATION_DIR}/unscored.csv", caption="../report/validation_unscored.rst",
                        category="External validation"),
        calibration_table=f"{VALIDATION_DIR}/calibration.csv",
        km=report(f"{VALIDATION_DIR}/km.png", caption="../report/validation_km.rst", category="External validation"),
        forest=report(f"{VALIDATION_DIR}/forest.png", caption="../report/validation_forest.rst",
                      category="External validation"),
        calibration=report(f"{VALIDATION_DIR}/calibration.png", caption="../report/validation_calibration.rst",
                           category="External validation"),
    params:
        **depends_on("validate"),
        sections=sections_json("validation", evaluate={"risk_groups": config["evaluate"]["risk_groups"]},
                               cohort={"status_column": config["cohort"]["status_column"]}),
        out_dir=lambda wc, output: str(Path(output.table).parent),
    conda:
        "../../envs/statistics.yaml"
    log:
        f"{RESULTS}/logs/validate.log",
    benchmark:
        f"{RESULTS}/benchmarks/validate.tsv"
    shell:
        "python -m ghanet_pipeline validate --risks {input.risks:q} --clinical {input.clinical:q}"
        " --params {params.sections:q} --out-dir {params.out_dir:q} 2> {log:q}"
