# Tissue segmentation, one job per slide (logic: ghanet_pipeline/segment.py).


rule segment:
    input:
        slide=slide_input,
        provenance=chunk_provenance("segment"),
    output:
        geojson=f"{RESULTS}/segment/{{slide}}.geojson",
        qc=f"{RESULTS}/segment/{{slide}}.qc.jpg",  # in the report as the slide_report contact sheets
        stats=f"{RESULTS}/segment/{{slide}}.stats.json",
    params:
        **depends_on("segment"),
        slide=slide_path,
        on_error=on_error,
        mpp=mpp_args,
        mpp_range=mpp_range_args,
        section=section_json("segment"),
        stamp=stamp_extra("segment"),
    conda:
        "../../envs/slides.yaml"
    log:
        f"{RESULTS}/logs/segment/{{slide}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/segment/{{slide}}.tsv"
    threads: 1
    shell:
        "python -m ghanet_pipeline segment --slide {params.slide:q} --slide-id {wildcards.slide:q} {params.on_error} {params.mpp} {params.mpp_range}"
        " --params {params.section:q} --geojson {output.geojson:q} --qc {output.qc:q}"
        " --stats {output.stats:q} --stamp-extra {params.stamp:q} 2> {log:q}"


# slides_per_job > 1: the same command over a chunk of slides, each with its own outputs and log
# (above's paths); the chunk's table says it is done. Unused, and so not planned, at 1.
rule segment_chunk:
    input:
        slides=chunk_slide_files,
    output:
        f"{CHUNK_TABLES['segment']}/{{chunk}}.tsv",
    params:
        **depends_on("segment"),
        slides=chunk_slides("segment", with_mpp=True),
        on_error=on_error,
        mpp_range=mpp_range_args,
        section=section_json("segment"),
        paths=slide_patterns(geojson=f"{RESULTS}/segment/{{slide}}.geojson", qc=f"{RESULTS}/segment/{{slide}}.qc.jpg",
                             stats=f"{RESULTS}/segment/{{slide}}.stats.json",
                             slide_log=f"{RESULTS}/logs/segment/{{slide}}.log"),
    conda:
        "../../envs/slides.yaml"
    log:
        f"{RESULTS}/logs/segment_chunks/{{chunk}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/segment_chunks/{{chunk}}.tsv"
    threads: 1
    shell:
        "python -m ghanet_pipeline segment --slides {params.slides:q} {params.on_error} {params.mpp_range}"
        " --params {params.section:q} {params.paths} --done {output:q} 2> {log:q}"
