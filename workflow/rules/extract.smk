# Patch features, one job per slide (logic: ghanet_pipeline/extract.py). Batch size, loader
# workers, device and threads are runtime resources: changing them reruns nothing.


rule extract:
    input:
        slide=slide_input,
        coords=f"{RESULTS}/tile/{{slide}}.h5",
        provenance=chunk_provenance("extract"),
    output:
        features=f"{FEATURES_DIR}/{{slide}}.h5",
    params:
        **depends_on("extract"),
        slide=slide_path,
        on_error=on_error,
        section=section_json("extract"),
        stamp=stamp_extra("extract"),
    conda:
        "../../envs/deep-learning.yaml"
    log:
        f"{RESULTS}/logs/extract/{{slide}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/extract/{{slide}}.tsv"
    threads: 2
    resources:
        gpu=1,
        batch_size=64,
        loader_workers=1,
        device="auto",
        slide_reader="auto",  # stored JPEG tiles where the file allows it (pixel-equal to OpenSlide), else OpenSlide
    shell:
        "python -m ghanet_pipeline extract --slide {params.slide:q} --slide-id {wildcards.slide:q} {params.on_error}"
        " --coords {input.coords:q} --params {params.section:q} --features {output.features:q}"
        " --device {resources.device} --gpus {resources.gpu} --batch-size {resources.batch_size} --workers {resources.loader_workers} --threads {threads}"
        " --slide-reader {resources.slide_reader} --stamp-extra {params.stamp:q}"
        " 2> {log:q}"


# slides_per_job > 1: a chunk of slides per job (see segment_chunk), the encoder loaded once for them.
rule extract_chunk:
    input:
        slides=chunk_slide_files,
        tiled=f"{CHUNK_TABLES['tile']}/{{chunk}}.tsv",
    output:
        f"{CHUNK_TABLES['extract']}/{{chunk}}.tsv",
    params:
        **depends_on("extract"),
        slides=chunk_slides("extract"),
        on_error=on_error,
        section=section_json("extract"),
        paths=slide_patterns(coords=f"{RESULTS}/tile/{{slide}}.h5", features=f"{FEATURES_DIR}/{{slide}}.h5",
                             slide_log=f"{RESULTS}/logs/extract/{{slide}}.log"),
    conda:
        "../../envs/deep-learning.yaml"
    log:
        f"{RESULTS}/logs/extract_chunks/{{chunk}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/extract_chunks/{{chunk}}.tsv"
    threads: 2
    resources:
        gpu=1,
        batch_size=64,
        loader_workers=1,
        device="auto",
        slide_reader="auto",
    shell:
        "python -m ghanet_pipeline extract --slides {params.slides:q} {params.on_error} --params {params.section:q}"
        " {params.paths} --done {output:q}"
        " --device {resources.device} --gpus {resources.gpu} --batch-size {resources.batch_size} --workers {resources.loader_workers} --threads {threads}"
        " --slide-reader {resources.slide_reader}"
        " 2> {log:q}"


# The tensors the official MCAT/G-HANet loaders read (extract.write_pt): converted from the HDF5,
# so asking for them adds these jobs and reruns nothing.
rule export_pt:
    input:
        f"{FEATURES_DIR}/{{slide}}.h5",
    output:
        f"{FEATURES_DIR}/pt_files/{{slide}}.pt",
    conda:
        "../../envs/deep-learning.yaml"
    log:
        f"{RESULTS}/logs/export_pt/{{slide}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/export_pt/{{slide}}.tsv"
    shell:
        "python -m ghanet_pipeline export-pt --features {input:q} --out {output:q} 2> {log:q}"


rule export_pt_chunk:
    input:
        f"{CHUNK_TABLES['extract']}/{{chunk}}.tsv",
    output:
        f"{CHUNK_TABLES['export_pt']}/{{chunk}}.tsv",
    params:
        slides=chunk_slides("export_pt"),
        paths=slide_patterns(features=f"{FEATURES_DIR}/{{slide}}.h5", out=f"{FEATURES_DIR}/pt_files/{{slide}}.pt",
                             slide_log=f"{RESULTS}/logs/export_pt/{{slide}}.log"),
    conda:
        "../../envs/deep-learning.yaml"
    log:
        f"{RESULTS}/logs/export_pt_chunks/{{chunk}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/export_pt_chunks/{{chunk}}.tsv"
    shell:
        "python -m ghanet_pipeline export-pt --slides {params.slides:q} {params.paths} --done {output:q} 2> {log:q}"


# One table of the training cohort's feature files: the model rules depend on it rather than on
# every file (a 1,000-slide cohort would otherwise give each training job 1,000 inputs to resolve).
# With cohort.features, the files the cohort brings: checked and named here, never copied.
rule feature_manifest:
    input:
        features=manifest_inputs,
        sheet=SHEET or [],  # the slide list the job reads (features given without a sheet: the clinical table's)
        clinical=[] if SHEET else CLINICAL,
    output:
        f"{FEATURES_DIR}/manifest.csv",
    params:
        # derived: decides only whether the run stops (with cohort.on_slide_error: skip)
        max_lost=lambda wc, input: config["cohort"]["max_lost_fraction"],
        source=manifest_source,
    conda:
        "../../envs/deep-learning.yaml"
    log:
        f"{RESULTS}/logs/feature_manifest.log",
    benchmark:
        f"{RESULTS}/benchmarks/feature_manifest.tsv"
    shell:
        "python -m ghanet_pipeline feature-manifest {params.source} --out {output:q}"
        " --max-lost-fraction {params.max_lost} 2> {log:q}"
