# Cohort-level reports (logic: ghanet_pipeline/report.py). The HTML report shows slide QC as contact
# sheets, a few pages for any cohort size; each slide's QC images stay in results/segment and tile.
QC_IMAGES = [f"{RESULTS}/segment/{{slide}}.qc.jpg", f"{RESULTS}/tile/{{slide}}.qc.jpg"]


rule slide_report:
    input:
        stats=slides_done("segment", SLIDES, f"{RESULTS}/segment/{{slide}}.stats.json"),
        coords=slides_done("tile", SLIDES, f"{RESULTS}/tile/{{slide}}.h5"),
        # what extraction left out of each slide (patches over corrupt stored tiles)
        features=slides_done("extract", SLIDES, f"{FEATURES_DIR}/{{slide}}.h5"),
        qc=[] if CHUNKED else [t.format(slide=sid) for sid in SLIDES for t in QC_IMAGES],  # chunked: the tables above
        # the sheets of the slides this run processes: the job's slide list, and their extra columns
        sheets=[s for s in (None if FEATURES_IN else SHEET, PREDICT_SHEET if PREDICT_SLIDES else None,
                            None if VALIDATION_FEATURES_IN else VALIDATION_SHEET) if s],
    output:
        table=report(f"{RESULTS}/report/slides.csv", caption="../report/slides.rst", category="Slides"),
        gallery=report(directory(f"{RESULTS}/report/slide_qc"), patterns=["{name}.jpg"],
                       caption="../report/slide_qc.rst", category="Slides", labels={"page": "{name}"}),
    params:
        # derived: the files are inputs; patterns, as 10,000 slides' paths would overflow a command line
        qc_images=lambda wc, input: " ".join(shlex.quote(t) for t in QC_IMAGES),
        patterns=lambda wc, input: f"--stats-pattern {shlex.quote(RESULTS)}/segment/{{slide}}.stats.json "
                                   f"--coords-pattern {shlex.quote(RESULTS)}/tile/{{slide}}.h5 "
                                   f"--features-pattern {shlex.quote(FEATURES_DIR)}/{{slide}}.h5",
    conda:
        "../../envs/slides.yaml"
    log:
        f"{RESULTS}/logs/slide_report.log",
    benchmark:
        f"{RESULTS}/benchmarks/slide_report.tsv"
    shell:
        "python -m ghanet_pipeline slide-report {params.patterns}"
        " --sheets {input.sheets:q} --out {output.table:q} --qc-images {params.qc_images} --gallery-dir {output.gallery:q}"
        " 2> {log:q}"
