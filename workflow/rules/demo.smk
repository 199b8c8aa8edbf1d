# The synthetic demo cohort: the first job of the DAG when config.yaml names no slide sheet.


rule demo_cohort:
    output:
        slides=[f"{DEMO_DIR}/slides/{sid}.tiff" for sid in COHORT_SLIDES] if USE_DEMO else [],
        sheet=f"{DEMO_DIR}/slides.csv",
        clinical=f"{DEMO_DIR}/clinical.csv",
        signatures=f"{DEMO_DIR}/signatures.csv",
    params:
        demo=config["demo"],
        out_dir=lambda wc, output: str(Path(output.sheet).parent),
    conda:
        "../../envs/slides.yaml"
    log:
        f"{RESULTS}/logs/demo_cohort.log",
    benchmark:
        f"{RESULTS}/benchmarks/demo_cohort.tsv"
    shell:
        "python -m ghanet_pipeline demo-cohort {params.out_dir:q} --patients {params.demo[patients]} --seed {params.demo[seed]}"
        " --width {params.demo[width_px]} --height {params.demo[height_px]} --mpp {params.demo[level0_mpp]}"
        " 2> {log:q}"
