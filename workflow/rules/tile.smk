# Physical tiling of the tissue, one job per slide (logic: ghanet_pipeline/tile.py).


rule tile:
    input:
        slide=slide_input,
        contours=f"{RESULTS}/segment/{{slide}}.geojson",
        stats=f"{RESULTS}/segment/{{slide}}.stats.json",
        seg_qc=f"{RESULTS}/segment/{{slide}}.qc.jpg",  # the QC grid is drawn on it: no second read of the slide
        provenance=chunk_provenance("tile"),
    output:
        coords=f"{RESULTS}/tile/{{slide}}.h5",
        qc=f"{RESULTS}/tile/{{slide}}.qc.jpg",  # in the report as the slide_report contact sheets
    params:
        **depends_on("tile"),
        slide=slide_path,
        on_error=on_error,
        section=tile_section,
        stamp=stamp_extra("tile"),
    conda:
        "../../envs/slides.yaml"
    log:
        f"{RESULTS}/logs/tile/{{slide}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tile/{{slide}}.tsv"
    threads: 1
    shell:
        "python -m ghanet_pipeline tile --slide {params.slide:q} --slide-id {wildcards.slide:q} {params.on_error}"
        " --contours {input.contours:q} --segment-stats {input.stats:q} --segment-qc {input.seg_qc:q}"
        " --params {params.section:q} --coords {output.coords:q}"
        " --qc {output.qc:q} --stamp-extra {params.stamp:q} 2> {log:q}"


# slides_per_job > 1: a chunk of slides per job (see segment_chunk).
rule tile_chunk:
    input:
        slides=chunk_slide_files,
        segmented=f"{CHUNK_TABLES['segment']}/{{chunk}}.tsv",
    output:
        f"{CHUNK_TABLES['tile']}/{{chunk}}.tsv",
    params:
        **depends_on("tile"),
        slides=chunk_slides("tile"),
        on_error=on_error,
        section=tile_section,
        paths=slide_patterns(contours=f"{RESULTS}/segment/{{slide}}.geojson",
                             segment_stats=f"{RESULTS}/segment/{{slide}}.stats.json",
                             segment_qc=f"{RESULTS}/segment/{{slide}}.qc.jpg",
                             coords=f"{RESULTS}/tile/{{slide}}.h5", qc=f"{RESULTS}/tile/{{slide}}.qc.jpg",
                             slide_log=f"{RESULTS}/logs/tile/{{slide}}.log"),
    conda:
        "../../envs/slides.yaml"
    log:
        f"{RESULTS}/logs/tile_chunks/{{chunk}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tile_chunks/{{chunk}}.tsv"
    threads: 1
    shell:
        "python -m ghanet_pipeline tile --slides {params.slides:q} {params.on_error} --params {params.section:q}"
        " {params.paths} --done {output:q} 2> {log:q}"
