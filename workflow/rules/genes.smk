# Per-fold differential gene-family selection, one job per fold (logic: ghanet_pipeline/genes.py).


rule genes:
    input:
        patients=f"{COHORT_DIR}/patients.csv.gz",
        fold=f"{COHORT_DIR}/fold_{{fold}}.csv",
        signatures=GENES_SIGNATURES or [],
    output:
        selection=f"{RESULTS}/genes/fold_{{fold}}/selection.json",
        stats=f"{RESULTS}/genes/fold_{{fold}}/stats.csv",
        scaler=f"{RESULTS}/genes/fold_{{fold}}/scaler.csv",
    params:
        **depends_on("genes"),
        sections=sections_json("genes", "labels"),
        out_dir=lambda wc: f"{RESULTS}/genes/fold_{wc.fold}",
        signatures=lambda wc, input: f"--signatures '{input.signatures}'" if input.signatures else "",
    conda:
        "../../envs/statistics.yaml"
    log:
        f"{RESULTS}/logs/genes/fold_{{fold}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/genes/fold_{{fold}}.tsv"
    shell:
        "python -m ghanet_pipeline genes --patients {input.patients:q} --fold-csv {input.fold:q} --fold {wildcards.fold}"
        " {params.signatures} --params {params.sections:q} --out-dir {params.out_dir:q}"
        " 2> {log:q}"
