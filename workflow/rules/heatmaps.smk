# Attention heatmaps of each fold's held-out patients, drawn by that fold's model of
# evaluate.heatmap_model, G-HANet by default (logic: ghanet_pipeline/heatmap.py).


rule heatmaps:
    input:
        model=f"{MODELS_DIR}/{HEATMAP_MODEL}/fold_{{fold}}/model.pt",
        fold=f"{COHORT_DIR}/fold_{{fold}}.csv",
        patients=f"{COHORT_DIR}/patients.csv.gz",
        sheet=SHEET or [],
        features=f"{FEATURES_DIR}/manifest.csv",
    output:
        report(directory(f"{RESULTS}/heatmaps/fold_{{fold}}"), patterns=["gallery_{page}.jpg"],
               caption="../report/heatmaps.rst", category="Heatmaps", subcategory="fold {fold}",
               labels={"fold": "{fold}", "page": "{page}"}),
    params:
        **depends_on("heatmaps"),
        **depends_on("heatmap_geometry"),
        sections=sections_json("heatmap", "tile", "cohort"),  # another tool's files: the tiles' geometry
        features_dir=lambda wc, input: COHORT_FEATURES_DIR,  # derived: the features themselves are inputs
    conda:
        "../../envs/deep-learning.yaml"
    log:
        f"{RESULTS}/logs/heatmaps/fold_{{fold}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/heatmaps/fold_{{fold}}.tsv"
    shell:
        "python -m ghanet_pipeline heatmaps --model {input.model:q} --fold-csv {input.fold:q} --patients {input.patients:q}"
        " --slide-sheet {input.sheet:q} --features-dir {params.features_dir:q} --params {params.sections:q}"
        " --out-dir {output:q} 2> {log:q}"
