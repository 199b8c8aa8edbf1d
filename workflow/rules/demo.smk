# The synthetic demo cohort: the first job of the DAG when config.yaml names no slide sheet.


rule demo_cohort:
    output:
        slides=[f"{DEMO_DIR}/slides/{sid}.tiff" for sid in COHORT_SLIDES] if USE_DEMO else [],
        sheet=f"{DEMO_DIR}/slides.csv",
        clinical=f"{DEMO_DIR}/clinical.csv",
        signatures=f"{DEMO_DIR}/signatures.csv",
    params:
        **depends_on("demo_cohort"),
        out_dir=lambda wc, output: str(Path(output.sheet).parent),
        args=lambda wc, output: "--patients {patients} --seed {seed} --width {width_px} --height {height_px} "
        "--mpp {level0_mpp}".format(**config["demo"]),
    conda:
        "../../envs/slides.yaml"
    log:
        f"{RESULTS}/logs/demo_cohort.log",
    benchmark:
        f"{RESULTS}/benchmarks/demo_cohort.tsv"
    shell:
        "python -m ghanet_pipeline demo-cohort {params.out_dir:q} {params.args} 2> {log:q}"
