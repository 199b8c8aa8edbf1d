# Cohort-level reports (logic: ghanet_pipeline/report.py). The HTML report shows slide QC as contact
# sheets, a few pages for any cohort size; each slide's QC images stay in results/segment and tile.
QC_IMAGES = [f"{RESULTS}/segment/{{slide}}.qc.jpg", f"{RESULTS}/tile/{{slide}}.qc.jpg"]


rule slide_report:
    input:
        stats=[f"{RESULTS}/segment/{sid}.stats.json" for sid in SLIDES],
        coords=[f"{RESULTS}/tile/{sid}.h5" for sid in SLIDES],
        qc=[t.format(slide=sid) for sid in SLIDES for t in QC_IMAGES],
        sheets=[s for s in (SHEET, PREDICT_SHEET if PREDICT_SLIDES else None) if s],  # their extra columns are carried
    output:
        table=report(f"{RESULTS}/report/slides.csv", caption="../report/slides.rst", category="Slides"),
        gallery=report(directory(f"{RESULTS}/report/slide_qc"), patterns=["{name}.jpg"],
                       caption="../report/slide_qc.rst", category="Slides", labels={"page": "{name}"}),
    params:
        qc_images=lambda wc, input: " ".join(shlex.quote(t) for t in QC_IMAGES),  # derived: the images are inputs
    conda:
        "../../envs/slides.yaml"
    log:
        f"{RESULTS}/logs/slide_report.log",
    benchmark:
        f"{RESULTS}/benchmarks/slide_report.tsv"
    shell:
        "python -m ghanet_pipeline slide-report --stats {input.stats:q} --coords {input.coords:q}"
        " --sheets {input.sheets:q} --out {output.table:q} --qc-images {params.qc_images} --gallery-dir {output.gallery:q}"
        " 2> {log:q}"
