# The synthetic demo cohort: the first job of the DAG when config.yaml names no slide sheet;
# its new patients (slides only) are the patients `predict` scores when no predict sheet is given,
# and its held-out labelled cohort the one validated on when `validation` names none.


rule demo_cohort:
    output:
        slides=[f"{DEMO_DIR}/slides/{sid}.tiff" for sid in COHORT_SLIDES] if USE_DEMO else [],
        sheet=f"{DEMO_DIR}/slides.csv",
        clinical=f"{DEMO_DIR}/clinical.csv",
        signatures=f"{DEMO_DIR}/signatures.csv",
    params:
        **depends_on("demo_cohort"),
        out_dir=lambda wc, output: str(Path(output.sheet).parent),
        args=lambda wc, output: demo_args(config["demo"]["patients"]),
    conda:
        "../../envs/slides.yaml"
    log:
        f"{RESULTS}/logs/demo_cohort.log",
    benchmark:
        f"{RESULTS}/benchmarks/demo_cohort.tsv"
    shell:
        "python -m ghanet_pipeline demo-cohort {params.out_dir:q} {params.args} 2> {log:q}"


rule demo_new_patients:
    output:
        slides=[f"{DEMO_DIR}/slides/{sid}.tiff" for sid in PREDICT_SLIDES] if DEMO_NEW else [],
        sheet=f"{DEMO_DIR}/new_patients.csv",
        truth=f"{DEMO_DIR}/new_patients_truth.csv",
    params:
        **depends_on("demo_new_patients"),
        out_dir=lambda wc, output: str(Path(output.sheet).parent),
        args=lambda wc, output: demo_args(config["demo"]["new_patients"]),
    conda:
        "../../envs/slides.yaml"
    log:
        f"{RESULTS}/logs/demo_new_patients.log",
    benchmark:
        f"{RESULTS}/benchmarks/demo_new_patients.tsv"
    shell:
        "python -m ghanet_pipeline demo-new-patients {params.out_dir:q} {params.args} 2> {log:q}"


rule demo_validation:
    output:
        slides=[f"{DEMO_DIR}/slides/{sid}.tiff" for sid in VALIDATION_SLIDES] if DEMO_VALIDATION else [],
        sheet=f"{DEMO_DIR}/validation.csv",
        clinical=f"{DEMO_DIR}/validation_clinical.csv",
    params:
        **depends_on("demo_validation"),
        out_dir=lambda wc, output: str(Path(output.sheet).parent),
        args=lambda wc, output: demo_args(config["demo"]["validation_patients"]),
    conda:
        "../../envs/slides.yaml"
    log:
        f"{RESULTS}/logs/demo_validation.log",
    benchmark:
        f"{RESULTS}/benchmarks/demo_validation.tsv"
    shell:
        "python -m ghanet_pipeline demo-validation {params.out_dir:q} {params.args} 2> {log:q}"
