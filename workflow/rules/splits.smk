# The validated cohort and its patient-level folds, one job (logic: ghanet_pipeline/splits.py).


rule splits:
    input:
        clinical=CLINICAL or [],
        sheet=SHEET or [],  # none: features given without a sheet, slides from the clinical table
        given=[f"{config['splits']['split_dir']}/splits_{k}.csv" for k in FOLDS]
        if config["splits"]["split_dir"]
        else [],
    output:
        patients=f"{COHORT_DIR}/patients.csv.gz",
        exclusions=f"{COHORT_DIR}/exclusions.csv",
        summary=f"{COHORT_DIR}/splits.json",
        folds=[f"{COHORT_DIR}/fold_{k}.csv" for k in FOLDS],
    params:
        **depends_on("splits"),
        sections=sections_json("splits", "labels", cohort={"on_problem": config["cohort"]["on_problem"]}),
        out_dir=lambda wc, output: str(Path(output.patients).parent),
        sheet=lambda wc, input: f"--slide-sheet {shlex.quote(input.sheet)}" if input.sheet else "",
    conda:
        "../../envs/statistics.yaml"
    log:
        f"{RESULTS}/logs/splits.log",
    benchmark:
        f"{RESULTS}/benchmarks/splits.tsv"
    shell:
        "python -m ghanet_pipeline splits --clinical {input.clinical:q} {params.sheet}"
        " --params {params.sections:q} --out-dir {params.out_dir:q} 2> {log:q}"
