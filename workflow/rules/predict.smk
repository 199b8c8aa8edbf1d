# Risk for new patients from their slides alone (logic: ghanet_pipeline/predict.py). Their slides
# go through the same segment, tile and extract rules; `snakemake predict` asks for this target.


rule predict:
    input:
        sheet=PREDICT_SHEET or [],
        features=slides_done("extract", PREDICT_SLIDES, f"{FEATURES_DIR}/{{slide}}.h5"),
        models=expand(f"{MODELS_DIR}/{PREDICT_MODEL}/fold_{{fold}}/model.pt", fold=FOLDS),
    output:
        csv=report(f"{PREDICT_DIR}/predictions.csv", caption="../report/predictions.rst", category="Predictions"),
        heatmaps=report(directory(f"{PREDICT_DIR}/heatmaps"), patterns=["gallery_{page}.jpg"],
                        caption="../report/predict_heatmaps.rst", category="Predictions",
                        labels={"page": "{page}"})
        if PREDICT_HEATMAPS else [],
    params:
        **depends_on("predict"),
        **depends_on("heatmaps"),  # how its heatmaps are drawn (recorded with or without them: cheap)
        sections=sections_json("predict", "heatmap", evaluate={"risk_groups": config["evaluate"]["risk_groups"]}),
        models_dir=lambda wc, input: str(Path(input.models[0]).parent.parent),
        features_dir=lambda wc, input: FEATURES_DIR,  # derived: the features themselves are inputs
        # derived from the outputs: drawing heatmaps or not changes no prediction
        heatmaps=lambda wc, output: f"--heatmaps-dir {output.heatmaps}" if PREDICT_HEATMAPS else "",
    conda:
        "../../envs/deep-learning.yaml"
    log:
        f"{RESULTS}/logs/predict.log",
    benchmark:
        f"{RESULTS}/benchmarks/predict.tsv"
    threads: 1
    resources:
        device="auto",
    shell:
        "python -m ghanet_pipeline predict --slide-sheet {input.sheet:q} --models-dir {params.models_dir:q}"
        " --features-dir {params.features_dir:q} --params {params.sections:q} --out {output.csv:q}"
        " {params.heatmaps} --device {resources.device} --threads {threads} 2> {log:q}"
