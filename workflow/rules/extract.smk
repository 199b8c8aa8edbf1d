# Patch features, one job per slide (logic: ghanet_pipeline/extract.py). Batch size, loader
# workers, device and threads are runtime resources: changing them reruns nothing.


rule extract:
    input:
        slide=slide_input,
        coords=f"{RESULTS}/tile/{{slide}}.h5",
    output:
        features=f"{FEATURES_DIR}/{{slide}}.h5",
        pt=[f"{FEATURES_DIR}/pt_files/{{slide}}.pt"] if config["extract"]["write_pt"] else [],
    params:
        slide=slide_path,
        section=section_json("extract"),
        pt=lambda wc, output: f"--features-pt {output.pt[0]}" if config["extract"]["write_pt"] else "",
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
    shell:
        "ghanet extract --slide {params.slide:q} --slide-id {wildcards.slide:q}"
        " --coords {input.coords:q} --params {params.section:q} --features {output.features:q} {params.pt}"
        " --device {resources.device} --batch-size {resources.batch_size} --workers {resources.loader_workers} --threads {threads}"
        " 2> {log:q}"
