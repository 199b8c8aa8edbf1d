# Physical tiling of the tissue, one job per slide (logic: ghanet_pipeline/tile.py).


rule tile:
    input:
        slide=slide_input,
        contours=f"{RESULTS}/segment/{{slide}}.geojson",
    output:
        coords=f"{RESULTS}/tile/{{slide}}.h5",
        qc=report(f"{RESULTS}/tile/{{slide}}.qc.png", caption="../report/tile_qc.rst",
                  category="Slide QC", subcategory="tiling", labels={"slide": "{slide}"}),
    params:
        slide=slide_path,
        section=tile_section,
        mpp=mpp_args,
    conda:
        "../../envs/slides.yaml"
    log:
        f"{RESULTS}/logs/tile/{{slide}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tile/{{slide}}.tsv"
    threads: 1
    shell:
        "python -m ghanet_pipeline tile --slide {params.slide:q} --slide-id {wildcards.slide:q} {params.mpp}"
        " --contours {input.contours:q} --params {params.section:q} --coords {output.coords:q}"
        " --qc {output.qc:q} 2> {log:q}"
