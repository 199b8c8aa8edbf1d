# One model on one fold (logic: ghanet_pipeline/train.py). Device and threads are runtime
# resources (e.g. --set-resources train:device=cuda:1): changing them reruns nothing.


rule train:
    input:
        features=train_features,
        patients=f"{COHORT_DIR}/patients.csv.gz",
        fold=f"{COHORT_DIR}/fold_{{fold}}.csv",
        selection=f"{RESULTS}/genes/fold_{{fold}}/selection.json",
        scaler=f"{RESULTS}/genes/fold_{{fold}}/scaler.csv",
        summary=f"{COHORT_DIR}/splits.json",
    output:
        model=f"{MODELS_DIR}/{{model}}/fold_{{fold}}/model.pt",
        risks=f"{MODELS_DIR}/{{model}}/fold_{{fold}}/risks.csv",
        recon=f"{MODELS_DIR}/{{model}}/fold_{{fold}}/reconstruction.csv",
        history=f"{MODELS_DIR}/{{model}}/fold_{{fold}}/train_log.csv",
        excluded=f"{MODELS_DIR}/{{model}}/fold_{{fold}}/excluded.csv",
        curve=report(f"{MODELS_DIR}/{{model}}/fold_{{fold}}/loss.png", caption="../report/loss.rst",
                     category="Training", subcategory="{model}", labels={"model": "{model}", "fold": "{fold}"}),
    params:
        # the checkpoint also records how the features were made: read from the feature files
        **train_depends_on(),
        sections=sections_json("train", "model", cohort={"on_problem": config["cohort"]["on_problem"]}),
        out_dir=lambda wc, output: str(Path(output.model).parent),
        features_dir=lambda wc, input: COHORT_FEATURES_DIR,  # derived: the feature files are inputs (the SNN reads none)
        manifest=lambda wc, input: f"--manifest {shlex.quote(input.features[0])}" if input.features else "",
    conda:
        "../../envs/deep-learning.yaml"
    log:
        f"{RESULTS}/logs/train/{{model}}_fold_{{fold}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{model}}_fold_{{fold}}.tsv"
    threads: 1
    resources:
        gpu=lambda wc: 1 if REGISTRY[wc.model].reads_slides else 0,
        device="auto",
    shell:
        "python -m ghanet_pipeline train --model {wildcards.model} --fold {wildcards.fold} --patients {input.patients:q}"
        " --fold-csv {input.fold:q} --selection {input.selection:q} --scaler {input.scaler:q}"
        " --features-dir {params.features_dir:q} {params.manifest} --splits-summary {input.summary:q} --params {params.sections:q}"
        " --out-dir {params.out_dir:q} --device {resources.device} --gpus {resources.gpu} --threads {threads} 2> {log:q}"
