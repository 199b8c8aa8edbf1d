# Out-of-fold comparison of every trained model (logic: ghanet_pipeline/evaluate.py).


rule evaluate:
    input:
        risks=expand(f"{MODELS_DIR}/{{model}}/fold_{{fold}}/risks.csv", model=MODELS, fold=FOLDS),
        recon=expand(f"{MODELS_DIR}/{{model}}/fold_{{fold}}/reconstruction.csv", model=MODELS, fold=FOLDS),
    output:
        comparison=report(f"{EVAL_DIR}/comparison.csv", caption="../report/comparison.rst",
                          category="Model comparison"),
        folds=report(f"{EVAL_DIR}/folds.csv", caption="../report/folds.rst", category="Model comparison"),
        oof=f"{EVAL_DIR}/oof.csv",
        recon=f"{EVAL_DIR}/reconstruction.csv",
        km=report(f"{EVAL_DIR}/km.png", caption="../report/km.rst", category="Survival"),
        c_index=report(f"{EVAL_DIR}/c_index.png", caption="../report/c_index.rst", category="Model comparison"),
        forest=report(f"{EVAL_DIR}/forest.png", caption="../report/forest.rst", category="Model comparison"),
    params:
        **depends_on("evaluate"),
        sections=sections_json(evaluate={"risk_groups": config["evaluate"]["risk_groups"]}),
        model_dirs=lambda wc, input: [str(Path(r).parent) for r in input.risks],
        out_dir=lambda wc, output: str(Path(output.comparison).parent),
    conda:
        "../../envs/statistics.yaml"
    log:
        f"{RESULTS}/logs/evaluate.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate.tsv"
    shell:
        "python -m ghanet_pipeline evaluate --model-dirs {params.model_dirs:q} --params {params.sections:q}"
        " --out-dir {params.out_dir:q} 2> {log:q}"
